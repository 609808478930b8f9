package payment

import (
	"crypto/ed25519"
	"encoding/base64"
	"strings"

	"github.com/google/uuid"

	"github.com/onsale-dev/onsale/internal/platform/keyset"
)

// Ticket codes are what a ticket's QR code holds: the ticket and event ids, the signing key's id
// and an Ed25519 signature, so a door scanner holding the published public keys can tell a real
// ticket from a forged one without any network:
//
//	T1.<base64url(ticket id ‖ event id)>.<kid>.<base64url(signature)>
//
// The signature covers "onsale-ticket-v1.<kid>.<ids>". A signature proves a ticket was issued; the
// check-in, which needs the network, makes sure it is admitted once.
const codePrefix = "T1."

// TicketSigner signs and verifies ticket codes.
type TicketSigner struct {
	keys *keyset.Set
}

// NewTicketSigner returns a signer over keys (the last key signs, every key verifies).
func NewTicketSigner(keys *keyset.Set) *TicketSigner { return &TicketSigner{keys: keys} }

func signedMessage(kid, ids string) []byte {
	return []byte("onsale-ticket-v1." + kid + "." + ids)
}

// Code returns a ticket's signed code. Ed25519 signatures are deterministic, so a ticket's code
// is the same every time it is shown.
func (s *TicketSigner) Code(t Ticket) string {
	kid, priv := s.keys.SigningKey()
	var raw [32]byte
	copy(raw[:16], t.ID[:])
	copy(raw[16:], t.EventID[:])
	ids := base64.RawURLEncoding.EncodeToString(raw[:])
	sig := ed25519.Sign(priv, signedMessage(kid, ids))
	return codePrefix + ids + "." + kid + "." + base64.RawURLEncoding.EncodeToString(sig)
}

// Verify checks a code's signature and returns the ticket and event ids it names.
func (s *TicketSigner) Verify(code string) (ticketID, eventID uuid.UUID, err error) {
	invalid := ErrInvalidTicketCode.WithDetail("this is not a ticket issued by onsale")
	rest, ok := strings.CutPrefix(code, codePrefix)
	if !ok || len(code) > 512 {
		return uuid.Nil, uuid.Nil, invalid
	}
	parts := strings.Split(rest, ".")
	if len(parts) != 3 {
		return uuid.Nil, uuid.Nil, invalid
	}
	ids, kid, sig64 := parts[0], parts[1], parts[2]
	pub, ok := s.keys.PublicKey(kid)
	if !ok {
		return uuid.Nil, uuid.Nil, invalid
	}
	raw, err1 := strict.DecodeString(ids)
	sig, err2 := strict.DecodeString(sig64)
	if err1 != nil || err2 != nil || len(raw) != 32 || len(sig) != ed25519.SignatureSize ||
		!ed25519.Verify(pub, signedMessage(kid, ids), sig) {
		return uuid.Nil, uuid.Nil, invalid
	}
	copy(ticketID[:], raw[:16])
	copy(eventID[:], raw[16:])
	return ticketID, eventID, nil
}

// PublicKeys is the JWK set a scanner needs to verify codes offline.
func (s *TicketSigner) PublicKeys() ([]byte, error) { return s.keys.PublicJSON() }

// strict refuses non-canonical base64: without it, altering the unused low bits of the last
// character would give a different code that still verifies.
var strict = base64.RawURLEncoding.Strict()
