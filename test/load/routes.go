package main

import (
	"fmt"
	"net/url"
	"slices"
	"strings"
	"sync/atomic"
)

// routeModules are the modules whose paths --route can send elsewhere, in the order the help
// names them.
var routeModules = []string{"auth", "inventory", "payment"}

// Route is one --route MODULE=URL: the requests of the module's public paths go to URL, a process
// that runs the module (server --modules=...). The tool then drives a split deployment without a
// load balancer that routes by path, and no proxy's cost is added to the hop being measured.
type Route struct {
	Module string
	URL    string
}

// parseRoute reads MODULE=URL. The URL is a server's base: http or https, a host, no path, query
// or fragment (the request's path is appended to it).
func parseRoute(spec string) (Route, error) {
	module, raw, ok := strings.Cut(spec, "=")
	module = strings.TrimSpace(module)
	if !ok || module == "" || strings.TrimSpace(raw) == "" {
		return Route{}, fmt.Errorf("--route %q: want MODULE=URL, e.g. payment=http://127.0.0.1:8081", spec)
	}
	if !slices.Contains(routeModules, module) {
		return Route{}, fmt.Errorf("--route %q: unknown module %q (one of %s)", spec, module, strings.Join(routeModules, ", "))
	}
	raw = strings.TrimRight(strings.TrimSpace(raw), "/")
	u, err := url.Parse(raw)
	if err != nil {
		return Route{}, fmt.Errorf("--route %q: %w", spec, err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return Route{}, fmt.Errorf("--route %q: the URL must be http:// or https:// and name a host", spec)
	}
	if u.Path != "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return Route{}, fmt.Errorf("--route %q: the URL is a server's base, without path, query or credentials", spec)
	}
	return Route{Module: module, URL: raw}, nil
}

// parseRoutes reads every --route in the order given; the same module may be routed to several
// processes (its requests then go to them in turn), but not twice to the same one.
func parseRoutes(specs []string) ([]Route, error) {
	var out []Route
	for _, spec := range specs {
		r, err := parseRoute(spec)
		if err != nil {
			return nil, err
		}
		if slices.Contains(out, r) {
			return nil, fmt.Errorf("--route %q is given twice", spec)
		}
		out = append(out, r)
	}
	return out, nil
}

// routeURLs returns the routes' URLs in order.
func routeURLs(routes []Route) []string {
	out := make([]string, len(routes))
	for i, r := range routes {
		out[i] = r.URL
	}
	return out
}

// routeSpecs returns the routes as --route takes them, for the report.
func routeSpecs(routes []Route) []string {
	var out []string
	for _, r := range routes {
		out = append(out, r.Module+"="+r.URL)
	}
	return out
}

// pathModule names the module that serves a public path, "" for the routes every process serves
// (/livez, /metrics, ...). It is the split of deploy/nginx/split.conf, kept in step with it.
func pathModule(path string) string {
	path, _, _ = strings.Cut(path, "?")
	under := func(prefix string) bool {
		rest, ok := strings.CutPrefix(path, prefix)
		return ok && (rest == "" || rest[0] == '/')
	}
	switch {
	case under("/v1/auth"), path == "/v1/me", path == "/.well-known/jwks.json":
		return "auth"
	case under("/v1/events"), under("/v1/holds"):
		return "inventory"
	case under("/v1/orders"), under("/v1/checkins"), path == "/.well-known/ticket-keys.json":
		return "payment"
	}
	return ""
}

// moduleTargets is where each routed module's requests go: its processes in turn.
type moduleTargets map[string]*moduleTarget

type moduleTarget struct {
	urls []string
	next atomic.Uint64
}

func newModuleTargets(routes []Route) moduleTargets {
	m := moduleTargets{}
	for _, r := range routes {
		if m[r.Module] == nil {
			m[r.Module] = &moduleTarget{}
		}
		m[r.Module].urls = append(m[r.Module].urls, r.URL)
	}
	return m
}

// pick returns the process for path when its module is routed ("" when it is not).
func (m moduleTargets) pick(path string) string {
	t := m[pathModule(path)]
	if t == nil {
		return ""
	}
	return t.urls[(t.next.Add(1)-1)%uint64(len(t.urls))]
}
