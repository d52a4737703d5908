#!/bin/sh
# Sidecar: ZooKeeper elects its own leader; this mirrors it into the Lease named after
# the PetSet (leader.policy: AppElected), so petset labels the leader pod, records it
# in status and points the <set>-leader Service at it. While this server reports
# "Mode: leader" it takes or renews the Lease; otherwise it leaves it alone and the
# hold expires.
# ONCE=1 does one round and exits (for tests).
set -eu
: "${LEASE_SECONDS:=15}" "${RENEW_SECONDS:=5}" "${ZK_CLIENT:=127.0.0.1 2181}" "${ONCE:=}"
: "${API:=https://kubernetes.default.svc}" "${SA_DIR:=/var/run/secrets/kubernetes.io/serviceaccount}"
api=$API
sa=$SA_DIR
lease="$api/apis/coordination.k8s.io/v1/namespaces/$PETSET_NAMESPACE/leases/$PETSET_NAME"
me=$(echo "$PETSET_FQDN" | cut -d. -f1)

while true; do
  if echo srvr | nc $ZK_CLIENT 2>/dev/null | grep -q 'Mode: leader'; then
    now=$(date -u +%Y-%m-%dT%H:%M:%S.000000Z)
    body="{\"spec\":{\"holderIdentity\":\"$me\",\"leaseDurationSeconds\":$LEASE_SECONDS,\"renewTime\":\"$now\"}}"
    curl -sS --fail --cacert "$sa/ca.crt" -H "Authorization: Bearer $(cat "$sa/token")" \
      -H 'Content-Type: application/merge-patch+json' -X PATCH -d "$body" "$lease" >/dev/null || true
  fi
  [ -z "$ONCE" ] || exit 0
  sleep "$RENEW_SECONDS"
done
