#!/bin/sh
# Start the Kafka relays named in RELAYS ("<listen host>:<port>=<target host>:<port> ..."), then sshd.
for relay in $RELAYS; do
  python3 /opt/testhost/relay.py "${relay%%=*}" "${relay#*=}" &
done
exec /usr/sbin/sshd -D -e
