package webhook

import (
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The example of the Standard Webhooks specification: a receiver using any of its libraries
// accepts what Sign writes.
func TestSignMatchesTheSpecification(t *testing.T) {
	t.Parallel()
	key, err := ParseSecret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
	if err != nil {
		t.Fatal(err)
	}
	at := time.Unix(1614265330, 0)
	body := []byte(`{"test": 2432232314}`)
	got := Sign(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", at, body)
	if want := "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="; got != want {
		t.Fatalf("signature %s, want %s", got, want)
	}
	if err := Verify(key, "msg_p5jXN8AQM9LWM0D4loKWxJek", "1614265330", got, body, at.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("verify: %v", err)
	}
}

func TestVerifyRefuses(t *testing.T) {
	t.Parallel()
	secret, err := NewSecret()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("secret %q", secret)
	}
	key, err := ParseSecret(secret)
	if err != nil || len(key) != 32 {
		t.Fatalf("key of %q: %d bytes, %v", secret, len(key), err)
	}
	other, _ := NewSecret()
	otherKey, _ := ParseSecret(other)
	if other == secret {
		t.Fatal("two secrets alike")
	}
	now := time.Now()
	ts := func(d time.Duration) string { return strconv.FormatInt(now.Add(d).Unix(), 10) }
	body := []byte(`{"type":"order.confirmed"}`)
	sig := Sign(key, "msg_1", now, body)
	good := strconv.FormatInt(now.Unix(), 10)
	for _, tc := range []struct {
		name                  string
		key                   []byte
		id, timestamp, header string
		body                  string
		want                  error
	}{
		{"valid", key, "msg_1", good, sig, string(body), nil},
		{"one of several (a rotation)", key, "msg_1", good, Sign(otherKey, "msg_1", now, body) + " " + sig, string(body), nil},
		{"another secret", otherKey, "msg_1", good, sig, string(body), ErrNoSignature},
		{"body changed", key, "msg_1", good, sig, `{"type":"order.refunded"}`, ErrNoSignature},
		{"id changed", key, "msg_2", good, sig, string(body), ErrNoSignature},
		{"unknown version", key, "msg_1", good, "v2," + strings.TrimPrefix(sig, "v1,"), string(body), ErrNoSignature},
		{"no signature", key, "msg_1", good, "", string(body), ErrNoSignature},
		{"garbage", key, "msg_1", good, "v1,not base64!", string(body), ErrNoSignature},
		{"too old", key, "msg_1", ts(-6 * time.Minute), Sign(key, "msg_1", now.Add(-6*time.Minute), body), string(body), ErrBadTimestamp},
		{"from the future", key, "msg_1", ts(6 * time.Minute), Sign(key, "msg_1", now.Add(6*time.Minute), body), string(body), ErrBadTimestamp},
		{"no timestamp", key, "msg_1", "", sig, string(body), ErrBadTimestamp},
	} {
		err := Verify(tc.key, tc.id, tc.timestamp, tc.header, []byte(tc.body), now, 5*time.Minute)
		if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
			t.Errorf("%s: %v, want %v", tc.name, err, tc.want)
		}
	}
	for _, bad := range []string{"", "whsec_", "whsec_***", "not base64 at all"} {
		if _, err := ParseSecret(bad); !errors.Is(err, ErrBadSecret) {
			t.Errorf("ParseSecret(%q) = %v, want ErrBadSecret", bad, err)
		}
	}
}
