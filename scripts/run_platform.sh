#!/usr/bin/env bash
# Start the web server and a Celery worker together; Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
BIN=$(dirname "$PY")

pids=()
cleanup() {
  trap - INT TERM EXIT
  for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
  wait 2>/dev/null || true
}
trap cleanup INT TERM EXIT

"$PY" -m celery -A aesplatform worker -Q cpu,gpu --concurrency "${WORKER_CONCURRENCY:-2}" --loglevel INFO \
  -n "main@%h" &
pids+=($!)
# Released HumanAesExpert checkpoints are pre-scored on their own queue by a worker that runs their pinned runtime
# (transformers 4.44.2, einops, timm, sentencepiece) first on its PYTHONPATH; torch and Django from the main venv.
HAE_RUNTIME=${AESP_HUMANAESEXPERT_RUNTIME:-.venv-humanaesexpert}
if [ -f "$HAE_RUNTIME/.installed" ]; then
  PYTHONPATH="$(cd "$HAE_RUNTIME" && pwd)${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 \
    "$PY" -m celery -A aesplatform worker -Q humanaesexpert --concurrency 1 --loglevel INFO -n "humanaesexpert@%h" &
  pids+=($!)
  hae_note="  Released HumanAesExpert checkpoints: pre-scored by the humanaesexpert worker ($HAE_RUNTIME)."
else
  hae_note="  Released HumanAesExpert checkpoints need their runtime: \`make humanaesexpert-runtime\`, then \`make run\` again."
fi
WEB_BIND="$HOST:$PORT" WEB_CONCURRENCY=${WEB_CONCURRENCY:-3} WEB_ACCESS_LOG=${WEB_ACCESS_LOG:--} "$BIN/gunicorn" -c deploy/gunicorn.conf.py &
pids+=($!)

echo
echo "  HumanAes platform: http://$HOST:$PORT/   (API docs: http://$HOST:$PORT/api/docs/, admin: /admin/)"
echo "$hae_note"
echo "  Ctrl-C stops the web server and the workers."
echo
status=0
wait -n "${pids[@]}" || status=$?
echo "A process of the platform exited (status $status); stopping the others." >&2
exit "$status"
