#!/usr/bin/env bash
source /usr/local/bin/functions.sh
name=$(get_header "$2" "sema_name")
value=$(scalebox semaphore get "$name") || exit $?
if (( value > 0 )); then
    scalebox semaphore decrement "$name"
    exit $?
fi
exit 10
