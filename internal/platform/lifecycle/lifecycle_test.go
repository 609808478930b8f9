package lifecycle

import (
	"context"
	"errors"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/onsale-dev/onsale/internal/platform/logging"
)

// journal records starts and stops in the order they happen.
type journal struct {
	mu     sync.Mutex
	events []string
}

func (j *journal) add(e string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.events = append(j.events, e)
}

func (j *journal) get() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	return slices.Clone(j.events)
}

// module returns a module that records its start and stop, failing where told.
func (j *journal) module(name string, startErr, stopErr error, deps ...string) Module {
	return Module{
		Name:      name,
		DependsOn: deps,
		Start: func(context.Context) error {
			j.add("start " + name)
			return startErr
		},
		Stop: func(context.Context) error {
			j.add("stop " + name)
			return stopErr
		},
	}
}

func newRegistry(t *testing.T, mods ...Module) *Registry {
	t.Helper()
	r := New(logging.Discard())
	for _, m := range mods {
		if err := r.Add(m); err != nil {
			t.Fatalf("Add(%s): %v", m.Name, err)
		}
	}
	return r
}

// indexOf fails the test when name is missing.
func indexOf(t *testing.T, order []string, name string) int {
	t.Helper()
	i := slices.Index(order, name)
	if i < 0 {
		t.Fatalf("%s missing from %v", name, order)
	}
	return i
}

func TestStartInDependencyOrderStopInReverse(t *testing.T) {
	t.Parallel()
	j := &journal{}
	// Registered in an order that is not the dependency order; http depends on db only
	// transitively through the module services.
	r := newRegistry(t,
		j.module("http", nil, nil, "services"),
		j.module("services", nil, nil, "redis", "db"),
		j.module("db", nil, nil, "telemetry"),
		j.module("redis", nil, nil, "telemetry"),
		j.module("telemetry", nil, nil),
		j.module("debug", nil, nil),
	)
	order, err := r.Order()
	if err != nil {
		t.Fatal(err)
	}
	deps := map[string][]string{
		"http": {"services", "redis", "db", "telemetry"}, "services": {"redis", "db", "telemetry"},
		"db": {"telemetry"}, "redis": {"telemetry"},
	}
	for mod, ds := range deps {
		for _, d := range ds {
			if indexOf(t, order, d) > indexOf(t, order, mod) {
				t.Errorf("order %v starts %s before its dependency %s", order, mod, d)
			}
		}
	}
	if len(order) != 6 {
		t.Fatalf("order %v has %d modules, want 6", order, len(order))
	}
	// Stable: among modules free to go in any order, registration order decides.
	again, _ := r.Order()
	if !reflect.DeepEqual(order, again) {
		t.Fatalf("order not stable: %v then %v", order, again)
	}

	if err := r.Start(context.Background()); err != nil {
		t.Fatalf("Start: %v", err)
	}
	var wantStarts []string
	for _, n := range order {
		wantStarts = append(wantStarts, "start "+n)
	}
	if got := j.get(); !reflect.DeepEqual(got, wantStarts) {
		t.Fatalf("starts = %v, want %v", got, wantStarts)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatalf("Stop: %v", err)
	}
	var wantStops []string
	for i := len(order) - 1; i >= 0; i-- {
		wantStops = append(wantStops, "stop "+order[i])
	}
	if got := j.get()[len(order):]; !reflect.DeepEqual(got, wantStops) {
		t.Fatalf("stops = %v, want %v", got, wantStops)
	}
	// A second Stop has nothing left to stop.
	if err := r.Stop(context.Background()); err != nil || len(j.get()) != 2*len(order) {
		t.Fatalf("second Stop: err %v, events %v", err, j.get())
	}
}

func TestFailedStartStopsStartedModulesInReverse(t *testing.T) {
	t.Parallel()
	j := &journal{}
	boom := errors.New("connection refused")
	r := newRegistry(t,
		j.module("a", nil, nil),
		j.module("b", nil, nil, "a"),
		j.module("c", boom, nil, "b"),
		j.module("d", nil, nil, "c"),
	)
	err := r.Start(context.Background())
	if !errors.Is(err, boom) || !strings.Contains(err.Error(), "start c") {
		t.Fatalf("Start err = %v; want the start error, naming c", err)
	}
	want := []string{"start a", "start b", "start c", "stop b", "stop a"}
	if got := j.get(); !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

func TestFailedStartJoinsStopErrors(t *testing.T) {
	t.Parallel()
	j := &journal{}
	boom, stuck := errors.New("boom"), errors.New("stuck")
	r := newRegistry(t,
		j.module("a", nil, stuck),
		j.module("b", boom, nil, "a"),
	)
	err := r.Start(context.Background())
	if !errors.Is(err, boom) || !errors.Is(err, stuck) {
		t.Fatalf("Start err = %v; want both the start and the stop error", err)
	}
}

func TestStartAndStopMayBeNil(t *testing.T) {
	t.Parallel()
	j := &journal{}
	r := newRegistry(t,
		Module{Name: "config"},
		j.module("b", nil, nil, "config"),
		Module{Name: "c", DependsOn: []string{"b"}, Start: func(context.Context) error { j.add("start c"); return nil }},
	)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got, want := j.get(), []string{"start b", "start c", "stop b"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("events = %v, want %v", got, want)
	}
}

func TestUnknownDependency(t *testing.T) {
	t.Parallel()
	j := &journal{}
	r := newRegistry(t, j.module("a", nil, nil), j.module("b", nil, nil, "a", "ghost"))
	_, err := r.Order()
	if err == nil || !strings.Contains(err.Error(), `"b"`) || !strings.Contains(err.Error(), `"ghost"`) {
		t.Fatalf("Order err = %v; want it to name b and ghost", err)
	}
	if err := r.Start(context.Background()); err == nil {
		t.Fatal("Start accepted an unknown dependency")
	}
	if got := j.get(); len(got) != 0 {
		t.Fatalf("modules ran despite the bad graph: %v", got)
	}
}

func TestCyclesRejected(t *testing.T) {
	t.Parallel()
	cases := map[string][]Module{
		"self":  {{Name: "a", DependsOn: []string{"a"}}},
		"pair":  {{Name: "a", DependsOn: []string{"b"}}, {Name: "b", DependsOn: []string{"a"}}},
		"three": {{Name: "x"}, {Name: "a", DependsOn: []string{"x", "c"}}, {Name: "b", DependsOn: []string{"a"}}, {Name: "c", DependsOn: []string{"b"}}},
	}
	for name, mods := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			started := false
			for i := range mods {
				mods[i].Start = func(context.Context) error { started = true; return nil }
			}
			r := newRegistry(t, mods...)
			if _, err := r.Order(); err == nil || !strings.Contains(err.Error(), "cycle") {
				t.Fatalf("Order err = %v; want a cycle error", err)
			}
			if err := r.Start(context.Background()); err == nil || started {
				t.Fatalf("Start err = %v, started = %v; want refusal before any start", err, started)
			}
		})
	}
}

func TestStopContinuesPastFailures(t *testing.T) {
	t.Parallel()
	j := &journal{}
	e1, e2 := errors.New("flush failed"), errors.New("close failed")
	r := newRegistry(t,
		j.module("a", nil, e1),
		j.module("b", nil, nil, "a"),
		j.module("c", nil, e2, "b"),
	)
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	err := r.Stop(context.Background())
	if !errors.Is(err, e1) || !errors.Is(err, e2) {
		t.Fatalf("Stop err = %v; want both errors joined", err)
	}
	if !strings.Contains(err.Error(), "stop a") || !strings.Contains(err.Error(), "stop c") {
		t.Fatalf("Stop err = %v; want the failing modules named", err)
	}
	if got, want := j.get()[3:], []string{"stop c", "stop b", "stop a"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("stops = %v, want %v", got, want)
	}
}

func TestAddRejectsBadModules(t *testing.T) {
	t.Parallel()
	r := New(logging.Discard())
	if err := r.Add(Module{}); err == nil {
		t.Error("Add accepted a module without a name")
	}
	if err := r.Add(Module{Name: "a"}); err != nil {
		t.Fatal(err)
	}
	if err := r.Add(Module{Name: "a"}); err == nil {
		t.Error("Add accepted a duplicate name")
	}
}

func TestStopReceivesContext(t *testing.T) {
	t.Parallel()
	type key struct{}
	var got any
	r := newRegistry(t, Module{Name: "a", Stop: func(ctx context.Context) error { got = ctx.Value(key{}); return nil }})
	if err := r.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := r.Stop(context.WithValue(context.Background(), key{}, "v")); err != nil {
		t.Fatal(err)
	}
	if got != "v" {
		t.Fatalf("Stop got context value %v", got)
	}
}
