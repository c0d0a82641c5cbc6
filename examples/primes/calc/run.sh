#!/bin/sh
# app-primes calculator. $1 = body `<start>_<end>` (e.g. 000000001_000000100), $2 = headers JSON.
# Counts the primes in [start, end] (1 is not prime) by trial division, writes the count to
# $WORK_DIR/custom-out.txt, sends it back to the main router (`scalebox task add -H part_primes=COUNT BODY`:
# calc has no sink module, so the task goes to the app's main_router, $SINK_MODULE) and prints a summary
# line. Exit 110 (invalid input message format) on a malformed body. POSIX sh + awk only: runs under
# busybox (container) and dash + mawk (host).
set -eu
body=${1:-}
out="${WORK_DIR:-/work}/custom-out.txt"

invalid() {
  echo "calc: invalid body '$body', expected <start>_<end> (decimal digits)" >&2
  exit 110
}

# Prints a decimal string without leading zeros (both the shell and busybox awk read 010 as octal);
# fails if it is not all digits.
dec() {
  case "$1" in '' | *[!0-9]*) return 1 ;; esac
  x=$1
  while [ "${#x}" -gt 1 ] && [ "${x#0}" != "$x" ]; do x=${x#0}; done
  echo "$x"
}

case "$body" in
  *_*) ;;
  *) invalid ;;
esac
start=$(dec "${body%%_*}") || invalid
end=$(dec "${body#*_}") || invalid

# awk, not $((...)): doubles stay exact up to 2^53, the shell's integers may be 32-bit.
line=$(awk -v s="$start" -v e="$end" 'BEGIN {
  s += 0; e += 0; c = 0
  for (n = (s < 2 ? 2 : s); n <= e; n++) {
    if (n < 4) { c++; continue }
    if (n % 2 == 0) continue
    p = 1
    for (d = 3; d * d <= n; d += 2) if (n % d == 0) { p = 0; break }
    c += p
  }
  printf "%d %d %d\n", c, s, e
}')
set -- $line
echo "$1" >"$out"
# To the main router, which sums the counts (app.yaml's main_router); an app without one only keeps custom-out.
if [ -n "${SINK_MODULE:-}" ]; then
  scalebox task add -H part_primes="$1" "$body"
fi
echo "calc: $1 primes in [$2, $3]"
