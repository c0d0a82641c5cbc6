#!/bin/bash
# $1: body, $2: headers; an empty from_module is the start task
from=$(echo "$2" | jq -r '.from_module // empty')
if [ -z "$from" ]; then
    exec /app/bin/split.sh "$1"
fi
exec /app/bin/add.sh "$1" "$2"
