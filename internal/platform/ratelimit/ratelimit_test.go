package ratelimit

import "testing"

func TestClientKey(t *testing.T) {
	for in, want := range map[string]string{
		"203.0.113.7":          "203.0.113.7",
		"::ffff:203.0.113.7":   "203.0.113.7",
		"2001:db8:1:2:3:4:5:6": "2001:db8:1:2::/64",
		"2001:db8:1:2:ffff::1": "2001:db8:1:2::/64",
		"2001:db8:1:3::1":      "2001:db8:1:3::/64",
		"fe80::1%eth0":         "fe80::/64",
		"not an address":       "not an address",
	} {
		if got := ClientKey(in); got != want {
			t.Errorf("ClientKey(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestMemoryBurstThenRate(t *testing.T) {
	m := NewMemory(1, 3, 10)
	for i := range 3 {
		if ok, _ := m.Allow("a"); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := m.Allow("a")
	if ok || wait <= 0 || wait > 1e9 {
		t.Fatalf("request over the burst: ok %v, wait %s; want refused with a wait up to 1s", ok, wait)
	}
	if ok, _ := m.Allow("b"); !ok {
		t.Fatal("another key shares the first key's bucket")
	}
}
