package redisclient

import (
	"net"
	"strings"
	"testing"
)

// TestOpenErrorsHideCredentials: neither a Redis that cannot be reached nor a URL that cannot be
// parsed shows the password in the error, which is logged; the error still names the server.
func TestOpenErrorsHideCredentials(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	for _, tc := range []struct{ url, secret, names string }{
		{"redis://u:R3disPw@" + addr + "/0", "R3disPw", "redis://u:****@" + addr + "/0"},
		{"redis://:R3disPw@" + addr + "/0", "R3disPw", "redis://****@" + addr + "/0"},
		{"redis://u:R3dis%zzPw@" + addr + "/0", "zzPw", addr},
		{"redis://u:R3disPw@" + addr + "/nine", "R3disPw", addr},
	} {
		c, err := Open(tc.url)
		if err == nil {
			c.Close()
			t.Fatalf("%s: connected", tc.url)
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("the error shows %s: %v", tc.secret, err)
		}
		if !strings.Contains(err.Error(), tc.names) {
			t.Errorf("the error does not name %s: %v", tc.names, err)
		}
	}
}
