package deploy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// lookPath finds a program a test runs, failing without it when services are required.
func lookPath(t *testing.T, name string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err != nil {
		if testenv.RequireServices() {
			t.Fatalf("%s is required (ONSALE_TEST_REQUIRE_SERVICES=1) but not on PATH: %v", name, err)
		}
		t.Skipf("%s not on PATH, skipping (set ONSALE_TEST_REQUIRE_SERVICES=1 to fail instead): %v", name, err)
	}
	return p
}

// TestComposeClusterRedisInit runs the cluster profile's Redis nodes and its one-shot
// redis-cluster-init as compose would, on this machine: six redis-server processes with the
// nodes' command line, each on an address of its own on port 6379 (as each container has), and
// the init script verbatim (compose's $$ made $) with getent and redis-cli given the nodes'
// addresses for their service names, which Docker's DNS would resolve. The cluster it forms has 3
// masters with a replica each and serves every slot; run again, the script leaves it as it is.
func TestComposeClusterRedisInit(t *testing.T) {
	t.Parallel()
	server, cli := lookPath(t, "redis-server"), lookPath(t, "redis-cli")
	cf := loadStrictCompose(t)
	var nodes []string
	for name, s := range cf.Services {
		if slices.Contains(s.Profiles, "cluster") && strings.Contains(strings.Join(s.Command, " "), "--cluster-enabled yes") {
			nodes = append(nodes, name)
		}
	}
	slices.Sort(nodes)
	init, ok := cf.Services["redis-cluster-init"]
	if len(nodes) != 6 || !ok || len(init.Command) != 3 || init.Command[0] != "sh" {
		t.Fatalf("want six cluster nodes and redis-cluster-init running sh -ec SCRIPT; found nodes %v, init %v", nodes, init.Command)
	}

	// An address per node in 127.0.0.0/8 (all of it is loopback), picked at random so that
	// another run at the same time does not collide, with 6379 and the bus port 16379 free.
	var addrs []string
	for attempt := 0; len(addrs) == 0 && attempt < 20; attempt++ {
		base := fmt.Sprintf("127.%d.%d.", 1+rand.IntN(250), 1+rand.IntN(250))
		free := true
		for i := range nodes {
			for _, port := range []string{"6379", "16379"} {
				l, err := net.Listen("tcp", base+fmt.Sprint(10+i)+":"+port)
				if err != nil {
					free = false
					continue
				}
				_ = l.Close()
			}
		}
		if free {
			for i := range nodes {
				addrs = append(addrs, base+fmt.Sprint(10+i))
			}
		}
	}
	if len(addrs) == 0 {
		t.Fatal("no free loopback addresses for the six nodes")
	}
	ip := map[string]string{}
	for i, name := range nodes {
		ip[name] = addrs[i]
		dir := t.TempDir()
		// A container has one address, which its node announces; here the node says which of
		// the loopback addresses is its own.
		args := append(slices.Clone(cf.Services[name].Command[1:]), "--bind", addrs[i], "--port", "6379", "--dir", dir,
			"--cluster-announce-ip", addrs[i])
		cmd := exec.Command(server, args...)
		cmd.Dir = dir
		if err := cmd.Start(); err != nil {
			t.Fatalf("start %s: %v", name, err)
		}
		t.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		})
	}
	redis := func(ctx context.Context, addr string, args ...string) (string, error) {
		out, err := exec.CommandContext(ctx, cli, append([]string{"-h", addr, "-p", "6379"}, args...)...).CombinedOutput()
		return string(out), err
	}
	for _, name := range nodes { // what the nodes' health check asks before the init may run
		testenv.Eventually(t, 10*time.Second, func() bool {
			out, err := redis(context.Background(), ip[name], "ping")
			return err == nil && strings.TrimSpace(out) == "PONG"
		}, "%s does not answer PING", name)
	}

	// Docker's DNS, for the script: getent hosts NAME and redis-cli -h NAME.
	bin := t.TempDir()
	var hosts, rewrite strings.Builder
	for _, name := range nodes {
		fmt.Fprintf(&hosts, "  %s) echo \"%s       %s\" ;;\n", name, ip[name], name)
		fmt.Fprintf(&rewrite, "    %s) a=%s ;;\n", name, ip[name])
	}
	shims := map[string]string{
		"getent": "#!/bin/sh\n[ \"$1\" = hosts ] || exit 2\ncase \"$2\" in\n" + hosts.String() + "  *) exit 2 ;;\nesac\n",
		"redis-cli": "#!/bin/sh\nn=$#\nfor a in \"$@\"; do\n  case \"$a\" in\n" + rewrite.String() +
			"  esac\n  set -- \"$@\" \"$a\"\ndone\nshift $n\nexec " + cli + " \"$@\"\n",
	}
	for name, text := range shims {
		if err := os.WriteFile(filepath.Join(bin, name), []byte(text), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	script := strings.ReplaceAll(init.Command[2], "$$", "$") // compose's escape of a literal $
	run := func() string {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
		defer cancel()
		cmd := exec.CommandContext(ctx, "sh", init.Command[1], script)
		cmd.Env = append(os.Environ(), "PATH="+bin+string(os.PathListSeparator)+os.Getenv("PATH"))
		cmd.WaitDelay = time.Second // a killed script's redis-cli must not keep the output open
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("redis-cluster-init failed: %v\n%s", err, out)
		}
		return string(out)
	}
	run()

	ctx := context.Background()
	info, err := redis(ctx, addrs[0], "cluster", "info")
	if err != nil || !strings.Contains(info, "cluster_state:ok") || !strings.Contains(info, "cluster_slots_assigned:16384") || !strings.Contains(info, "cluster_size:3") {
		t.Fatalf("after redis-cluster-init (%v):\n%s", err, info)
	}
	// The replicas' roles reach the first node by gossip, a moment after the slots are served.
	var out string
	roles := func() (masters, replicas int) {
		out, err = redis(ctx, addrs[0], "cluster", "nodes")
		for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
			f := strings.Fields(line)
			if len(f) < 3 {
				continue
			}
			switch {
			case strings.Contains(f[2], "master"):
				masters++
			case strings.Contains(f[2], "slave"):
				replicas++
			}
		}
		return masters, replicas
	}
	for deadline := time.Now().Add(15 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		m, r := roles()
		if err == nil && m == 3 && r == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the cluster has %d masters and %d replicas, want 3 and 3 (%v):\n%s", m, r, err, out)
		}
	}
	// A later `up` runs the one-shot again: it must leave the formed cluster alone and succeed.
	if again := run(); !strings.Contains(again, "formed already") {
		t.Errorf("run again, redis-cluster-init did not see the cluster formed:\n%s", again)
	}
}
