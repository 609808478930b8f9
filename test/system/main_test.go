package system

import (
	"flag"
	"fmt"
	"os"
	"testing"
)

// TestMain builds the server binary once for the whole package run.
func TestMain(m *testing.M) {
	flag.Parse()
	dir, err := os.MkdirTemp("", "onsale-system-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if !testing.Short() {
		if _, err := BuildServer(dir); err != nil {
			// Every test reports it (Binary fails them).
			fmt.Fprintln(os.Stderr, "system tests:", err)
		}
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
