#!/bin/sh
# app-primes router. $1 = body, $2 = headers JSON.
# Start task: body N (a positive integer). Splits [1..N] into NUM_GROUPS (default 10) ranges of
# ceil(N/NUM_GROUPS) numbers and emits one calc task per range to $WORK_DIR/sink-tasks.txt, as
# `calc,<start %09d>_<end %09d>`. Any other body exits 110 (invalid input message format).
set -eu
body=${1:-}
out="${WORK_DIR:-/work}/sink-tasks.txt"

# Prints a decimal string without leading zeros (the shell would read 010 as octal); fails if not digits.
dec() {
  case "$1" in '' | *[!0-9]*) return 1 ;; esac
  x=$1
  while [ "${#x}" -gt 1 ] && [ "${x#0}" != "$x" ]; do x=${x#0}; done
  echo "$x"
}

if ! n=$(dec "$body") || [ "$n" -lt 1 ]; then
  echo "router: body '$body' is not a positive integer N" >&2
  exit 110
fi
if ! groups=$(dec "${NUM_GROUPS:-10}") || [ "$groups" -lt 1 ]; then
  echo "router: NUM_GROUPS '${NUM_GROUPS:-}' is not a positive integer" >&2
  exit 110
fi

gs=$(((n + groups - 1) / groups))
g=0
: >"$out"
while :; do
  start=$((g * gs + 1))
  end=$(((g + 1) * gs))
  [ "$end" -gt "$n" ] && end=$n
  printf 'calc,%09d_%09d\n' "$start" "$end" >>"$out"
  [ "$end" -eq "$n" ] && break
  g=$((g + 1))
done
echo "router: N=$n group_size=$gs tasks=$((g + 1))"
