package system

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// ---- a private Redis Cluster ----

// RedisCluster is a test's own Redis Cluster: three masters and one replica each, redis-server
// processes on six consecutive ports, without persistence. A test may kill its nodes: the shared
// cluster of the other tests (7000-7005) is never touched.
type RedisCluster struct {
	Nodes []*RedisNode
	// URL is the redis+cluster:// seed list of the masters as created.
	URL string
	cli string
}

// RedisNode is one redis-server of a RedisCluster.
type RedisNode struct {
	*Proc
	Addr string
	Port int
}

// StartRedisCluster starts six cluster-enabled redis-servers on ports base to base+5, forms a
// cluster of three masters with a replica each (redis-cli --cluster create) and waits until every
// node says cluster_state:ok. nodeTimeout is cluster-node-timeout: how long a master may be
// unreachable before its replica takes over. Every node is killed when the test ends.
func StartRedisCluster(t testing.TB, base int, nodeTimeout time.Duration) *RedisCluster {
	t.Helper()
	bin := requireTool(t, "redis-server", "/usr/bin/redis-server")
	rc := &RedisCluster{cli: requireTool(t, "redis-cli", "/usr/bin/redis-cli")}
	dir := t.TempDir()
	var addrs []string
	for i := range 6 {
		port := base + i
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		if redisPing(addr) == nil {
			t.Fatalf("port %d is taken by another Redis: the test needs its own cluster on %d-%d", port, base, base+5)
		}
		nodeDir := filepath.Join(dir, strconv.Itoa(port))
		if err := os.MkdirAll(nodeDir, 0o755); err != nil {
			t.Fatal(err)
		}
		n := &RedisNode{Addr: addr, Port: port, Proc: &Proc{Name: fmt.Sprintf("redis-%d", port), Path: bin,
			Args: []string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--cluster-enabled", "yes",
				"--cluster-config-file", "nodes.conf",
				"--cluster-node-timeout", strconv.FormatInt(nodeTimeout.Milliseconds(), 10),
				// The masters that are up keep serving their slots while one is failing over.
				"--cluster-require-full-coverage", "no",
				"--save", "", "--appendonly", "no", "--dir", nodeDir, "--protected-mode", "no", "--maxclients", "10000"},
			Env: baseEnv(), LogPath: filepath.Join(dir, fmt.Sprintf("redis-%d.log", port))}}
		rc.Nodes = append(rc.Nodes, n)
		addrs = append(addrs, addr)
	}
	t.Cleanup(func() {
		for _, n := range rc.Nodes {
			n.Kill()
		}
	})
	for _, n := range rc.Nodes {
		if err := n.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, n := range rc.Nodes {
		if !waitFor(15*time.Second, 20*time.Millisecond, func() bool { return redisPing(n.Addr) == nil || !n.Running() }) || !n.Running() {
			t.Fatalf("%s not answering:\n%s", n.Name, n.Tail(20))
		}
	}
	args := append([]string{"--cluster", "create"}, addrs...)
	args = append(args, "--cluster-replicas", "1", "--cluster-yes")
	if out, err := exec.Command(rc.cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	if !waitFor(30*time.Second, 50*time.Millisecond, func() bool {
		for _, n := range rc.Nodes {
			info := rc.cmd(n.Addr, "cluster", "info")
			if !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_known_nodes:6") {
				return false
			}
		}
		// Every replica has finished its first sync, so a master killed now has a replica
		// ready to take over.
		for _, n := range rc.Nodes {
			if info := rc.cmd(n.Addr, "info", "replication"); strings.Contains(info, "role:slave") && !strings.Contains(info, "master_link_status:up") {
				return false
			}
		}
		return true
	}) {
		t.Fatalf("the Redis Cluster did not form within 30 s:\n%s", rc.cmd(addrs[0], "cluster", "nodes"))
	}
	rc.URL = "redis+cluster://" + strings.Join(addrs[:3], ",")
	return rc
}

// cmd runs one redis-cli command against addr and returns its output ("" on failure).
func (rc *RedisCluster) cmd(addr string, args ...string) string {
	host, port, _ := strings.Cut(addr, ":")
	out, err := exec.Command(rc.cli, append([]string{"-h", host, "-p", port}, args...)...).Output()
	if err != nil {
		return ""
	}
	return strings.ReplaceAll(string(out), "\r", "")
}

// ClusterNode is a line of CLUSTER NODES.
type ClusterNode struct {
	ID, Addr string
	Master   bool
	Failed   bool
	MasterID string
	Slots    [][2]int
}

// Topology reads CLUSTER NODES from the first node of the cluster that answers.
func (rc *RedisCluster) Topology() []ClusterNode {
	for _, n := range rc.Nodes {
		if !n.Running() {
			continue
		}
		out := rc.cmd(n.Addr, "cluster", "nodes")
		if out == "" {
			continue
		}
		var nodes []ClusterNode
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 8 {
				continue
			}
			cn := ClusterNode{ID: f[0], Addr: strings.Split(f[1], "@")[0], Master: strings.Contains(f[2], "master"),
				Failed: strings.Contains(f[2], "fail") && !strings.Contains(f[2], "fail?"), MasterID: f[3]}
			for _, r := range f[8:] {
				lo, hi, ok := strings.Cut(r, "-")
				if !ok {
					hi = lo
				}
				a, err1 := strconv.Atoi(lo)
				b, err2 := strconv.Atoi(hi)
				if err1 == nil && err2 == nil {
					cn.Slots = append(cn.Slots, [2]int{a, b})
				}
			}
			nodes = append(nodes, cn)
		}
		return nodes
	}
	return nil
}

// MasterOf returns the node that serves key's slot now.
func (rc *RedisCluster) MasterOf(t testing.TB, key string) *RedisNode {
	t.Helper()
	slot, err := strconv.Atoi(strings.TrimSpace(rc.cmd(rc.Nodes[0].Addr, "cluster", "keyslot", key)))
	if err != nil {
		t.Fatalf("CLUSTER KEYSLOT %s: %v", key, err)
	}
	for _, cn := range rc.Topology() {
		for _, r := range cn.Slots {
			if cn.Master && !cn.Failed && slot >= r[0] && slot <= r[1] {
				return rc.Node(cn.Addr)
			}
		}
	}
	t.Fatalf("no master serves slot %d:\n%s", slot, rc.cmd(rc.Nodes[0].Addr, "cluster", "nodes"))
	return nil
}

// Node returns the node at addr (nil if none).
func (rc *RedisCluster) Node(addr string) *RedisNode {
	for _, n := range rc.Nodes {
		if n.Addr == addr {
			return n
		}
	}
	return nil
}

// ReplicaOf returns the node replicating master.
func (rc *RedisCluster) ReplicaOf(t testing.TB, master *RedisNode) *RedisNode {
	t.Helper()
	topo := rc.Topology()
	id := ""
	for _, cn := range topo {
		if cn.Addr == master.Addr {
			id = cn.ID
		}
	}
	for _, cn := range topo {
		if !cn.Master && cn.MasterID == id {
			return rc.Node(cn.Addr)
		}
	}
	t.Fatalf("%s has no replica:\n%s", master.Addr, rc.cmd(rc.Nodes[0].Addr, "cluster", "nodes"))
	return nil
}

// Healthy tells whether every running node says cluster_state:ok and node is a master.
func (rc *RedisCluster) Healthy(master *RedisNode) bool {
	for _, n := range rc.Nodes {
		if n.Running() && !strings.Contains(rc.cmd(n.Addr, "cluster", "info"), "cluster_state:ok") {
			return false
		}
	}
	return strings.Contains(rc.cmd(master.Addr, "role"), "master")
}

// Describe is CLUSTER NODES as one running node sees it, for the test log.
func (rc *RedisCluster) Describe() string {
	for _, n := range rc.Nodes {
		if n.Running() {
			return rc.cmd(n.Addr, "cluster", "nodes")
		}
	}
	return "(no node running)"
}
