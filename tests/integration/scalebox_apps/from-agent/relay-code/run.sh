#!/bin/sh
# busybox: no bash, no jq, no Python, no network
echo "$1 routes:$(($(wc -l < /proc/net/route) - 1))" > /work/custom-out.txt
scalebox task add --sink-module last "$1" || exit 1
send-message "$1-msg" || exit 2
echo "$1-old" > /work/messages.txt
