package redisclient_test

import (
	"context"
	"slices"
	"strings"
	"testing"

	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/platform/redisclient"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// TestParseURLRedisCluster: the redis+cluster:// form gives every seed to rueidis, with the
// credentials and TLS of the URL; the plain form is read by rueidis as before.
func TestParseURLRedisCluster(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		url   string
		seeds []string
		user  string
		pass  string
		tls   bool
	}{
		{"redis://127.0.0.1:6379/0", []string{"127.0.0.1:6379"}, "", "", false},
		{"redis://u:pw@cache:6380/2", []string{"cache:6380"}, "u", "pw", false},
		{"redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002", []string{"127.0.0.1:7000", "127.0.0.1:7001", "127.0.0.1:7002"}, "", "", false},
		{"redis+cluster://:s3cret@a:7000,b", []string{"a:7000", "b:6379"}, "", "s3cret", false},
		{"rediss+cluster://u:p%40ss@a:7000,[::1]:7001/", []string{"a:7000", "[::1]:7001"}, "u", "p@ss", true},
		{"redis+cluster://a:7000,b:7001?addr=c:7002", []string{"a:7000", "b:7001", "c:7002"}, "", "", false},
	} {
		opt, err := redisclient.ParseURL(tc.url)
		if err != nil {
			t.Errorf("%s: %v", tc.url, err)
			continue
		}
		if !slices.Equal(opt.InitAddress, tc.seeds) || opt.Username != tc.user || opt.Password != tc.pass || (opt.TLSConfig != nil) != tc.tls {
			t.Errorf("%s: seeds %v user %q password %q tls %v; want %v %q %q %v", tc.url, opt.InitAddress, opt.Username, opt.Password,
				opt.TLSConfig != nil, tc.seeds, tc.user, tc.pass, tc.tls)
		}
	}
	for _, bad := range []string{"redis+cluster://a:7000,,b:7001", "redis+cluster://a:7000,b:7001/3", "redis+cluster://:7000"} {
		if opt, err := redisclient.ParseURL(bad); err == nil {
			t.Errorf("%s accepted: %v", bad, opt.InitAddress)
		}
	}
}

// TestOpenRedisCluster: a redis+cluster URL gives a cluster-mode client that reaches every master
// (keys of many hash tags are written and read back), and names one Redis not in cluster mode as
// an error instead of running on it alone, without showing the URL's password.
func TestOpenRedisCluster(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	c, prefix := testenv.RedisCluster(t)
	if c.Mode() != rueidis.ClientModeCluster {
		t.Fatalf("mode %v, want cluster", c.Mode())
	}
	for i := range 50 {
		k := prefix + "{" + string(rune('a'+i%26)) + string(rune('a'+i/26)) + "}"
		if err := c.Do(ctx, c.B().Set().Key(k).Value("v").Build()).Error(); err != nil {
			t.Fatalf("SET %s: %v", k, err)
		}
		if v, err := c.Do(ctx, c.B().Get().Key(k).Build()).ToString(); err != nil || v != "v" {
			t.Fatalf("GET %s: %q, %v", k, v, err)
		}
	}

	single, _ := testenv.Redis(t)
	addr := ""
	for a := range single.Nodes() {
		addr = a
	}
	_, err := redisclient.Open("redis+cluster://:N0tAClust3r@" + addr)
	if err == nil {
		t.Fatalf("a redis+cluster URL naming one Redis (%s) was accepted", addr)
	}
	if strings.Contains(err.Error(), "N0tAClust3r") || !strings.Contains(err.Error(), "not a Redis Cluster") {
		t.Errorf("error: %v", err)
	}
}
