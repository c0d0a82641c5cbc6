#!/bin/bash
# admits on the third call: 1, 2, then 0
echo x >> ${TRACE_DIR}/checks.log
n=$(wc -l < ${TRACE_DIR}/checks.log)
code=$(( n >= 3 ? 0 : n ))
echo "check_code:$code" >> /work/custom-out.txt
exit $code
