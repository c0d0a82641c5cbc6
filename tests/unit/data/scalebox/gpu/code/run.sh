#!/bin/bash
echo "slot device ${ROCR_VISIBLE_DEVICES}: $1"
