#!/bin/bash
echo "Body:$1"
scalebox app set-finished --module-id=${MODULE_ID} "Greetings to $1, all done"
