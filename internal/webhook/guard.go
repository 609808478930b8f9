package webhook

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"syscall"
)

// ErrRefusedAddress is a destination inside the deployment's own networks.
var ErrRefusedAddress = errors.New("webhook: address refused")

// refused are the networks a delivery may not reach unless the operator allows them, besides
// loopback, private, link-local (the cloud metadata address 169.254.169.254 among them),
// multicast and unspecified addresses, which net/netip classifies.
var refused = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),       // "this network"
	netip.MustParsePrefix("100.64.0.0/10"),   // carrier-grade NAT, often a cloud's internal range
	netip.MustParsePrefix("192.0.0.0/24"),    // protocol assignments
	netip.MustParsePrefix("198.18.0.0/15"),   // benchmarking
	netip.MustParsePrefix("240.0.0.0/4"),     // reserved, and the broadcast address
	netip.MustParsePrefix("64:ff9b::/96"),    // NAT64: an IPv4 address behind an IPv6 one
	netip.MustParsePrefix("64:ff9b:1::/48"),  // local NAT64
	netip.MustParsePrefix("2001:db8::/32"),   // documentation
	netip.MustParsePrefix("2002::/16"),       // 6to4: an IPv4 address inside
	netip.MustParsePrefix("2001::/32"),       // Teredo: likewise
	netip.MustParsePrefix("fec0::/10"),       // site-local, deprecated but routed by some
	netip.MustParsePrefix("100::/64"),        // discard
	netip.MustParsePrefix("::ffff:0:0:0/96"), // IPv4-translated
}

// Guard decides which addresses deliveries may reach. The check that counts is the one at
// connection time (Control), on the address the name resolved to for this very connection: a
// name that resolved to a public address when the endpoint was registered may resolve to an
// internal one later (DNS rebinding).
type Guard struct {
	allow []netip.Prefix
}

// NewGuard returns a guard that refuses internal addresses except those in allow (the
// operator's choice, for example 127.0.0.0/8 for a receiver on the same machine).
func NewGuard(allow []netip.Prefix) *Guard { return &Guard{allow: allow} }

// Check returns nil for an address deliveries may reach, else an error wrapping
// ErrRefusedAddress.
func (g *Guard) Check(a netip.Addr) error {
	a = a.Unmap()
	for _, p := range g.allow {
		if p.Contains(a) {
			return nil
		}
	}
	internal := !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified()
	for _, p := range refused {
		internal = internal || p.Contains(a)
	}
	if internal {
		return fmt.Errorf("%w: %s is not a public address", ErrRefusedAddress, a)
	}
	return nil
}

// Control is for net.Dialer.Control: it refuses the connection before it is made when the
// resolved address is refused.
func (g *Guard) Control(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: %q is not an address", ErrRefusedAddress, address)
	}
	return g.Check(ap.Addr())
}

// CheckURL is the check at registration: an http or https URL without credentials whose host
// resolves only to addresses deliveries may reach.
func (g *Guard) CheckURL(ctx context.Context, r *net.Resolver, raw string) error {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.Hostname() == "" {
		return fmt.Errorf("webhook URL %q: want an absolute http or https URL", raw)
	}
	if u.User != nil {
		return fmt.Errorf("webhook URL: credentials in the URL are not accepted")
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		return g.Check(a)
	}
	addrs, err := r.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return fmt.Errorf("webhook URL: resolve %s: %w", host, err)
	}
	for _, a := range addrs {
		if err := g.Check(a); err != nil {
			return fmt.Errorf("webhook URL: %s resolves to a refused address: %w", host, err)
		}
	}
	return nil
}
