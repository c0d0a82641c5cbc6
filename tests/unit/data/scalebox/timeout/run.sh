#!/bin/bash
for ((i = 0; i < TICKS; i++)); do sleep 1; date; done
