#!/bin/sh
# ZooKeeper's init container: myid from the ordinal, the ensemble from the peers file.
# Reads only the petset identity contract (PETSET_* and the peers file).
# Writes $ZK_CONF_DIR/zoo.cfg and $ZK_DATA_DIR/myid.
set -eu
: "${ZK_CONF_DIR:=/conf}" "${ZK_DATA_DIR:=/data}" "${PEERS_WAIT_SECONDS:=60}"

# The operator writes the peers file as soon as the set exists; wait for our line.
waited=0
until grep -q " $PETSET_FQDN " "$PETSET_PEERS_FILE" 2>/dev/null; do
  [ "$waited" -lt "$PEERS_WAIT_SECONDS" ] || { echo "no $PETSET_FQDN in $PETSET_PEERS_FILE" >&2; exit 1; }
  sleep 1; waited=$((waited + 1))
done

mkdir -p "$ZK_CONF_DIR" "$ZK_DATA_DIR"
# ZooKeeper ids run from 1.
echo $((PETSET_ORDINAL + 1)) >"$ZK_DATA_DIR/myid"
{
  echo "dataDir=$ZK_DATA_DIR"
  echo "clientPort=2181"
  echo "tickTime=2000"
  echo "initLimit=10"
  echo "syncLimit=5"
  echo "standaloneEnabled=false"
  echo "reconfigEnabled=true"
  echo "4lw.commands.whitelist=srvr,ruok"
  # Every member of the spec, ready or not: the ensemble is the spec, not who is up.
  while read -r ordinal fqdn _state _role; do
    echo "server.$((ordinal + 1))=$fqdn:2888:3888;2181"
  done <"$PETSET_PEERS_FILE"
} >"$ZK_CONF_DIR/zoo.cfg"
echo "myid $((PETSET_ORDINAL + 1)), $(grep -c '^server\.' "$ZK_CONF_DIR/zoo.cfg") servers"
