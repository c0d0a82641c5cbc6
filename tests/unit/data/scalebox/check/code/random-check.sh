#!/bin/bash
code=$((RANDOM % 3))
echo "check_code:$code" >> /work/custom-out.txt
exit $code
