#!/usr/bin/env bash
# Starts a local Redis Cluster for the tests: 3 masters and 3 replicas on 127.0.0.1 ports
# 7000-7005, with Debian's redis-server (cluster-enabled yes, no persistence: a test cluster).
# Idempotent: a cluster that is already up and healthy (cluster_state:ok, 6 nodes) is left alone;
# nodes that are down are started again, and a cluster that never formed is formed.
# Tests find it at ONSALE_TEST_REDIS_CLUSTER_URL (default
# redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002).
set -euo pipefail
ports=(7000 7001 7002 7003 7004 7005)
base=${ONSALE_REDIS_CLUSTER_DIR:-/var/lib/redis-cluster}

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
info() { redis-cli -h 127.0.0.1 -p "$1" cluster info 2>/dev/null | tr -d '\r'; }
healthy() {
  for p in "${ports[@]}"; do
    i=$(info "$p")
    grep -q '^cluster_state:ok' <<<"$i" && grep -q '^cluster_known_nodes:6' <<<"$i" || return 1
  done
}

if healthy; then echo "redis cluster on ${ports[0]}-${ports[-1]}: already up"; exit 0; fi

for p in "${ports[@]}"; do
  port_open "$p" && continue
  mkdir -p "$base/$p"
  # nodes.conf (the node's id and its view of the cluster) lives in the data directory, so a node
  # started again rejoins its cluster.
  redis-server --daemonize yes --bind 127.0.0.1 --port "$p" --cluster-enabled yes \
    --cluster-config-file nodes.conf --cluster-node-timeout 5000 --save "" --appendonly no \
    --protected-mode no --dir "$base/$p" --logfile "$base/$p/redis.log" --pidfile "$base/$p/redis.pid"
done
for p in "${ports[@]}"; do
  for _ in $(seq 1 100); do port_open "$p" && break; sleep 0.1; done
  port_open "$p" || { echo "redis-server did not open port $p" >&2; tail -5 "$base/$p/redis.log" >&2; exit 1; }
done

# Form the cluster once: a node that knows only itself has not joined one.
if grep -q '^cluster_known_nodes:1$' <<<"$(info "${ports[0]}")"; then
  redis-cli --cluster create $(printf '127.0.0.1:%s ' "${ports[@]}") --cluster-replicas 1 --cluster-yes >/dev/null
fi
for _ in $(seq 1 300); do
  if healthy; then echo "redis cluster on ${ports[0]}-${ports[-1]}: ok"; exit 0; fi
  sleep 0.1
done
echo "redis cluster did not reach cluster_state:ok within 30 s:" >&2
redis-cli -h 127.0.0.1 -p "${ports[0]}" cluster nodes >&2 || true
exit 1
