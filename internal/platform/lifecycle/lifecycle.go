// Package lifecycle starts the parts of the process in dependency order and stops them in
// reverse. A part that fails to start stops everything already started, so no half-started
// process lingers.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
)

// Module is one part of the process. Start must return once the part is running (long-running
// work goes in its own goroutine); Stop must return once it has stopped, within ctx.
type Module struct {
	Name      string
	DependsOn []string
	Start     func(ctx context.Context) error
	Stop      func(ctx context.Context) error
}

// Registry holds modules and the order they were started in.
type Registry struct {
	log     *slog.Logger
	mu      sync.Mutex
	modules map[string]Module
	names   []string // registration order, for a stable start order among equals
	started []string
}

// New returns an empty registry.
func New(log *slog.Logger) *Registry {
	return &Registry{log: log, modules: map[string]Module{}}
}

// Add registers a module. Names must be unique.
func (r *Registry) Add(m Module) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if m.Name == "" {
		return errors.New("lifecycle: module without a name")
	}
	if _, dup := r.modules[m.Name]; dup {
		return fmt.Errorf("lifecycle: module %q added twice", m.Name)
	}
	r.modules[m.Name] = m
	r.names = append(r.names, m.Name)
	return nil
}

// Order returns the start order: every module after all of its (transitive) dependencies. It
// fails on an unknown dependency or a cycle.
func (r *Registry) Order() ([]string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.order()
}

func (r *Registry) order() ([]string, error) {
	const (
		unvisited = iota
		visiting
		done
	)
	state := map[string]int{}
	var out []string
	var visit func(name string, path []string) error
	visit = func(name string, path []string) error {
		m, ok := r.modules[name]
		if !ok {
			return fmt.Errorf("lifecycle: %q depends on unknown module %q", path[len(path)-1], name)
		}
		switch state[name] {
		case done:
			return nil
		case visiting:
			return fmt.Errorf("lifecycle: dependency cycle %v", append(path, name))
		}
		state[name] = visiting
		for _, d := range m.DependsOn {
			if err := visit(d, append(path, name)); err != nil {
				return err
			}
		}
		state[name] = done
		out = append(out, name)
		return nil
	}
	for _, n := range r.names {
		if err := visit(n, []string{n}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Start starts every module in dependency order. If one fails, those already started are
// stopped in reverse order and the start error is returned.
func (r *Registry) Start(ctx context.Context) error {
	r.mu.Lock()
	order, err := r.order()
	r.mu.Unlock()
	if err != nil {
		return err
	}
	for _, name := range order {
		m := r.modules[name]
		if m.Start != nil {
			if err := m.Start(ctx); err != nil {
				startErr := fmt.Errorf("start %s: %w", name, err)
				if stopErr := r.Stop(context.WithoutCancel(ctx)); stopErr != nil {
					return errors.Join(startErr, stopErr)
				}
				return startErr
			}
		}
		r.log.Debug("module started", "module", name)
		r.mu.Lock()
		r.started = append(r.started, name)
		r.mu.Unlock()
	}
	return nil
}

// Stop stops the started modules in reverse start order. Every module gets its turn even when an
// earlier one fails; the errors are joined.
func (r *Registry) Stop(ctx context.Context) error {
	r.mu.Lock()
	started := slices.Clone(r.started)
	r.started = nil
	r.mu.Unlock()
	var errs []error
	for i := len(started) - 1; i >= 0; i-- {
		m := r.modules[started[i]]
		if m.Stop == nil {
			continue
		}
		if err := m.Stop(ctx); err != nil {
			errs = append(errs, fmt.Errorf("stop %s: %w", m.Name, err))
		}
		r.log.Debug("module stopped", "module", m.Name)
	}
	return errors.Join(errs...)
}
