#!/bin/bash
# prints the date once a second, SLEEP_SECONDS times
for ((i = 0; i < SLEEP_SECONDS; i++)); do
    date
    sleep 1
done
