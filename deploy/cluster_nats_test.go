package deploy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"slices"
	"strings"
	"testing"
	"time"
)

// TestComposeClusterNATS runs the cluster profile's NATS nodes as compose would, on this machine:
// nats-server with each node's command line, where only what Docker gives a container differs (an
// address of its own, the service names resolving to those addresses, the store on a directory).
// Its health check, the one the replicas wait for, must fail while a node is alone, since
// JetStream cannot place streams replicated 3 times then, and pass on every node once all three
// have formed the cluster.
func TestComposeClusterNATS(t *testing.T) {
	t.Parallel()
	server := lookPath(t, "nats-server")
	cf := loadStrictCompose(t)
	var nodes []string
	for name, s := range cf.Services {
		if slices.Contains(s.Profiles, "cluster") && strings.HasPrefix(s.Image, "nats:") {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	if len(nodes) != 3 {
		t.Fatalf("NATS nodes of the cluster profile: %v, want 3", nodes)
	}
	var addrs []string
	for attempt := 0; len(addrs) == 0 && attempt < 20; attempt++ {
		base := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), 1+rand.IntN(250))
		free := true
		for i := range nodes {
			for _, port := range []string{"4222", "6222", "8222"} {
				l, err := net.Listen("tcp", base+fmt.Sprint(20+i)+":"+port)
				if err != nil {
					free = false
					continue
				}
				_ = l.Close()
			}
		}
		if free {
			for i := range nodes {
				addrs = append(addrs, base+fmt.Sprint(20+i))
			}
		}
	}
	if len(addrs) == 0 {
		t.Fatal("no free loopback addresses for the three nodes")
	}
	ip := map[string]string{}
	for i, n := range nodes {
		ip[n] = addrs[i]
	}
	// The node's command, as a container on its own address would run it.
	args := func(name string) []string {
		s := cf.Services[name]
		out := []string{"-a", ip[name]}
		for i := 0; i < len(s.Command); i++ {
			a := s.Command[i]
			switch {
			case a == "-sd" && i+1 < len(s.Command):
				out = append(out, a, t.TempDir())
				i++
			case (a == "--cluster" || a == "--routes") && i+1 < len(s.Command):
				var urls []string
				for _, r := range strings.Split(s.Command[i+1], ",") {
					u, err := url.Parse(r)
					if err != nil {
						t.Fatalf("%s: %s %q: %v", name, a, r, err)
					}
					host := u.Hostname()
					if host == "0.0.0.0" {
						host = name // every address of the container is its one address
					}
					addr, ok := ip[host]
					if !ok {
						t.Fatalf("%s: %s names %s, which is no NATS node of the profile", name, a, host)
					}
					u.Host = addr + ":" + u.Port()
					urls = append(urls, u.String())
				}
				out = append(out, a, strings.Join(urls, ","))
				i++
			default:
				out = append(out, a)
			}
		}
		return out
	}
	// The health check's URL, on the node's address.
	var check []string
	if hc := cf.Services[nodes[0]].Healthcheck; hc != nil {
		check = hc.Test
	}
	healthURL := ""
	for _, a := range check {
		if strings.HasPrefix(a, "http://127.0.0.1:") {
			healthURL = a
		}
	}
	if healthURL == "" {
		t.Fatalf("%s: no http://127.0.0.1:... URL in the healthcheck %v", nodes[0], check)
	}
	healthy := func(name string) bool {
		req, _ := http.NewRequestWithContext(context.Background(), http.MethodGet, strings.Replace(healthURL, "127.0.0.1", ip[name], 1), nil)
		res, err := (&http.Client{Timeout: 2 * time.Second}).Do(req)
		if err != nil {
			return false
		}
		_ = res.Body.Close()
		return res.StatusCode == http.StatusOK
	}
	start := func(name string) {
		cmd := exec.Command(server, args(name)...)
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}

	// One node alone: up, but not healthy, for as long as a replica would wait.
	start(nodes[0])
	up := false
	for deadline := time.Now().Add(10 * time.Second); !up && time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		c, err := net.DialTimeout("tcp", ip[nodes[0]]+":4222", time.Second)
		if err == nil {
			_ = c.Close()
			up = true
		}
	}
	if !up {
		t.Fatalf("%s does not take clients", nodes[0])
	}
	for end := time.Now().Add(3 * time.Second); time.Now().Before(end); time.Sleep(250 * time.Millisecond) {
		if healthy(nodes[0]) {
			t.Fatalf("%s alone answers its health check: the replicas would start before JetStream can place 3 replicas", nodes[0])
		}
	}
	// All three: each one healthy.
	for _, n := range nodes[1:] {
		start(n)
	}
	for _, n := range nodes {
		ok := false
		for deadline := time.Now().Add(30 * time.Second); !ok && time.Now().Before(deadline); time.Sleep(250 * time.Millisecond) {
			ok = healthy(n)
		}
		if !ok {
			t.Fatalf("%s is not healthy 30 s after the three nodes started", n)
		}
	}
}
