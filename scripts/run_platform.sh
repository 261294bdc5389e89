#!/usr/bin/env bash
# Start the web server and the Celery worker(s) and keep them up; Ctrl-C or SIGTERM stops everything in seconds.
#
# - The main worker (queues cpu, gpu) embeds celery beat (-B), which queues the job sweep every AESP_JOB_SWEEP_S:
#   a job whose worker died is taken up again by itself (aesplatform.common.jobs).
# - Each process runs under a supervising loop: one that exits (a crash, kill -9) is started again after a short
#   backoff (1 s, doubling up to 30 s; back to 1 s once it has run for a minute). The others stay up.
# - Stopping: workers get a cold shutdown (SIGQUIT: running jobs are dropped, not waited for; the sweep resumes
#   them from where they stopped), the web server a quick shutdown (SIGINT); whatever is still there after
#   STOP_GRACE_S seconds is killed, with its children (each process runs in its own process group).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
BIN=$(dirname "$PY")
VAR=${AESP_VAR_DIR:-var}
STOP_GRACE_S=${STOP_GRACE_S:-4}
mkdir -p "$VAR/celery"

# supervise NAME STOP_SIGNAL COMMAND...: run COMMAND in its own process group, start it again whenever it exits.
supervise() {
  local name=$1 stop_signal=$2
  shift 2
  local child="" backoff=1 started status
  stop_child() {
    [ -n "$child" ] || return 0
    kill "-$stop_signal" "$child" 2>/dev/null
    local waited=0
    while kill -0 "$child" 2>/dev/null && [ "$waited" -lt $((STOP_GRACE_S * 10)) ]; do
      sleep 0.1
      waited=$((waited + 1))
    done
    kill -KILL -- "-$child" 2>/dev/null  # the process group: pool children, embedded beat, decode workers
    wait "$child" 2>/dev/null
    child=""
  }
  trap 'stop_child; exit 0' TERM INT
  while true; do
    started=$SECONDS
    setsid "$@" &
    child=$!
    wait "$child"
    status=$?
    kill -KILL -- "-$child" 2>/dev/null  # what the crashed process left behind
    child=""
    if [ $((SECONDS - started)) -ge 60 ]; then backoff=1; fi
    echo "run_platform: $name exited (status $status); starting it again in ${backoff} s" >&2
    sleep "$backoff" &
    wait $!
    backoff=$((backoff * 2 > 30 ? 30 : backoff * 2))
  done
}

supervisors=()
stop_all() {
  trap - INT TERM
  echo "run_platform: stopping" >&2
  for pid in "${supervisors[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  wait
  exit 0
}
trap stop_all INT TERM

supervise worker QUIT "$PY" -m celery -A aesplatform worker -Q cpu,gpu --concurrency "${WORKER_CONCURRENCY:-2}" \
  --loglevel INFO -n "main@%h" -B -s "$VAR/celery/beat-schedule" &
supervisors+=($!)
# Released HumanAesExpert checkpoints are pre-scored on their own queue by a worker that runs their pinned runtime
# (transformers 4.44.2, einops, timm, sentencepiece) first on its PYTHONPATH; torch and Django from the main venv.
HAE_RUNTIME=${AESP_HUMANAESEXPERT_RUNTIME:-.venv-humanaesexpert}
if [ -f "$HAE_RUNTIME/.installed" ]; then
  PYTHONPATH="$(cd "$HAE_RUNTIME" && pwd)${PYTHONPATH:+:$PYTHONPATH}" HF_HUB_OFFLINE=1 \
    supervise humanaesexpert-worker QUIT "$PY" -m celery -A aesplatform worker -Q humanaesexpert --concurrency 1 \
    --loglevel INFO -n "humanaesexpert@%h" &
  supervisors+=($!)
  hae_note="  Released HumanAesExpert checkpoints: pre-scored by the humanaesexpert worker ($HAE_RUNTIME)."
else
  hae_note="  Released HumanAesExpert checkpoints need their runtime: \`make humanaesexpert-runtime\`, then \`make run\` again."
fi
WEB_BIND="$HOST:$PORT" WEB_CONCURRENCY=${WEB_CONCURRENCY:-3} WEB_ACCESS_LOG=${WEB_ACCESS_LOG:--} \
  supervise web INT "$BIN/gunicorn" -c deploy/gunicorn.conf.py &
supervisors+=($!)

echo
echo "  HumanAes platform: http://$HOST:$PORT/   (API docs: http://$HOST:$PORT/api/docs/, admin: /admin/)"
echo "$hae_note"
echo "  A process that crashes is started again; Ctrl-C stops the web server and the workers."
echo
while true; do
  wait  # returns when a signal arrives (stop_all exits) or, never, when every supervisor is gone
  sleep 1
done
