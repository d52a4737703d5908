#!/bin/sh
# Sidecar: follows leadership changes in the peers file (the old on-change hook). When
# petset makes this pod the leader it becomes the primary; when another pod leads, it
# replicates from the <set>-leader Service. FOLLOW_ONCE=1 handles the current state
# and exits (for tests).
set -eu
: "${POLL_SECONDS:=2}" "${FOLLOW_ONCE:=}"
leader_service="$PETSET_NAME-leader.$PETSET_NAMESPACE.svc.${PETSET_FQDN#*.svc.}"
last=""
while true; do
  role=$(awk -v me="$PETSET_FQDN" '$2 == me { print $4 }' "$PETSET_PEERS_FILE" 2>/dev/null || true)
  if [ -n "$role" ] && [ "$role" != "$last" ]; then
    if [ "$role" = leader ]; then
      redis-cli -h 127.0.0.1 replicaof no one
    else
      redis-cli -h 127.0.0.1 replicaof "$leader_service" 6379
    fi
    last=$role
  fi
  [ -z "$FOLLOW_ONCE" ] || exit 0
  sleep "$POLL_SECONDS"
done
