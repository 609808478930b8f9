// Package testenv gives tests the real Redis, PostgreSQL and NATS at their usual local addresses
// (overridable with ONSALE_TEST_REDIS_URL, ONSALE_TEST_DATABASE_URL and ONSALE_TEST_NATS_URL; the
// Redis Cluster of the RedisCluster tests with ONSALE_TEST_REDIS_CLUSTER_URL),
// each isolated per test: a fresh database, a unique key prefix, unique stream names. When a
// service is absent the test is skipped, unless ONSALE_TEST_REQUIRE_SERVICES=1, which turns the
// skip into a failure (CI sets it).
package testenv

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	mrand "math/rand/v2"
	"net"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/natsclient"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/redisclient"
)

// Defaults for the local services.
const (
	DefaultRedisURL    = "redis://127.0.0.1:6379/0"
	DefaultDatabaseURL = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	DefaultNATSURL     = "nats://127.0.0.1:4222"
	// DefaultNATSClusterURL is the 3-node JetStream cluster .ci/nats-cluster.sh starts.
	DefaultNATSClusterURL = "nats://127.0.0.1:4231,nats://127.0.0.1:4232,nats://127.0.0.1:4233"
	// DefaultPgBouncerURL is the PgBouncer .ci/pgbouncer.sh starts (transaction pooling) in
	// front of the local PostgreSQL; any database name passes through.
	DefaultPgBouncerURL = "postgres://postgres@127.0.0.1:6432/test?sslmode=disable"
	// DefaultRedisClusterURL is the cluster .ci/redis-cluster.sh starts: three masters (and
	// their replicas) on 7000-7005; the seeds are the masters as created.
	DefaultRedisClusterURL = "redis+cluster://127.0.0.1:7000,127.0.0.1:7001,127.0.0.1:7002"
)

// RequireServices tells whether a missing service fails the test instead of skipping it.
func RequireServices() bool { return os.Getenv("ONSALE_TEST_REQUIRE_SERVICES") == "1" }

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// RedisURL is the test Redis.
func RedisURL() string { return envOr("ONSALE_TEST_REDIS_URL", DefaultRedisURL) }

// RedisClusterURL is the test Redis Cluster (ONSALE_TEST_REDIS_CLUSTER_URL).
func RedisClusterURL() string { return envOr("ONSALE_TEST_REDIS_CLUSTER_URL", DefaultRedisClusterURL) }

// DatabaseURL is the test PostgreSQL's maintenance database.
func DatabaseURL() string { return envOr("ONSALE_TEST_DATABASE_URL", DefaultDatabaseURL) }

// NATSURL is the test NATS server.
func NATSURL() string { return envOr("ONSALE_TEST_NATS_URL", DefaultNATSURL) }

// NATSClusterURL is the test NATS JetStream cluster: a comma list of its servers.
func NATSClusterURL() string { return envOr("ONSALE_TEST_NATS_CLUSTER_URL", DefaultNATSClusterURL) }

// NATSReplicas is the stream replicas tests ask of the NATS at NATSURL (ONSALE_TEST_NATS_REPLICAS,
// 1 by default; 3 when NATSURL is a cluster).
func NATSReplicas() int {
	if n, err := strconv.Atoi(os.Getenv("ONSALE_TEST_NATS_REPLICAS")); err == nil && n > 0 {
		return n
	}
	return 1
}

// MigrateDatabaseURL is a direct connection to the server behind DatabaseURL, for what needs a
// session (migrations' advisory lock) when DatabaseURL is a transaction-pooling PgBouncer
// (ONSALE_TEST_MIGRATE_DATABASE_URL; DatabaseURL itself by default).
func MigrateDatabaseURL() string { return envOr("ONSALE_TEST_MIGRATE_DATABASE_URL", DatabaseURL()) }

// PgBouncerURL is the test PgBouncer in front of the test PostgreSQL.
func PgBouncerURL() string { return envOr("ONSALE_TEST_PGBOUNCER_URL", DefaultPgBouncerURL) }

func absent(t testing.TB, service string, err error) {
	t.Helper()
	if RequireServices() {
		t.Fatalf("%s is required (ONSALE_TEST_REQUIRE_SERVICES=1) but unreachable: %v", service, err)
	}
	t.Skipf("%s unreachable, skipping (set ONSALE_TEST_REQUIRE_SERVICES=1 to fail instead): %v", service, err)
}

// reachable dials rawURL's server, or every server of a comma list.
func reachable(rawURL, defPort string) error {
	if redisclient.IsCluster(rawURL) {
		// Any seed will do: the client learns the rest from it.
		opt, err := redisclient.ParseURL(rawURL)
		if err != nil {
			return err
		}
		var last error
		for _, addr := range opt.InitAddress {
			conn, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				return conn.Close()
			}
			last = err
		}
		return last
	}
	for _, item := range strings.Split(rawURL, ",") {
		if err := reachableOne(strings.TrimSpace(item), defPort); err != nil {
			return err
		}
	}
	return nil
}

func reachableOne(rawURL, defPort string) error {
	u, err := url.Parse(rawURL)
	if err != nil {
		return err
	}
	host := u.Host
	if u.Port() == "" {
		host = net.JoinHostPort(u.Hostname(), defPort)
	}
	conn, err := net.DialTimeout("tcp", host, time.Second)
	if err != nil {
		return err
	}
	return conn.Close()
}

// Unique returns base followed by a random suffix, for names that must not collide between tests.
func Unique(base string) string {
	b := make([]byte, 5)
	_, _ = rand.Read(b)
	return base + hex.EncodeToString(b)
}

// Redis returns a client to the test Redis and a key prefix unique to this test; keys under the
// prefix are deleted when the test ends.
func Redis(t testing.TB) (rueidis.Client, string) {
	t.Helper()
	return openRedis(t, "Redis", RedisURL())
}

// RedisCluster returns a client to the test Redis Cluster (rueidis in cluster mode) and a key
// prefix unique to this test; keys under the prefix are deleted from every master when the test
// ends.
func RedisCluster(t testing.TB) (rueidis.Client, string) {
	t.Helper()
	c, prefix := openRedis(t, "Redis Cluster", RedisClusterURL())
	if c.Mode() != rueidis.ClientModeCluster {
		t.Fatalf("%s is not a Redis Cluster (rueidis mode %v)", RedisClusterURL(), c.Mode())
	}
	return c, prefix
}

func openRedis(t testing.TB, service, url string) (rueidis.Client, string) {
	t.Helper()
	if err := reachable(url, "6379"); err != nil {
		absent(t, service, err)
	}
	c, err := redisclient.Open(url)
	if err != nil {
		absent(t, service, err)
	}
	prefix := Unique("t") + ":"
	t.Cleanup(func() {
		DeleteRedisKeys(c, "*"+prefix+"*")
		c.Close()
	})
	return c, prefix
}

// DeleteRedisKeys deletes every key matching pattern. On a Redis Cluster SCAN sees one node's
// keys only, so every node the client knows is scanned (a replica's keys are its master's: the
// DEL goes through c, which sends each key to its master).
func DeleteRedisKeys(c rueidis.Client, pattern string) {
	ctx := context.Background()
	for _, node := range c.Nodes() {
		var cursor uint64
		for {
			res, err := node.Do(ctx, node.B().Scan().Cursor(cursor).Match(pattern).Count(1000).Build()).AsScanEntry()
			if err != nil {
				break
			}
			for _, k := range res.Elements {
				c.Do(ctx, c.B().Del().Key(k).Build())
			}
			cursor = res.Cursor
			if cursor == 0 {
				break
			}
		}
	}
}

// PostgresURL creates a fresh database for this test, dropped when it ends, and returns its URL.
func PostgresURL(t testing.TB) string {
	t.Helper()
	return freshDatabase(t, DatabaseURL())
}

// DatabaseURLs creates a fresh database for this test, dropped when it ends, on the PostgreSQL
// behind MigrateDatabaseURL, and returns its URL through pooledBase's server (DatabaseURL, or a
// PgBouncer's) and directly. They are the same URL unless ONSALE_TEST_MIGRATE_DATABASE_URL or
// pooledBase names another server.
func DatabaseURLs(t testing.TB, pooledBase string) (pooled, direct string) {
	t.Helper()
	direct = freshDatabase(t, MigrateDatabaseURL())
	d, err := url.Parse(direct)
	if err != nil {
		t.Fatal(err)
	}
	p, err := url.Parse(pooledBase)
	if err != nil {
		t.Fatalf("database URL: %v", err)
	}
	p.Path = d.Path
	return p.String(), direct
}

// freshDatabase creates a database through base's server, dropped when the test ends, and
// returns base's URL with its name.
func freshDatabase(t testing.TB, base string) string {
	t.Helper()
	if err := reachable(base, "5432"); err != nil {
		absent(t, "PostgreSQL", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	admin, err := pgx.Connect(ctx, base)
	if err != nil {
		absent(t, "PostgreSQL", err)
	}
	defer admin.Close(ctx)
	name := Unique("onsale_test_")
	if _, err := admin.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		t.Fatalf("create test database: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		admin, err := pgx.Connect(ctx, base)
		if err != nil {
			return
		}
		defer admin.Close(ctx)
		_, _ = admin.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)")
	})
	u, _ := url.Parse(base)
	u.Path = "/" + name
	return u.String()
}

// Postgres returns a pool on a fresh database for this test.
func Postgres(t testing.TB) *pgxpool.Pool {
	t.Helper()
	pool, err := pgpool.Open(context.Background(), PostgresURL(t), 8)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(pool.Close)
	return pool
}

// PgBouncerExecMode is the query exec mode pools through the test PgBouncer use: Debian's
// PgBouncer 1.18 keeps no prepared statement across transactions (that came with 1.21).
const PgBouncerExecMode = "cache_describe"

// PgBouncer makes a fresh database for this test, dropped when it ends, and returns a pool on it
// through the test PgBouncer (transaction pooling, PgBouncerExecMode) and one direct to
// PostgreSQL, for what needs a session (migrations).
func PgBouncer(t testing.TB) (bounced, direct *pgxpool.Pool) {
	t.Helper()
	if err := reachable(PgBouncerURL(), "6432"); err != nil {
		absent(t, "PgBouncer (.ci/pgbouncer.sh)", err)
	}
	directURL := freshDatabase(t, MigrateDatabaseURL())
	d, err := url.Parse(directURL)
	if err != nil {
		t.Fatal(err)
	}
	b, err := url.Parse(PgBouncerURL())
	if err != nil {
		t.Fatalf("ONSALE_TEST_PGBOUNCER_URL: %v", err)
	}
	b.Path = d.Path // the fresh database, through PgBouncer
	ctx := context.Background()
	direct, err = pgpool.Open(ctx, directURL, 4)
	if err != nil {
		t.Fatalf("open test database: %v", err)
	}
	t.Cleanup(direct.Close)
	bounced, err = pgpool.OpenWith(ctx, b.String(), pgpool.Options{MaxConns: 8, MinIdleConns: 2, QueryExecMode: PgBouncerExecMode})
	if err != nil {
		absent(t, "PgBouncer (.ci/pgbouncer.sh)", err)
	}
	t.Cleanup(bounced.Close)
	return bounced, direct
}

// NATS connects to the test NATS server. Use Unique for stream and subject names; streams whose
// names start with streamPrefix are deleted when the test ends.
func NATS(t testing.TB, streamPrefix string) *natsclient.Conn {
	t.Helper()
	return connectNATS(t, "NATS", NATSURL(), streamPrefix)
}

// NATSCluster connects to the test NATS JetStream cluster (all its servers), like NATS.
func NATSCluster(t testing.TB, streamPrefix string) *natsclient.Conn {
	t.Helper()
	return connectNATS(t, "the NATS cluster (.ci/nats-cluster.sh)", NATSClusterURL(), streamPrefix)
}

func connectNATS(t testing.TB, what, rawURL, streamPrefix string) *natsclient.Conn {
	t.Helper()
	if err := reachable(rawURL, "4222"); err != nil {
		absent(t, what, err)
	}
	c, err := natsclient.Connect(rawURL, "onsale-test", logging.Discard())
	if err != nil {
		absent(t, what, err)
	}
	t.Cleanup(func() {
		if streamPrefix != "" {
			DeleteStreams(c.JS, streamPrefix)
		}
		_ = c.Close(context.Background())
	})
	return c
}

// EmbeddedNATS starts a NATS server with JetStream inside the test process.
func EmbeddedNATS(t testing.TB) *natsclient.Conn {
	t.Helper()
	c, err := natsclient.StartEmbedded(t.TempDir(), "onsale-test", logging.Discard())
	if err != nil {
		t.Fatalf("embedded nats: %v", err)
	}
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// DeleteStreams removes every stream whose name starts with prefix.
func DeleteStreams(js jetstream.JetStream, prefix string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	names := js.StreamNames(ctx)
	var victims []string
	for n := range names.Name() {
		if strings.HasPrefix(n, prefix) {
			victims = append(victims, n)
		}
	}
	for _, n := range victims {
		_ = js.DeleteStream(ctx, n)
	}
}

// Eventually polls cond every 10 ms until it holds or timeout passes, then fails the test with
// msg. Tests wait with this instead of sleeping.
func Eventually(t testing.TB, timeout time.Duration, cond func() bool, msg string, args ...any) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("not true after %s: %s", timeout, fmt.Sprintf(msg, args...))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, below the kernel's
// ephemeral range, and that no earlier call in this process returned. A port the kernel picks for
// a listen on port 0 comes from the range it also gives outgoing connections, so in the moment
// between this check and a server's own listen one of the thousands of connections the tests open
// could take it (a replica then failed to start with "address already in use"). Outgoing
// connections never get a port below the range. A cluster chooses a dozen ports before any of its
// processes listens, so two picks in one process must differ too: a random pick alone gave two
// processes of one cluster the same port about once in 200 clusters.
func FreePort(t testing.TB) int {
	t.Helper()
	const low, high = 20000, 32768 // Linux's ephemeral range starts at 32768 by default
	handedOut.Lock()
	defer handedOut.Unlock()
	for range 200 {
		p := low + mrand.IntN(high-low)
		if handedOut.ports[p] {
			continue
		}
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", p))
		if err != nil {
			continue // in use
		}
		l.Close()
		handedOut.ports[p] = true
		return p
	}
	t.Fatalf("no free port between %d and %d", low, high)
	return 0
}

// handedOut holds the ports FreePort has returned in this test process. It is the one piece of
// process-wide state here: ports are a process-wide (indeed machine-wide) resource, and every test
// of the process must draw from the same record for two of them never to get the same port.
var handedOut = struct {
	sync.Mutex
	ports map[int]bool
}{ports: map[int]bool{}}
