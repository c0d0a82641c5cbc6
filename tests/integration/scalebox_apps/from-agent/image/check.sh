#!/bin/bash
# a standard module's admission script, shipped in the image
echo "$1" >> ${TRACE_DIR}/image-check.log
