#!/bin/bash
echo "gate passed" >> /work/custom-out.txt
scalebox app set-finished --job-id ${JOB_ID} "$(cat /work/custom-out.txt)"
