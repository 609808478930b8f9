package app_test

import (
	"encoding/json"
	"errors"
	"io"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const modulePath = "github.com/onsale-dev/onsale"

// modules lists the modules in the one direction they may depend on each other: a module may
// import the root package of those before it, never of those after.
var modules = []string{"auth", "inventory", "webhook", "payment"}

type goPackage struct {
	ImportPath string
	Imports    []string
}

// listPackages runs go list over the repository.
func listPackages(t *testing.T) []goPackage {
	t.Helper()
	cmd := exec.Command("go", "list", "-json", modulePath+"/...")
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			t.Fatalf("go list: %v\n%s", err, ee.Stderr)
		}
		t.Fatalf("go list: %v", err)
	}
	dec := json.NewDecoder(strings.NewReader(string(out)))
	var pkgs []goPackage
	for {
		var p goPackage
		if err := dec.Decode(&p); errors.Is(err, io.EOF) {
			break
		} else if err != nil {
			t.Fatalf("decode go list: %v", err)
		}
		pkgs = append(pkgs, p)
	}
	if len(pkgs) < 20 {
		t.Fatalf("go list found only %d packages", len(pkgs))
	}
	return pkgs
}

// moduleOf returns the module a package belongs to ("" for none) and whether it is that
// module's root package.
func moduleOf(path string) (module string, root bool) {
	rest, ok := strings.CutPrefix(path, modulePath+"/internal/")
	if !ok {
		return "", false
	}
	first, sub, _ := strings.Cut(rest, "/")
	if !slices.Contains(modules, first) {
		return "", false
	}
	return first, sub == ""
}

// adapter tells whether a package is one of a module's adapters: any package under a module but
// its root and its test-support packages (named ...test: the suites every adapter runs).
func adapter(path string) bool {
	m, root := moduleOf(path)
	return m != "" && !root && !strings.HasSuffix(path, "test")
}

// TestImportGraph states the house rules of the layout and fails when a package breaks one:
//   - internal/platform imports no module and not the composition root;
//   - a module imports another module only through its root package, and only in the one
//     direction (payment may use webhook, inventory and auth; webhook may use inventory and auth; inventory may use auth; auth neither);
//   - a module's root package imports none of its own sub-packages (adapters import the root,
//     never the other way round);
//   - only the composition root (internal/app) and cmd/ import adapters: everything else, test
//     stacks included, builds processes through internal/app. Within a module its packages may
//     share types (the HTTP provider client speaks the simulated provider's wire format; the
//     module's test kit steers what internal/app built, the simulated provider's mode say), but
//     no package outside the wiring touches another module's adapters.
//
// The rules hold for packages as built; test files may use their own module's adapters.
func TestImportGraph(t *testing.T) {
	for _, p := range listPackages(t) {
		from, fromRoot := moduleOf(p.ImportPath)
		platform := strings.HasPrefix(p.ImportPath, modulePath+"/internal/platform")
		wiring := p.ImportPath == modulePath+"/internal/app" || strings.HasPrefix(p.ImportPath, modulePath+"/cmd/")
		for _, imp := range p.Imports {
			if !strings.HasPrefix(imp, modulePath+"/") {
				continue
			}
			to, toRoot := moduleOf(imp)
			switch {
			case platform && (to != "" || imp == modulePath+"/internal/app"):
				t.Errorf("%s imports %s: the platform imports no module", p.ImportPath, imp)
			case from != "" && to != "" && from != to && !toRoot:
				t.Errorf("%s imports %s: a module uses another only through its root package", p.ImportPath, imp)
			case from != "" && to != "" && from != to && slices.Index(modules, to) > slices.Index(modules, from):
				t.Errorf("%s imports %s: %s may not depend on %s (modules depend one way: payment → inventory → auth)", p.ImportPath, imp, from, to)
			case fromRoot && to == from && !toRoot:
				t.Errorf("%s imports %s: a module's root package imports none of its adapters", p.ImportPath, imp)
			case adapter(imp) && !wiring && to != from:
				t.Errorf("%s imports %s: only internal/app and cmd/ choose adapters", p.ImportPath, imp)
			}
		}
	}
}
