#!/bin/bash
echo "In file:$0"
echo "$(basename $0)" >> ${TRACE_DIR}/trace.log
