#!/bin/bash
cp "/incoming/$1" /work/
