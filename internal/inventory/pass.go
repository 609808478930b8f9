package inventory

import (
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/lestrrat-go/jwx/v2/jwa"
	"github.com/lestrrat-go/jwx/v2/jwt"

	"github.com/onsale-dev/onsale/internal/platform/clock"
)

// passAudience marks a token as a queue pass, so no other token signed with the same secret
// could pass for one.
const passAudience = "onsale-queue-pass"

// passClaims are what a pass says: who, for which event, until when.
type passClaims struct {
	Customer uuid.UUID
	Event    uuid.UUID
	Place    int64
	Issued   time.Time
	Expires  time.Time
}

// signPass makes a pass: a JWT (HS256) signed with the room's secret. The same claims always make
// the same token, so asking again returns the same pass.
func signPass(secret []byte, c passClaims) (string, error) {
	tok, err := jwt.NewBuilder().
		Subject(c.Customer.String()).
		Audience([]string{passAudience}).
		IssuedAt(c.Issued.Truncate(time.Second)).
		Expiration(c.Expires.Truncate(time.Second)).
		Claim("evt", c.Event.String()).
		Claim("place", c.Place).
		Build()
	if err != nil {
		return "", fmt.Errorf("build pass: %w", err)
	}
	b, err := jwt.Sign(tok, jwt.WithKey(jwa.HS256, secret))
	if err != nil {
		return "", fmt.Errorf("sign pass: %w", err)
	}
	return string(b), nil
}

// passEvent reads which event a pass claims to be for, without trusting it yet: the event's
// room holds the secret that verifies it.
func passEvent(pass string) (uuid.UUID, error) {
	tok, err := jwt.ParseInsecure([]byte(pass))
	if err != nil {
		return uuid.Nil, ErrPassInvalid.WithDetail("the Queue-Pass header is not a queue pass")
	}
	v, _ := tok.Get("evt")
	s, _ := v.(string)
	id, err := uuid.Parse(s)
	if err != nil {
		return uuid.Nil, ErrPassInvalid.WithDetail("the Queue-Pass header is not a queue pass")
	}
	return id, nil
}

// verifyPass checks a pass's signature, audience and lifetime at the clock's time, and that it
// was given to customer.
func verifyPass(secret []byte, pass string, customer uuid.UUID, clk clock.Clock) error {
	tok, err := jwt.Parse([]byte(pass), jwt.WithKey(jwa.HS256, secret), jwt.WithValidate(true),
		jwt.WithAudience(passAudience), jwt.WithClock(jwt.ClockFunc(clk.Now)), jwt.WithAcceptableSkew(0))
	switch {
	case errors.Is(err, jwt.ErrTokenExpired()):
		return ErrPassExpired.WithDetail("your queue pass ran out; join the queue again")
	case err != nil:
		return ErrPassInvalid.WithDetail("the queue pass is not one this event's waiting room gave out")
	case tok.Subject() != customer.String():
		return ErrPassInvalid.WithDetail("this queue pass was given to another account")
	}
	return nil
}
