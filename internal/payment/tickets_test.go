package payment_test

import (
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"testing"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/payment"
	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

func newKeys(t *testing.T, existing []byte) ([]byte, *keyset.Set) {
	t.Helper()
	data, err := keyset.Generate(existing)
	if err != nil {
		t.Fatal(err)
	}
	keys, err := keyset.Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	return data, keys
}

func newTicket() payment.Ticket {
	return payment.Ticket{ID: uuid.New(), OrderID: uuid.New(), TicketTypeID: uuid.New(), EventID: uuid.New(), Seq: 1}
}

func wantInvalidCode(t *testing.T, s *payment.TicketSigner, code, what string) {
	t.Helper()
	if tid, eid, err := s.Verify(code); !errors.Is(err, payment.ErrInvalidTicketCode) {
		t.Fatalf("%s: verified as ticket %s of event %s (err %v)", what, tid, eid, err)
	}
}

func TestTicketCodeRoundTrip(t *testing.T) {
	t.Parallel()
	_, keys := newKeys(t, nil)
	s := payment.NewTicketSigner(keys)
	for range 20 {
		tk := newTicket()
		code := s.Code(tk)
		if !strings.HasPrefix(code, "T1.") || len(code) > 512 {
			t.Fatalf("code %q", code)
		}
		tid, eid, err := s.Verify(code)
		if err != nil || tid != tk.ID || eid != tk.EventID {
			t.Fatalf("verify: %s %s %v; want %s %s", tid, eid, err, tk.ID, tk.EventID)
		}
		// Deterministic: the same ticket always shows the same code.
		if again := s.Code(tk); again != code {
			t.Fatalf("two codes for one ticket:\n%s\n%s", code, again)
		}
	}
}

func TestTicketCodeFollowsThePublishedFormat(t *testing.T) {
	t.Parallel()
	_, keys := newKeys(t, nil)
	s := payment.NewTicketSigner(keys)
	tk := newTicket()
	code := s.Code(tk)
	// A scanner with only the published JWK set verifies the code as the document describes.
	var jwks struct {
		Keys []struct {
			Kid string `json:"kid"`
			Kty string `json:"kty"`
			Crv string `json:"crv"`
			X   string `json:"x"`
			D   string `json:"d"`
		} `json:"keys"`
	}
	data, err := s.PublicKeys()
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(data, &jwks); err != nil || len(jwks.Keys) != 1 {
		t.Fatalf("public keys %s: %v", data, err)
	}
	k := jwks.Keys[0]
	if k.D != "" || k.Kty != "OKP" || k.Crv != "Ed25519" {
		t.Fatalf("public key %+v", k)
	}
	parts := strings.Split(code, ".")
	if len(parts) != 4 || parts[0] != "T1" || parts[2] != k.Kid {
		t.Fatalf("code %q", code)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil || len(raw) != 32 || uuid.UUID(raw[:16]) != tk.ID || uuid.UUID(raw[16:]) != tk.EventID {
		t.Fatalf("ids part %q: %v", parts[1], err)
	}
	pub, err := base64.RawURLEncoding.DecodeString(k.X)
	if err != nil {
		t.Fatal(err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil {
		t.Fatal(err)
	}
	if !ed25519.Verify(pub, []byte("onsale-ticket-v1."+parts[2]+"."+parts[1]), sig) {
		t.Fatal("the signature does not verify with the published key as documented")
	}
}

func TestTicketCodeEveryCharacterChangeFails(t *testing.T) {
	t.Parallel()
	_, keys := newKeys(t, nil)
	s := payment.NewTicketSigner(keys)
	code := s.Code(newTicket())
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
	tried := 0
	for i := range len(code) {
		// Every position gets a few other characters; the last character of each base64 part,
		// whose low bits a lax decoder would ignore, gets every other one.
		replacements := []byte{alphabet[(strings.IndexByte(alphabet, code[i])+1)%len(alphabet)], 'A', 'z', '.', '=', '+'}
		if i == len(code)-1 || code[i+1] == '.' {
			replacements = []byte(alphabet)
		}
		for _, c := range replacements {
			if code[i] == c {
				continue
			}
			changed := code[:i] + string(c) + code[i+1:]
			wantInvalidCode(t, s, changed, fmt.Sprintf("code with %q at %d", c, i))
			tried++
		}
		// Dropping or doubling a character fails too.
		wantInvalidCode(t, s, code[:i]+code[i+1:], "code with a character removed")
		wantInvalidCode(t, s, code[:i]+code[i:i+1]+code[i:], "code with a character doubled")
	}
	if tried < 5*len(code) {
		t.Fatalf("only %d variations tried", tried)
	}
}

func TestTicketCodeGarbage(t *testing.T) {
	t.Parallel()
	_, keys := newKeys(t, nil)
	s := payment.NewTicketSigner(keys)
	code := s.Code(newTicket())
	parts := strings.Split(code, ".")
	for _, bad := range []string{
		"", "T1.", "T1...", "garbage", "T2." + strings.TrimPrefix(code, "T1."), code + ".", code + "A",
		parts[0] + "." + parts[1] + "." + parts[2], // no signature
		parts[0] + "." + parts[1] + "." + parts[2] + ".", strings.Repeat("A", 600), code + strings.Repeat("A", 512),
		strings.ToLower(code),
	} {
		wantInvalidCode(t, s, bad, "garbage "+bad)
	}
}

func TestTicketCodeFromAnotherKeySetFails(t *testing.T) {
	t.Parallel()
	_, ours := newKeys(t, nil)
	_, theirs := newKeys(t, nil)
	tk := newTicket()
	forged := payment.NewTicketSigner(theirs).Code(tk)
	wantInvalidCode(t, payment.NewTicketSigner(ours), forged, "a code signed with another key set")
	// Their signature under our kid fails as well.
	ourKid, _ := ours.SigningKey()
	parts := strings.Split(forged, ".")
	parts[2] = ourKid
	wantInvalidCode(t, payment.NewTicketSigner(ours), strings.Join(parts, "."), "another key's signature under our kid")
}

func TestTicketKeyRotation(t *testing.T) {
	t.Parallel()
	data, old := newKeys(t, nil)
	tk := newTicket()
	oldCode := payment.NewTicketSigner(old).Code(tk)

	_, rotated := newKeys(t, data)
	s := payment.NewTicketSigner(rotated)
	// Codes printed before the rotation still verify.
	if tid, eid, err := s.Verify(oldCode); err != nil || tid != tk.ID || eid != tk.EventID {
		t.Fatalf("an old code after rotation: %s %s %v", tid, eid, err)
	}
	// New codes are signed with the new key, and the old signer (which lacks it) refuses them.
	newCode := s.Code(tk)
	if newCode == oldCode {
		t.Fatal("the new key signs the same code as the old one")
	}
	oldKid, _ := old.SigningKey()
	newKid, _ := rotated.SigningKey()
	if oldKid == newKid || strings.Split(newCode, ".")[2] != newKid {
		t.Fatalf("new code %q not signed with the new kid %s", newCode, newKid)
	}
	if _, _, err := s.Verify(newCode); err != nil {
		t.Fatalf("new code: %v", err)
	}
	wantInvalidCode(t, payment.NewTicketSigner(old), newCode, "a new code at a scanner without the new key")
	// Both public keys are published.
	pub, err := s.PublicKeys()
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(pub), oldKid) || !strings.Contains(string(pub), newKid) || strings.Contains(string(pub), `"d"`) {
		t.Fatalf("published keys after rotation: %s", pub)
	}
}
