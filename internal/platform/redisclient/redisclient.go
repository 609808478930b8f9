// Package redisclient opens the process's Redis client (rueidis), with server-assisted
// client-side caching on so that hot reads are answered from process memory and kept coherent by
// Redis's invalidation messages.
//
// Two URL forms are accepted:
//
//	redis://[user:password@]host:port[/db]                 one Redis (rediss:// for TLS)
//	redis+cluster://[user:password@]host:port,host:port,…  a Redis Cluster (rediss+cluster:// for TLS)
//
// The addresses of the cluster form are seeds: rueidis asks them for the cluster's slot map and
// then talks to every master it learns of, following failovers and resharding by itself. One
// reachable seed is enough to start; list a few so that a restart does not depend on one node.
package redisclient

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Schemes of a Redis Cluster URL: the seed list form.
const (
	ClusterScheme    = "redis+cluster"
	ClusterTLSScheme = "rediss+cluster"
)

// IsCluster tells whether url names a Redis Cluster (the redis+cluster:// form).
func IsCluster(url string) bool {
	scheme, _, _ := strings.Cut(url, "://")
	return scheme == ClusterScheme || scheme == ClusterTLSScheme
}

// ParseURL turns url into rueidis options: a single Redis's URL as rueidis reads it, or a
// cluster's seed list with every seed in InitAddress.
func ParseURL(url string) (rueidis.ClientOption, error) {
	if !IsCluster(url) {
		return rueidis.ParseURL(url)
	}
	scheme, rest, _ := strings.Cut(url, "://")
	// The authority ends at the first / or ?; user-info ends at its last @ (a password's @ must be
	// percent-encoded anyway, as in any URL).
	end := strings.IndexAny(rest, "/?")
	if end < 0 {
		end = len(rest)
	}
	authority, tail := rest[:end], rest[end:]
	if tail == "/" || strings.HasPrefix(tail, "/?") {
		tail = tail[1:] // an empty path: database 0
	}
	userinfo := ""
	if i := strings.LastIndexByte(authority, '@'); i >= 0 {
		userinfo, authority = authority[:i+1], authority[i+1:]
	}
	var seeds []string
	for _, h := range strings.Split(authority, ",") {
		h = strings.TrimSpace(h)
		if h == "" {
			return rueidis.ClientOption{}, errors.New("redis cluster url: an empty seed address")
		}
		host, port, err := net.SplitHostPort(h)
		if err != nil {
			// No port: Redis's own.
			host, port = strings.Trim(h, "[]"), "6379"
		}
		if host == "" {
			return rueidis.ClientOption{}, fmt.Errorf("redis cluster url: seed %q has no host", h)
		}
		seeds = append(seeds, net.JoinHostPort(host, port))
	}
	// The first seed, as a plain URL, carries the rest (credentials, TLS, options) through
	// rueidis's own parser.
	plain := strings.TrimSuffix(scheme, "+cluster") + "://" + userinfo + seeds[0] + tail
	opt, err := rueidis.ParseURL(plain)
	if err != nil {
		return rueidis.ClientOption{}, err
	}
	if opt.SelectDB != 0 {
		return rueidis.ClientOption{}, errors.New("redis cluster url: a cluster has database 0 only")
	}
	opt.InitAddress = append(seeds, opt.InitAddress[1:]...)
	return opt, nil
}

// Open connects to the Redis or Redis Cluster at url (see the package comment). url's credentials
// never reach the errors it returns.
func Open(url string) (rueidis.Client, error) {
	opt, err := ParseURL(url)
	if err != nil {
		// url.Parse's errors quote the whole URL.
		return nil, fmt.Errorf("parse redis url %s: %w", config.RedactURL(url), config.RedactError(err, url))
	}
	opt.Dialer = net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	opt.ConnWriteTimeout = 2 * time.Second
	// The client-side cache is per connection; a few MiB each is plenty for session flags and
	// catalogue entries.
	opt.CacheSizeEachConn = 16 << 20
	if IsCluster(url) {
		opt.RetryDelay = clusterRetryDelay
	}
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect redis %s: %w", config.RedactURL(url), config.RedactError(err, url))
	}
	if IsCluster(url) {
		// rueidis falls back to a single-node client when the seed is not in cluster mode; a
		// deployment that says cluster and gets one node would put every hold on it unnoticed.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := c.Do(ctx, c.B().ClusterInfo().Build()).Error(); err != nil {
			c.Close()
			return nil, fmt.Errorf("redis %s is not a Redis Cluster (CLUSTER INFO: %w)", config.RedactURL(url), config.RedactError(err, url))
		}
	}
	return c, nil
}

// clusterRetryDelay bounds rueidis's retries of read-only commands on a cluster. By default it
// retries them until the context ends; while a dead master's replica is being promoted (node
// timeout plus an election: seconds) that holds every read of the master's slots — a session
// check, a catalogue read — for the whole failover, and a customer sees a hang. A few quick
// retries ride out a dropped connection or a slot moving; after them the error reaches the
// handler, which answers 503 with Retry-After at once.
func clusterRetryDelay(attempts int, _ rueidis.Completed, _ error) time.Duration {
	if attempts > 3 {
		return -1
	}
	return time.Duration(attempts) * 50 * time.Millisecond
}

// Check is a readiness check: a PING round trip.
func Check(c rueidis.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	}
}
