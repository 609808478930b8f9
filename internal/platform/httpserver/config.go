package httpserver

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Config holds the HTTP server's limits. Every one of them has a default that is safe on the
// public internet.
type Config struct {
	Addr              string        `env:"ONSALE_HTTP_ADDR" yaml:"http_addr" default:":8080" help:"address the API listens on"`
	ReadHeaderTimeout time.Duration `env:"ONSALE_HTTP_READ_HEADER_TIMEOUT" yaml:"http_read_header_timeout" default:"5s" help:"time allowed to send the request headers"`
	ReadTimeout       time.Duration `env:"ONSALE_HTTP_READ_TIMEOUT" yaml:"http_read_timeout" default:"15s" help:"time allowed to send the whole request"`
	WriteTimeout      time.Duration `env:"ONSALE_HTTP_WRITE_TIMEOUT" yaml:"http_write_timeout" default:"15s" help:"time allowed to write a response (event streams are exempt)"`
	IdleTimeout       time.Duration `env:"ONSALE_HTTP_IDLE_TIMEOUT" yaml:"http_idle_timeout" default:"120s" help:"how long an idle keep-alive connection stays open"`
	RequestTimeout    time.Duration `env:"ONSALE_HTTP_REQUEST_TIMEOUT" yaml:"http_request_timeout" default:"10s" help:"deadline for handling one request (event streams are exempt)"`
	BodyLimit         int64         `env:"ONSALE_HTTP_BODY_LIMIT" yaml:"http_body_limit" default:"65536" help:"largest request body in bytes"`
	MaxInFlight       int           `env:"ONSALE_HTTP_MAX_IN_FLIGHT" yaml:"http_max_in_flight" default:"4096" help:"requests handled at once before new ones are shed with 503 (event streams not counted); 0 disables"`
	TrustedProxies    []string      `env:"ONSALE_TRUSTED_PROXIES" yaml:"trusted_proxies" help:"CIDR ranges of proxies whose X-Forwarded-For is believed; empty trusts no header"`
	RateLimitIP       float64       `env:"ONSALE_RATE_LIMIT_IP" yaml:"rate_limit_ip" default:"0" help:"requests per second allowed per client IP on /v1 routes (burst twice that); 0 disables"`
	CORSOrigins       []string      `env:"ONSALE_CORS_ORIGINS" yaml:"cors_origins" help:"origins (scheme://host[:port]) whose pages may call the API from a browser; empty allows none (the server's own pages need none)"`
	AccessLog         bool          `env:"ONSALE_ACCESS_LOG" yaml:"access_log" default:"true" help:"log one line per request"`
}

// Validate checks the limits.
func (c Config) Validate() error {
	var errs []error
	if _, _, err := net.SplitHostPort(c.Addr); err != nil {
		errs = append(errs, config.Invalid("ONSALE_HTTP_ADDR", c.Addr, "want host:port such as :8080 or 127.0.0.1:8080"))
	}
	for name, d := range map[string]time.Duration{
		"ONSALE_HTTP_READ_HEADER_TIMEOUT": c.ReadHeaderTimeout,
		"ONSALE_HTTP_READ_TIMEOUT":        c.ReadTimeout,
		"ONSALE_HTTP_WRITE_TIMEOUT":       c.WriteTimeout,
		"ONSALE_HTTP_IDLE_TIMEOUT":        c.IdleTimeout,
		"ONSALE_HTTP_REQUEST_TIMEOUT":     c.RequestTimeout,
	} {
		if d <= 0 {
			errs = append(errs, config.Invalid(name, d.String(), "want a positive duration"))
		}
	}
	if c.BodyLimit < 1024 || c.BodyLimit > 64<<20 {
		errs = append(errs, config.Invalid("ONSALE_HTTP_BODY_LIMIT", fmt.Sprint(c.BodyLimit), "want bytes from 1024 to 67108864"))
	}
	if c.MaxInFlight < 0 {
		errs = append(errs, config.Invalid("ONSALE_HTTP_MAX_IN_FLIGHT", fmt.Sprint(c.MaxInFlight), "want 0 (off) or a positive number"))
	}
	if c.RateLimitIP < 0 {
		errs = append(errs, config.Invalid("ONSALE_RATE_LIMIT_IP", fmt.Sprint(c.RateLimitIP), "want 0 (off) or a positive number"))
	}
	for _, p := range c.TrustedProxies {
		if _, err := netip.ParsePrefix(p); err != nil {
			errs = append(errs, config.Invalid("ONSALE_TRUSTED_PROXIES", p, "want CIDR ranges such as 10.0.0.0/8,192.168.1.0/24"))
		}
	}
	for _, o := range c.CORSOrigins {
		if !validOrigin(o) {
			errs = append(errs, config.Invalid("ONSALE_CORS_ORIGINS", o, "want origins such as https://shop.example.com,http://localhost:3000"))
		}
	}
	return errors.Join(errs...)
}
