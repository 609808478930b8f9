package system

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// TestMain has the server binary built once for the whole package run, by the first test that
// needs it.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "onsale-system-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		BuildWhenNeeded(dir) // the first test that starts a server builds it; a failure fails each
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// systemTest skips system tests under -short.
func systemTest(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("system test: skipped with -short")
	}
}
