package webhook

import (
	"fmt"
	"net/netip"
	"strings"

	"github.com/onsale-dev/onsale/internal/platform/config"
)

// Config holds the webhook module's settings.
type Config struct {
	AllowNetworks string `env:"ONSALE_WEBHOOK_ALLOW_NETWORKS" yaml:"webhook_allow_networks" help:"comma list of CIDR networks webhooks may reach although they are private, loopback or link-local, e.g. 127.0.0.0/8 for a receiver on this machine or 10.20.0.0/16 for an internal one; empty: public addresses only (never the cloud metadata address unless listed)"`
}

// Networks returns the allowed networks.
func (c Config) Networks() ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, item := range strings.Split(c.AllowNetworks, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		p, err := netip.ParsePrefix(item)
		if err != nil {
			return nil, fmt.Errorf("%q is not a CIDR network", item)
		}
		out = append(out, p.Masked())
	}
	return out, nil
}

// Validate checks the settings.
func (c Config) Validate() error {
	if _, err := c.Networks(); err != nil {
		return config.Invalid("ONSALE_WEBHOOK_ALLOW_NETWORKS", c.AllowNetworks,
			"want a comma list of CIDR networks such as 127.0.0.0/8,10.20.0.0/16 ("+err.Error()+")")
	}
	return nil
}
