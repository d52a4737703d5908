#!/bin/sh
# etcd's init container (busybox). Founding members (PETSET_BOOTSTRAP=true) start a new
# cluster of every member in the peers file; a pod added later asks a ready member to
# add it (etcd's member-add API, as `etcdctl member add` does) and joins the existing
# cluster. A restarted member that has data just starts. Reads only PETSET_* and the
# peers file; writes $ETCD_CONFIG, the etcd container's --config-file.
set -eu
: "${ETCD_CONFIG:=/var/run/etcd/etcd.conf.yml}" "${ETCD_DATA_DIR:=/var/lib/etcd}" "${PEERS_WAIT_SECONDS:=60}"

waited=0
until grep -q " $PETSET_FQDN " "$PETSET_PEERS_FILE" 2>/dev/null; do
  [ "$waited" -lt "$PEERS_WAIT_SECONDS" ] || { echo "no $PETSET_FQDN in $PETSET_PEERS_FILE" >&2; exit 1; }
  sleep 1; waited=$((waited + 1))
done

name=$(echo "$PETSET_FQDN" | cut -d. -f1)
peer_url() { echo "http://$1:2380"; }
member() { echo "$(echo "$1" | cut -d. -f1)=$(peer_url "$1")"; }

if [ -d "$ETCD_DATA_DIR/member" ]; then
  state=existing
  cluster=""
elif [ "$PETSET_BOOTSTRAP" = true ]; then
  state=new
  cluster=$(while read -r _ fqdn _ _; do member "$fqdn"; done <"$PETSET_PEERS_FILE" | paste -sd, -)
else
  state=existing
  endpoint=$(while read -r _ fqdn ready _; do
    [ "$ready" = ready ] && [ "$fqdn" != "$PETSET_FQDN" ] && echo "http://$fqdn:2379"
  done <"$PETSET_PEERS_FILE" | head -n 1)
  [ -n "$endpoint" ] || { echo "no ready member to join through" >&2; exit 1; }
  # The answer lists every member; the one just added has no name yet: it is us.
  answer=$(wget -q -O - --header 'Content-Type: application/json' \
    --post-data "{\"peerURLs\":[\"$(peer_url "$PETSET_FQDN")\"]}" "$endpoint/v3/cluster/member/add")
  cluster=$(echo "$answer" | sed 's/.*"members":\[//' | sed 's/},{/\n/g' | while read -r m; do
    n=$(echo "$m" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p')
    u=$(echo "$m" | sed -n 's/.*"peerURLs":\["\([^"]*\)".*/\1/p')
    echo "${n:-$name}=$u"
  done | paste -sd, -)
  [ -n "$cluster" ] || { echo "member add gave no membership: $answer" >&2; exit 1; }
fi

mkdir -p "$(dirname "$ETCD_CONFIG")"
cat >"$ETCD_CONFIG" <<CONF
name: $name
data-dir: $ETCD_DATA_DIR
listen-peer-urls: http://0.0.0.0:2380
listen-client-urls: http://0.0.0.0:2379
initial-advertise-peer-urls: $(peer_url "$PETSET_FQDN")
advertise-client-urls: http://$PETSET_FQDN:2379
initial-cluster-state: $state
initial-cluster-token: $PETSET_NAMESPACE-$PETSET_NAME
CONF
[ -z "$cluster" ] || echo "initial-cluster: $cluster" >>"$ETCD_CONFIG"
echo "$name: $state cluster"
