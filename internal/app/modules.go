package app

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
)

// The modules a process may run.
const (
	Auth      = "auth"
	Inventory = "inventory"
	Payment   = "payment"
)

// ModuleNames lists the modules in dependency order.
func ModuleNames() []string { return []string{Auth, Inventory, Payment} }

// Registration is a module as a process assembles it: its name, the modules it depends on (here
// or in another process), its configuration section, and how to assemble it here (Local) or reach
// it in another process (Remote). Both set the ports the module offers the others; Local also
// returns the module's background runners, which the process starts after every module is
// assembled and stops before any is torn down.
type Registration struct {
	Name      string
	DependsOn []string
	// Section is the module's part of the configuration.
	Section func(*Config) any
	Local   func(p *Process, ctx context.Context) ([]Runner, error)
	Remote  func(p *Process, ctx context.Context, url string) error
	// Close releases what Local assembled (after its runners have stopped); may be nil.
	Close func(p *Process, ctx context.Context) error
}

// Registrations lists the modules, each declared once. cmd/server and the test stacks build
// their processes from these and nothing else.
func Registrations() []Registration {
	return []Registration{
		{Name: Auth, Section: func(c *Config) any { return &c.Auth },
			Local: (*Process).localAuth, Remote: (*Process).remoteAuth, Close: (*Process).closeAuth},
		{Name: Inventory, DependsOn: []string{Auth}, Section: func(c *Config) any { return &c.Inventory },
			Local: (*Process).localInventory, Remote: (*Process).remoteInventory},
		{Name: Payment, DependsOn: []string{Auth, Inventory}, Section: func(c *Config) any { return &c.Payment },
			Local: (*Process).localPayment, Remote: (*Process).remotePayment},
	}
}

// Runner is a module's background work: started once every module is assembled, stopped (in
// reverse order) before the modules are torn down.
type Runner struct {
	Name  string // "payment.worker"
	Start func(ctx context.Context) error
	Stop  func(ctx context.Context) error
}

// ParseModules reads a module selection: "all", or a comma list of module names.
func ParseModules(s string) (map[string]bool, error) {
	out := map[string]bool{}
	s = strings.TrimSpace(s)
	if s == "" || s == "all" {
		for _, m := range ModuleNames() {
			out[m] = true
		}
		return out, nil
	}
	for _, part := range strings.Split(s, ",") {
		m := strings.TrimSpace(part)
		if !slices.Contains(ModuleNames(), m) {
			return nil, fmt.Errorf("ONSALE_MODULES (--modules) = %q: unknown module %q; want all, or a comma list of %s",
				s, m, strings.Join(ModuleNames(), ", "))
		}
		out[m] = true
	}
	return out, nil
}

// Placement says where each module is for this configuration: "local", "remote <url>", or "absent".
func Placement(cfg *Config) map[string]string {
	local, _ := ParseModules(cfg.Modules)
	out := map[string]string{}
	for _, m := range ModuleNames() {
		switch {
		case local[m]:
			out[m] = "local"
		case cfg.Internal.URL(m) != "":
			out[m] = "remote " + cfg.Internal.URL(m)
		default:
			out[m] = "absent"
		}
	}
	return out
}

// ListModules writes each module, what it depends on and where it runs with cfg.
func ListModules(w io.Writer, cfg *Config) error {
	where := Placement(cfg)
	for _, r := range Registrations() {
		deps := "nothing"
		if len(r.DependsOn) > 0 {
			deps = strings.Join(r.DependsOn, ", ")
		}
		if _, err := fmt.Fprintf(w, "%-10s depends on %-16s %s\n", r.Name, deps, where[r.Name]); err != nil {
			return err
		}
	}
	return nil
}
