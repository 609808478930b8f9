// Package redisclient opens the process's Redis client (rueidis), with server-assisted
// client-side caching on so that hot reads are answered from process memory and kept coherent by
// Redis's invalidation messages.
package redisclient

import (
	"context"
	"fmt"
	"net"
	"time"

	"github.com/redis/rueidis"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Open connects to the Redis at url (redis://[user:password@]host:port[/db]). url's credentials
// never reach the errors it returns.
func Open(url string) (rueidis.Client, error) {
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		// url.Parse's errors quote the whole URL.
		return nil, fmt.Errorf("parse redis url %s: %w", config.RedactURL(url), config.RedactError(err, url))
	}
	opt.Dialer = net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}
	opt.ConnWriteTimeout = 2 * time.Second
	// The client-side cache is per connection; a few MiB each is plenty for session flags and
	// catalogue entries.
	opt.CacheSizeEachConn = 16 << 20
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect redis %s: %w", config.RedactURL(url), config.RedactError(err, url))
	}
	return c, nil
}

// Check is a readiness check: a PING round trip.
func Check(c rueidis.Client) func(context.Context) error {
	return func(ctx context.Context) error {
		return c.Do(ctx, c.B().Ping().Build()).Error()
	}
}
