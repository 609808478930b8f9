package webhook

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"
)

func TestGuardRefusesInternalAddresses(t *testing.T) {
	t.Parallel()
	g := NewGuard(nil)
	for _, a := range []string{
		"127.0.0.1", "127.8.9.10", "::1", "10.1.2.3", "172.16.0.1", "172.31.255.255", "192.168.1.1",
		"169.254.169.254", // cloud metadata
		"fd00:ec2::254",   // cloud metadata over IPv6
		"fe80::1", "0.0.0.0", "::", "100.64.0.1", "224.0.0.1", "ff02::1", "255.255.255.255", "240.0.0.1",
		"::ffff:127.0.0.1", "::ffff:169.254.169.254", // IPv4-mapped
		"64:ff9b::a9fe:a9fe", // NAT64 of 169.254.169.254
		"2002:a9fe:a9fe::1",  // 6to4 of 169.254.169.254
		"198.18.0.1", "192.0.0.170",
	} {
		if err := g.Check(netip.MustParseAddr(a)); !errors.Is(err, ErrRefusedAddress) {
			t.Errorf("%s: %v, want refused", a, err)
		}
	}
	for _, a := range []string{"93.184.215.14", "8.8.8.8", "2606:4700:4700::1111", "172.32.0.1", "192.169.0.1", "::ffff:8.8.8.8"} {
		if err := g.Check(netip.MustParseAddr(a)); err != nil {
			t.Errorf("%s: %v, want allowed", a, err)
		}
	}
	// The operator may allow a network; the rest stays refused.
	loop := NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})
	if err := loop.Check(netip.MustParseAddr("127.0.0.1")); err != nil {
		t.Errorf("allowed loopback: %v", err)
	}
	if err := loop.Check(netip.MustParseAddr("169.254.169.254")); !errors.Is(err, ErrRefusedAddress) {
		t.Errorf("metadata with loopback allowed: %v, want refused", err)
	}
}

// The check at connection time, on a real connection to a receiver on loopback.
func TestGuardControlRefusesTheConnection(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		hits.Add(1)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	client := func(g *Guard) *http.Client {
		d := &net.Dialer{Timeout: 5 * time.Second, Control: g.Control}
		return &http.Client{Transport: &http.Transport{DialContext: d.DialContext}, Timeout: 5 * time.Second}
	}
	_, err := client(NewGuard(nil)).Post(srv.URL, "application/json", nil)
	if !errors.Is(err, ErrRefusedAddress) {
		t.Fatalf("delivery to loopback: %v, want refused", err)
	}
	if hits.Load() != 0 {
		t.Fatal("the receiver was reached")
	}
	resp, err := client(NewGuard([]netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")})).Post(srv.URL, "application/json", nil)
	if err != nil {
		t.Fatalf("delivery with loopback allowed: %v", err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent || hits.Load() != 1 {
		t.Fatalf("status %d, %d hits", resp.StatusCode, hits.Load())
	}
}

func TestGuardCheckURL(t *testing.T) {
	t.Parallel()
	g := NewGuard(nil)
	ctx := context.Background()
	for _, u := range []string{
		"http://localhost:8080/hook", // resolves to loopback
		"http://127.0.0.1/hook", "http://[::1]/hook", "http://169.254.169.254/latest/meta-data/",
		"ftp://93.184.215.14/", "/relative", "http://", "https://user:pw@93.184.215.14/hook", "not a url at all%",
	} {
		if err := g.CheckURL(ctx, net.DefaultResolver, u); err == nil {
			t.Errorf("%s: accepted", u)
		}
	}
	for _, u := range []string{"https://93.184.215.14/hook", "http://[2606:4700:4700::1111]:8443/x"} {
		if err := g.CheckURL(ctx, net.DefaultResolver, u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
