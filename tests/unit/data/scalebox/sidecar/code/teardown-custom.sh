#!/bin/bash
echo "In file:$0"
