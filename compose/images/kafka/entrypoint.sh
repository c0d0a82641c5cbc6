#!/usr/bin/env bash
# Starts one Kafka node. Its settings come from the environment, as in the apache/kafka image: every
# KAFKA_<NAME> becomes the property <name> (lower case, `_` -> `.`, `__` -> `_`), e.g.
# KAFKA_NODE_ID=1 -> node.id=1. KAFKA_HEAP_OPTS and KAFKA_JVM_OPTS go to the JVM; KAFKA_CLUSTER_ID names the
# cluster when the storage is formatted (on the first start only: a random id otherwise). Data in
# /var/lib/kafka/data (a volume).
set -euo pipefail

CONFIG=/etc/kafka/server.properties
CP='/opt/kafka/lib/*'

{
  echo "# Written by kafka-entrypoint from the KAFKA_* environment on every start."
  echo "log.dirs=/var/lib/kafka/data"
  env | LC_ALL=C sort | while IFS='=' read -r name value; do
    case "$name" in
      KAFKA_HEAP_OPTS|KAFKA_JVM_OPTS|KAFKA_CLUSTER_ID) continue ;;
      KAFKA_*) key=${name#KAFKA_}; key=${key,,}; key=${key//__/@}; key=${key//_/.}; echo "${key//@/_}=$value" ;;
    esac
  done
} >"$CONFIG"

if [ ! -e /var/lib/kafka/data/meta.properties ]; then
  cluster_id=${KAFKA_CLUSTER_ID:-$(java -cp "$CP" kafka.tools.StorageTool random-uuid)}
  java -Xmx256m -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp "$CP" \
    kafka.tools.StorageTool format --ignore-formatted -t "$cluster_id" -c "$CONFIG"
fi

# shellcheck disable=SC2086  # the options are word lists
exec java $KAFKA_HEAP_OPTS -XX:+UseG1GC -Djava.awt.headless=true ${KAFKA_JVM_OPTS:-} \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -cp "$CP" kafka.Kafka "$CONFIG"
