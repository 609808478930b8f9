package inventory

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"

	"github.com/google/uuid"
)

// A hold id carries its ticket type: 16 bytes of ticket type id then 16 bytes that make the hold
// unique, in unpadded base64url (43 characters). Knowing the ticket type from the id alone lets
// every hold operation go straight to the one place (one Redis hash slot) that holds it.

// NewHoldID returns a fresh hold id for a ticket type.
func NewHoldID(ticketTypeID uuid.UUID) string {
	var b [32]byte
	copy(b[:16], ticketTypeID[:])
	_, _ = rand.Read(b[16:])
	// Encoded into an array on the stack: the string is the one allocation.
	var out [43]byte
	base64.RawURLEncoding.Encode(out[:], b[:])
	return string(out[:])
}

// IdempotentHoldID returns the hold id a customer's idempotency key maps to for a ticket type, so
// a retry with the same key finds the hold the first attempt made.
func IdempotentHoldID(ticketTypeID, customerID uuid.UUID, key string) string {
	var b [32]byte
	copy(b[:16], ticketTypeID[:])
	h := sha256.New()
	h.Write(customerID[:])
	h.Write([]byte{0})
	h.Write([]byte(key))
	copy(b[16:], h.Sum(nil))
	return base64.RawURLEncoding.EncodeToString(b[:])
}

// ParseHoldID returns the ticket type a hold id belongs to; ok is false for a malformed id.
func ParseHoldID(id string) (ticketTypeID uuid.UUID, ok bool) {
	if len(id) != 43 {
		return uuid.Nil, false
	}
	// Decoded into an array on the stack, not a fresh slice: every hold operation parses its id.
	var b [33]byte
	n, err := base64.RawURLEncoding.Decode(b[:], []byte(id))
	if err != nil || n != 32 {
		return uuid.Nil, false
	}
	copy(ticketTypeID[:], b[:16])
	return ticketTypeID, true
}
