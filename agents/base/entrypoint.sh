#!/bin/sh
# The default entrypoint of the agent base image (`scalebox/agent`, also tagged hub.cstcloud.cn/scalebox/agent):
# one Scalebox slot for the bodies given, under the module contract (sbx-action finds each script).
#   docker run IMAGE BODY [HEADERS-JSON]    setup, check, run BODY HEADERS, teardown; exits with run's code
#   docker run IMAGE                        the same for each line of stdin (`body` or `body,{headers}`)
# scalebox-stream's agents do not use it: they run sbx-action themselves, one attempt at a time.
set -u
export WORK_DIR=${WORK_DIR:-/work}
mkdir -p "$WORK_DIR" && cd "$WORK_DIR" || exit 1
sbx-action setup || { code=$?; echo "entrypoint: setup failed (exit $code)" >&2; exit "$code"; }
run_one() { # BODY HEADERS
  until sbx-action check "$1" "$2"; do sleep "${POLL_INTERVAL_SECONDS:-6}"; done
  sbx-action run "$1" "$2"
}
code=0
if [ "$#" -gt 0 ]; then
  headers=${2:-}
  [ -n "$headers" ] || headers='{}'
  run_one "$1" "$headers"
  code=$?
else
  while IFS= read -r line; do
    [ -n "$line" ] || continue
    case $line in
      *,\{*\}) body=${line%%,\{*}; headers={${line#*,\{} ;;
      *) body=$line; headers='{}' ;;
    esac
    run_one "$body" "$headers" || code=$?
  done
fi
sbx-action teardown || echo "entrypoint: teardown failed (exit $?)" >&2
exit "$code"
