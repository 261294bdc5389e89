# One image for web and workers. Build: docker build -t humanaes .
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    DJANGO_ENV=production \
    AESP_VAR_DIR=/var/lib/humanaes

RUN apt-get update \
 && apt-get install -y --no-install-recommends libgl1 libglib2.0-0 curl \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --create-home --uid 10001 humanaes

WORKDIR /app
COPY requirements.lock requirements-humanaesexpert.lock pyproject.toml README.md ./
RUN pip install -r requirements.lock
# The runtime of released HumanAesExpert checkpoints: an overlay that only the worker-humanaesexpert service puts
# first on its PYTHONPATH (docker-compose.yml); torch and the rest come from the packages above.
RUN pip install --no-deps --only-binary :all: --target /opt/humanaesexpert -r requirements-humanaesexpert.lock
COPY . .
RUN pip install --no-deps . \
 && DJANGO_SECRET_KEY=collectstatic-only DJANGO_ALLOWED_HOSTS=localhost python manage.py collectstatic --noinput \
 && mkdir -p /var/lib/humanaes && chown -R humanaes /var/lib/humanaes

USER humanaes
EXPOSE 8000
ENV WEB_BIND=0.0.0.0:8000
CMD ["gunicorn", "-c", "deploy/gunicorn.conf.py"]
