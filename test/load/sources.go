package main

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strings"
)

// The default source range on loopback. Linux routes all of 127.0.0.0/8 to the loopback
// interface, so these need no setup there; 127.0.0.1 is left to everything else.
const (
	loopbackFirst = "127.0.0.2"
	loopbackLast  = "127.0.0.254"
	maxSources    = 4096
)

// parseSources reads --source-ips: "auto", "off", or a comma-separated list of addresses and
// ranges of IPv4 addresses ("127.0.0.2-127.0.0.254"). auto is true for "auto"; the list is empty
// for "off".
func parseSources(spec string) (ips []net.IP, auto bool, err error) {
	switch strings.TrimSpace(spec) {
	case "auto", "":
		return nil, true, nil
	case "off", "none":
		return nil, false, nil
	}
	for _, item := range strings.Split(spec, ",") {
		item = strings.TrimSpace(item)
		lo, hi, isRange := strings.Cut(item, "-")
		first, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, false, fmt.Errorf("--source-ips: %q is not an address or a range of addresses", item)
		}
		last := first
		if isRange {
			if last, err = netip.ParseAddr(strings.TrimSpace(hi)); err != nil || !first.Is4() || !last.Is4() || last.Less(first) {
				return nil, false, fmt.Errorf("--source-ips: %q is not a range of IPv4 addresses, low-high", item)
			}
		}
		for a := first; ; a = a.Next() {
			if len(ips) == maxSources {
				return nil, false, fmt.Errorf("--source-ips: more than %d addresses", maxSources)
			}
			ips = append(ips, net.IP(a.AsSlice()))
			if a == last {
				break
			}
		}
	}
	return ips, false, nil
}

// onLoopback tells whether every target is an IPv4 loopback address (or localhost).
func onLoopback(targets []string) bool {
	for _, t := range targets {
		u, err := url.Parse(t)
		if err != nil {
			return false
		}
		host := u.Hostname()
		if host == "localhost" {
			continue
		}
		a, err := netip.ParseAddr(host)
		if err != nil || !a.Unmap().Is4() || !a.IsLoopback() {
			return false
		}
	}
	return len(targets) > 0
}

// chooseSources returns the source addresses of the run and a sentence for the report saying
// where they come from. With auto and every target on loopback it spreads over 127.0.0.2 to
// 127.0.0.254 if this machine lets it bind them (Linux does; macOS has only 127.0.0.1 unless
// told otherwise).
func chooseSources(o *Options) ([]net.IP, string, error) {
	if !o.SourceAuto {
		if len(o.SourceIPs) == 0 {
			return nil, "requests left from one source address, the system's choice (--source-ips off)", nil
		}
		if err := canBind(o.SourceIPs); err != nil {
			return nil, "", err
		}
		return o.SourceIPs, fmt.Sprintf("requests left from %d source addresses (%s, --source-ips); each customer's from one of them, as from its own device",
			len(o.SourceIPs), span(o.SourceIPs)), nil
	}
	if !onLoopback(append(slices.Clone(o.Targets), routeURLs(o.Routes)...)) {
		return nil, "requests left from one source address, the system's choice: the targets are not on loopback (--source-ips lists this machine's addresses to spread the load over)", nil
	}
	ips, _, err := parseSources(loopbackFirst + "-" + loopbackLast)
	if err != nil {
		return nil, "", err
	}
	if err := canBind(ips); err != nil {
		return nil, fmt.Sprintf("requests left from one source address: %v (--source-ips off to silence this)", err), nil
	}
	return ips, fmt.Sprintf("requests left from %d loopback source addresses (%s, --source-ips auto: the targets are on loopback); each customer's from one of them, as from its own device",
		len(ips), span(ips)), nil
}

// canBind checks that this machine can send from each address.
func canBind(ips []net.IP) error {
	var errs []error
	for _, ip := range ips {
		ln, err := net.Listen("tcp", net.JoinHostPort(ip.String(), "0"))
		if err != nil {
			errs = append(errs, fmt.Errorf("cannot send from %s: %w", ip, err))
			if len(errs) == 3 {
				break
			}
			continue
		}
		ln.Close()
	}
	return errors.Join(errs...)
}

// span names a list of addresses, by its ends when it is long.
func span(ips []net.IP) string {
	if len(ips) > 3 {
		return ips[0].String() + " to " + ips[len(ips)-1].String()
	}
	names := make([]string, len(ips))
	for i, ip := range ips {
		names[i] = ip.String()
	}
	return strings.Join(names, ", ")
}
