package main

import (
	"context"
	"fmt"
	"io"
)

// runAdmin runs the small operator subcommands.
func runAdmin(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "usage: server admin create-user --email E --role organizer|staff|customer")
	return 2
}
