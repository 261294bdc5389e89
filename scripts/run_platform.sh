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

"$PY" -m celery -A aesplatform worker -Q cpu,gpu --concurrency "${WORKER_CONCURRENCY:-2}" --loglevel INFO &
pids+=($!)
WEB_BIND="$HOST:$PORT" WEB_CONCURRENCY=${WEB_CONCURRENCY:-3} WEB_ACCESS_LOG=${WEB_ACCESS_LOG:--} "$BIN/gunicorn" -c deploy/gunicorn.conf.py &
pids+=($!)

echo
echo "  HumanAes platform: http://$HOST:$PORT/   (API docs: http://$HOST:$PORT/api/docs/, admin: /admin/)"
echo "  Ctrl-C stops the web server and the worker."
echo
status=0
wait -n "${pids[@]}" || status=$?
echo "A process of the platform exited (status $status); stopping the others." >&2
exit "$status"
