#!/bin/bash
# a setup that cannot succeed (a licence server that is down, say): the slot never becomes ready
echo "$(basename $0)" >> ${TRACE_DIR}/trace.log
echo "licence server unreachable" >&2
exit 7
