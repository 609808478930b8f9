package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// bootstrapAccount matches the NAME='email:password' lines a newcomer copies to start the server.
var bootstrapAccount = regexp.MustCompile(`(ONSALE_BOOTSTRAP_(?:ORGANIZER|STAFF))='([^']*)'`)

// TestQuickStartScript runs examples/sale.sh, the README's quick start, against an embedded server
// started with the accounts the script's header tells people to start it with, twice (each run
// registers its own customer, so the script can be repeated against one server). It fails with
// the script's output when the script stops, so the quick start cannot drift from the API.
func TestQuickStartScript(t *testing.T) {
	for _, tool := range []string{"bash", "curl", "jq"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("examples/sale.sh needs %s: %v (.ci/run installs it)", tool, err)
		}
	}
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	script := filepath.Join(root, "examples", "sale.sh")
	src, err := os.ReadFile(script)
	if err != nil {
		t.Fatal(err)
	}
	readme, err := os.ReadFile(filepath.Join(root, "README.md"))
	if err != nil {
		t.Fatal(err)
	}

	env := map[string]string{}
	for _, m := range bootstrapAccount.FindAllStringSubmatch(string(src), -1) {
		env[m[1]] = m[2]
		if !strings.Contains(string(readme), m[0]) {
			t.Errorf("README.md does not start the server with %s as examples/sale.sh says to", m[0])
		}
	}
	for _, name := range []string{"ONSALE_BOOTSTRAP_ORGANIZER", "ONSALE_BOOTSTRAP_STAFF"} {
		if env[name] == "" {
			t.Fatalf("the header of examples/sale.sh does not name %s='email:password'", name)
		}
	}
	_, base := startApp(t, env)

	for run := 1; run <= 2; run++ {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, "bash", script)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "ONSALE_URL="+base)
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("run %d of examples/sale.sh against %s: %v\n%s", run, base, err, out)
		}
		if !strings.Contains(string(out), "confirmed") {
			t.Fatalf("run %d of examples/sale.sh exited 0 without reporting a confirmed order:\n%s", run, out)
		}
	}
}
