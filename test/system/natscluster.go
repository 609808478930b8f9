package system

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// ---- a private NATS JetStream cluster ----

// NATSCluster is a test's own cluster of nats-server processes with JetStream, each storing in
// a directory that survives its restarts, so a test can kill nodes without touching the shared
// cluster (.ci/nats-cluster.sh).
type NATSCluster struct {
	Nodes []*NATSNode
	URL   string // every node's client URL, comma-separated: what the replicas connect to
}

// NATSNode is one node of a NATSCluster.
type NATSNode struct {
	*Proc
	Name    string // the server name, as stream and consumer infos name leaders
	Addr    string
	Monitor string // host:port of the monitoring endpoint
}

// StartNATSCluster starts n nodes on spare ports and waits until the cluster has a JetStream
// meta leader (until then a stream cannot be created).
func StartNATSCluster(t testing.TB, n int) *NATSCluster {
	t.Helper()
	bin := requireTool(t, "nats-server", "/usr/sbin/nats-server")
	dir := t.TempDir()
	clientPorts, routePorts, monitorPorts := make([]int, n), make([]int, n), make([]int, n)
	var routes, urls []string
	for i := range n {
		clientPorts[i], routePorts[i], monitorPorts[i] = testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
		routes = append(routes, fmt.Sprintf("nats://127.0.0.1:%d", routePorts[i]))
		urls = append(urls, fmt.Sprintf("nats://127.0.0.1:%d", clientPorts[i]))
	}
	c := &NATSCluster{URL: strings.Join(urls, ",")}
	clusterName := fmt.Sprintf("onsale-test-%d", clientPorts[0])
	for i := range n {
		name := fmt.Sprintf("%s-n%d", clusterName, i+1)
		node := &NATSNode{Name: name, Addr: fmt.Sprintf("127.0.0.1:%d", clientPorts[i]),
			Monitor: fmt.Sprintf("127.0.0.1:%d", monitorPorts[i])}
		node.Proc = &Proc{Name: name, Path: bin, Env: baseEnv(), LogPath: filepath.Join(dir, name+".log"),
			Args: []string{"-a", "127.0.0.1", "-p", strconv.Itoa(clientPorts[i]), "-n", name,
				"-js", "-sd", filepath.Join(dir, name),
				"--cluster_name", clusterName, "--cluster", routes[i], "--routes", strings.Join(routes, ","),
				"-m", strconv.Itoa(monitorPorts[i])}}
		c.Nodes = append(c.Nodes, node)
	}
	t.Cleanup(func() {
		for _, node := range c.Nodes {
			node.Kill()
		}
	})
	for _, node := range c.Nodes {
		if err := node.Start(); err != nil {
			t.Fatal(err)
		}
	}
	for _, node := range c.Nodes {
		node.waitAnswering(t)
	}
	if !waitFor(30*time.Second, 50*time.Millisecond, func() bool { return c.metaLeader() != "" }) {
		t.Fatalf("the NATS cluster elected no JetStream meta leader in 30 s")
	}
	return c
}

func (n *NATSNode) waitAnswering(t testing.TB) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := natsInfo(n.Addr)
		if err == nil {
			return
		}
		if time.Now().After(deadline) || !n.Running() {
			t.Fatalf("%s not answering: %v\n%s", n.Name, err, n.Tail(20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metaLeader is the JetStream meta leader any running node knows of, or "".
func (c *NATSCluster) metaLeader() string {
	for _, n := range c.Nodes {
		if !n.Running() {
			continue
		}
		var jsz struct {
			Meta struct {
				Leader string `json:"leader"`
			} `json:"meta_cluster"`
		}
		resp, err := http.Get("http://" + n.Monitor + "/jsz")
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&jsz)
		resp.Body.Close()
		if err == nil && jsz.Meta.Leader != "" {
			return jsz.Meta.Leader
		}
	}
	return ""
}

// Node returns the node of a server name.
func (c *NATSCluster) Node(t testing.TB, name string) *NATSNode {
	t.Helper()
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	t.Fatalf("no NATS node named %q", name)
	return nil
}

// StreamInfo reads a stream's state through the running nodes.
func (c *NATSCluster) StreamInfo(stream string) (*jetstream.StreamInfo, error) {
	nc, err := natsclient.Connect(c.URL, "onsale-system-test", logging.Discard())
	if err != nil {
		return nil, err
	}
	defer func() { _ = nc.Close(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	s, err := nc.JS.Stream(ctx, stream)
	if err != nil {
		return nil, err
	}
	return s.CachedInfo(), nil
}

// Healthy tells whether a stream has a leader and every one of its other replicas is current:
// the stream would survive losing any one node now.
func (c *NATSCluster) Healthy(stream string) (string, bool) {
	info, err := c.StreamInfo(stream)
	if err != nil {
		return err.Error(), false
	}
	if info.Cluster == nil || info.Cluster.Leader == "" {
		return "no leader", false
	}
	desc := "leader " + info.Cluster.Leader
	ok := len(info.Cluster.Replicas) == len(c.Nodes)-1
	for _, r := range info.Cluster.Replicas {
		desc += fmt.Sprintf(", %s current=%t offline=%t lag=%d", r.Name, r.Current, r.Offline, r.Lag)
		ok = ok && r.Current && !r.Offline
	}
	return desc, ok
}

// Leader is the server name of a stream's leader, waiting up to timeout for one.
func (c *NATSCluster) Leader(t testing.TB, stream string, timeout time.Duration) string {
	t.Helper()
	var leader string
	found := waitFor(timeout, 100*time.Millisecond, func() bool {
		info, err := c.StreamInfo(stream)
		if err == nil && info.Cluster != nil {
			leader = info.Cluster.Leader
		}
		return leader != ""
	})
	if !found {
		t.Fatalf("stream %s has no leader after %s", stream, timeout)
	}
	return leader
}

// Restart starts a killed node again (same ports and store) and waits until it answers.
func (n *NATSNode) Restart(t testing.TB) {
	t.Helper()
	if err := n.Start(); err != nil {
		t.Fatal(err)
	}
	n.waitAnswering(t)
}
