# Sourced by .ci/bootstrap and the scripts it calls: the terminal gets one line per step
# (`Docker engine... done (docker 20.10.24)`), the package managers' and builders' output goes to a log file
# that the first line names; a failing step shows the end of its part of the log.
#
#   SETUP_LOG               the log (default: $SCALEBOX_HOME/logs/setup.log, SCALEBOX_HOME defaulting to ~/.scalebox)
#   SCALEBOX_SETUP_VERBOSE  1: every step's output on the terminal too

SETUP_LOG=${SETUP_LOG:-${SCALEBOX_HOME:-$HOME/.scalebox}/logs/setup.log}
mkdir -p "$(dirname "$SETUP_LOG")"
export SETUP_LOG
SETUP_TAIL=${SETUP_TAIL:-60}

# setup_log_start: a fresh log for this run (the last run's kept as setup.log.1), named on the terminal.
setup_log_start() {
  [ -s "$SETUP_LOG" ] && mv -f "$SETUP_LOG" "$SETUP_LOG.1"
  : >"$SETUP_LOG"
  echo "setup: details in $SETUP_LOG"
}

# note TEXT: what the running step did, shown after its `done` (`installed docker.io`, `up to date`).
note() {
  if [ -n "${SETUP_NOTE:-}" ]; then printf '%s\n' "$*" >>"$SETUP_NOTE"; else echo "$*"; fi
}

# step LABEL CMD [ARG...]: runs CMD (a command or an exported function, with `set -e` in force) with its output in the log;
# prints `LABEL... done`, or `LABEL... failed` and the step's log lines (the last SETUP_TAIL), and returns
# CMD's status.
step() {
  local label=$1 rc=0 notes
  shift
  SETUP_NOTE=$(mktemp)
  export SETUP_NOTE
  printf '%s... ' "$label"
  printf '\n=== %s %s: %s\n' "$(date -u +%FT%TZ)" "$label" "$*" >>"$SETUP_LOG"
  local start
  start=$(wc -l <"$SETUP_LOG")
  # In a bash of its own, so that a function keeps `set -e` (it would not as the test of an `||`) and Ctrl-C
  # reaches it; the functions it calls are exported (`export -f`).
  if [ "${SCALEBOX_SETUP_VERBOSE:-0}" = 1 ]; then
    echo
    bash -euo pipefail -c '"$@"' step "$@" 2>&1 </dev/null | tee -a "$SETUP_LOG" || rc=$?
  else
    bash -euo pipefail -c '"$@"' step "$@" >>"$SETUP_LOG" 2>&1 </dev/null || rc=$?
  fi
  notes=$(paste -sd';' "$SETUP_NOTE" | sed 's/;/; /g')
  rm -f "$SETUP_NOTE"
  unset SETUP_NOTE
  if [ "$rc" = 0 ]; then
    echo "done${notes:+ ($notes)}"
    return 0
  fi
  echo "failed (exit $rc)"
  local lines=$(($(wc -l <"$SETUP_LOG") - start))
  if [ "$lines" -gt "$SETUP_TAIL" ]; then
    echo "--- the last $SETUP_TAIL of its $lines lines in $SETUP_LOG:" >&2
  else
    echo "--- its output (from $SETUP_LOG):" >&2
  fi
  tail -n "$(( lines < SETUP_TAIL ? lines : SETUP_TAIL ))" "$SETUP_LOG" >&2
  return "$rc"
}

# apt_install PKG...: Debian packages, quietly (the output in the log; on failure its end on stderr). Waits for
# another apt run's lock rather than failing; updates the package lists when an install fails without.
apt_install() {
  local status=0
  export DEBIAN_FRONTEND=noninteractive NEEDRESTART_MODE=a NEEDRESTART_SUSPEND=1
  _apt() { apt-get -o DPkg::Lock::Timeout=600 -y -q "$@" >>"$SETUP_LOG" 2>&1 </dev/null; }
  _apt install "$@" || { _apt update && _apt install "$@"; } || status=$?
  if [ "$status" != 0 ]; then
    tail -n 20 "$SETUP_LOG" >&2
    echo "could not install: $*" >&2
  fi
  return "$status"
}

export -f note apt_install
