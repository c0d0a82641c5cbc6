#!/bin/bash
# adds a task for the default sink and one for relay; asks the agent to delete a file once it is done
source /usr/local/bin/functions.sh
part=$(get_header "$2" part)
echo "part:$(echo "$2" | jq -r .part) routes:$(($(wc -l < /proc/net/route) - 1))"
scalebox task add -H part=${part} $1-added || exit 1
send-message relay $1-sent || exit 2
touch ${TRACE_DIR}/to-remove
echo ${TRACE_DIR}/to-remove > ${WORK_DIR}/removed-files.txt
