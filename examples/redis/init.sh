#!/bin/sh
# Redis's init container: the pod petset labels leader starts as the primary, the
# others as replicas of the <set>-leader Service. Writes $REDIS_CONF.
set -eu
: "${REDIS_CONF:=/etc/redis/redis.conf}" "${PEERS_WAIT_SECONDS:=60}"
waited=0
until grep -q " $PETSET_FQDN " "$PETSET_PEERS_FILE" 2>/dev/null; do
  [ "$waited" -lt "$PEERS_WAIT_SECONDS" ] || { echo "no $PETSET_FQDN in $PETSET_PEERS_FILE" >&2; exit 1; }
  sleep 1; waited=$((waited + 1))
done
leader_service="$PETSET_NAME-leader.$PETSET_NAMESPACE.svc.${PETSET_FQDN#*.svc.}"
role=$(awk -v me="$PETSET_FQDN" '$2 == me { print $4 }' "$PETSET_PEERS_FILE")
mkdir -p "$(dirname "$REDIS_CONF")"
{
  echo "port 6379"
  echo "dir /data"
  echo "appendonly yes"
  echo "replica-announce-ip $PETSET_FQDN"
  [ "$role" = leader ] || echo "replicaof $leader_service 6379"
} >"$REDIS_CONF"
echo "$PETSET_FQDN starts as ${role:-follower}"
