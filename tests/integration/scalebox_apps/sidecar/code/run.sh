#!/bin/bash
echo "In file:$0"
echo "$(basename $0)" >> ${TRACE_DIR}/trace.log
# what the module contract gives a task: its environment and the standard mounts
for v in APP_ID MODULE_ID JOB_ID SLOT_ID TASK_ID WORK_DIR CLUSTER_DATA_ROOT; do
    echo "$v=${!v}" >> ${TRACE_DIR}/run-env.txt
done
if [ -d /cluster_data_root ] && [ -d /dev/shm ] && [ -f /app/bin/run.sh ]; then
    echo "mounts ok" >> ${TRACE_DIR}/run-env.txt
fi
# extra attributes of the task, kept with its attempt (key=value lines; a JSON object works too)
printf 'module=%s\nscript=run.sh\n' "$MODULE_ID" > "${WORK_DIR:-.}/extra-attributes.txt"
