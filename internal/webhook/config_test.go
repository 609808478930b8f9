package webhook

import (
	"net/netip"
	"slices"
	"testing"
)

func TestConfigNetworks(t *testing.T) {
	t.Parallel()
	c := Config{AllowNetworks: " 127.0.0.0/8, 10.20.1.7/16,::1/128 "}
	got, err := c.Networks()
	want := []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.20.0.0/16"), netip.MustParsePrefix("::1/128")}
	if err != nil || !slices.Equal(got, want) || c.Validate() != nil {
		t.Fatalf("networks %v, %v; want %v", got, err, want)
	}
	if n, err := (Config{}).Networks(); err != nil || len(n) != 0 {
		t.Fatalf("empty: %v, %v", n, err)
	}
	for _, bad := range []string{"127.0.0.1", "10.0.0.0/33", "localhost", "127.0.0.0/8;10.0.0.0/8"} {
		if err := (Config{AllowNetworks: bad}).Validate(); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
