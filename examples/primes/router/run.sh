#!/bin/sh
# app-primes main router. $1 = body, $2 = headers JSON.
# - The start task, body N (a positive integer): splits [1..N] into NUM_GROUPS (default 10) ranges of
#   ceil(N/NUM_GROUPS) numbers, emits one calc task per range to $WORK_DIR/sink-tasks.txt as
#   `calc,<start %09d>_<end %09d>`, and resets the shared state of the sum: the semaphores
#   `app-primes:sum_value` (the primes counted so far) and `app-primes:groups_done` (ranges counted), and the
#   variable `num_groups`.
# - A partial result from calc (header part_primes=COUNT, from_module=calc): adds COUNT to
#   `app-primes:sum_value` with `scalebox semaphore increment-n`; the range that completes the count finishes
#   the app with the sum as its result (`scalebox app set-finished`), which `scalebox run` prints.
# Any other body exits 110 (invalid input message format).
set -eu
body=${1:-}
headers=${2:-'{}'}
out="${WORK_DIR:-/work}/sink-tasks.txt"

# Prints a decimal string without leading zeros (the shell would read 010 as octal); fails if not digits.
dec() {
  case "$1" in '' | *[!0-9]*) return 1 ;; esac
  x=$1
  while [ "${#x}" -gt 1 ] && [ "${x#0}" != "$x" ]; do x=${x#0}; done
  echo "$x"
}

# The value of a string header in a flat JSON object (empty if absent).
header() {
  printf '%s' "$headers" | sed -n "s/.*\"$1\":\"\\([^\"]*\\)\".*/\\1/p"
}

part=$(header part_primes)
if [ -n "$part" ]; then
  if ! part=$(dec "$part"); then
    echo "router: part_primes '$part' is not a count" >&2
    exit 110
  fi
  sum=$(scalebox semaphore increment-n app-primes:sum_value "$part")
  done_groups=$(scalebox semaphore increment app-primes:groups_done)
  groups=$(scalebox variable get num_groups)
  echo "router: range $body has $part primes; sum so far $sum ($done_groups of $groups ranges)"
  if [ "$done_groups" -eq "$groups" ]; then
    total=$(scalebox semaphore get app-primes:sum_value)
    scalebox app set-finished "$total"
    echo "router: $total primes in all"
  fi
  exit 0
fi

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
# A new count: start from zero (the app's state outlives a run; its name is the same next time).
CONFLICT_ACTION=OVERWRITE scalebox semaphore create app-primes:sum_value 0
CONFLICT_ACTION=OVERWRITE scalebox semaphore create app-primes:groups_done 0
scalebox variable set num_groups "$((g + 1))"
echo "router: N=$n group_size=$gs tasks=$((g + 1))"
