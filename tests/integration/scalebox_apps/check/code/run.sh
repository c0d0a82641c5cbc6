#!/bin/bash
echo "gate passed" >> /work/custom-out.txt
cat /work/custom-out.txt
