#!/usr/bin/env bash
# Starts a local 3-node NATS JetStream cluster for the tests that need one (ONSALE_TEST_NATS_CLUSTER_URL):
# client ports 4231-4233, cluster routes 4241-4243, monitoring 4251-4253, each node with its own
# store under $NATS_CLUSTER_DIR (default /var/lib/onsale-nats-cluster when writable, else under
# /tmp). Idempotent: a node already answering on its port is left alone. It returns once the
# cluster has a JetStream meta leader, which is what creating a replicated stream waits for.
set -euo pipefail
export PATH="$PATH:/usr/sbin:/sbin"

dir=${NATS_CLUSTER_DIR:-/var/lib/onsale-nats-cluster}
mkdir -p "$dir" 2>/dev/null || dir=${TMPDIR:-/tmp}/onsale-nats-cluster
mkdir -p "$dir"
bin=$(command -v nats-server) || { echo "nats-server is not installed" >&2; exit 1; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

routes=nats://127.0.0.1:4241,nats://127.0.0.1:4242,nats://127.0.0.1:4243
for i in 1 2 3; do
  port=$((4230 + i))
  if port_open "$port"; then continue; fi
  mkdir -p "$dir/n$i"
  # setsid: the node outlives this script and the shell that ran it.
  setsid "$bin" -a 127.0.0.1 -p "$port" -n "onsale-ci-n$i" -js -sd "$dir/n$i" \
    --cluster_name onsale-ci --cluster "nats://127.0.0.1:$((4240 + i))" --routes "$routes" \
    -m "$((4250 + i))" -l "$dir/n$i.log" </dev/null >/dev/null 2>&1 &
done

# Every node up, then a meta leader (elected once a majority of the nodes see one another).
for _ in $(seq 1 300); do
  up=0
  for i in 1 2 3; do port_open $((4230 + i)) && up=$((up + 1)); done
  if [ "$up" = 3 ] && curl -fsS http://127.0.0.1:4251/jsz 2>/dev/null | grep -q '"leader": *"[^"]'; then
    echo "nats cluster: 3 nodes on 127.0.0.1:4231-4233, JetStream meta leader elected"
    exit 0
  fi
  sleep 0.2
done
echo "nats cluster: no JetStream meta leader after 60 s; logs in $dir" >&2
tail -n 20 "$dir"/n*.log >&2 || true
exit 1
