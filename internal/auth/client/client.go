// Package client reaches the auth module over its internal API, for a process that does not run
// it: the public keys that verify access tokens, and whether a session is live when the process
// shares no session store with auth.
package client

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"github.com/hashicorp/golang-lru/v2/expirable"

	"github.com/onsale-dev/onsale/internal/auth"
	"github.com/onsale-dev/onsale/internal/platform/internalapi"
)

// activeTTL is how long an answer about a session is reused. It bounds how long a logout takes
// to reach a process that asks auth over the network (processes sharing Redis with auth see a
// logout at once); without it every request would cost a call to auth.
const activeTTL = time.Second

// Client is auth's internal API.
type Client struct {
	api    *internalapi.Client
	active *expirable.LRU[string, bool]
}

var _ auth.SessionChecker = (*Client)(nil)

// New returns a client over api.
func New(api *internalapi.Client) *Client {
	return &Client{api: api, active: expirable.NewLRU[string, bool](100_000, nil, activeTTL)}
}

// JWKS fetches auth's public key set (a JWK set document).
func (c *Client) JWKS(ctx context.Context) ([]byte, error) {
	var set json.RawMessage
	if err := c.api.Do(ctx, http.MethodGet, "/internal/v1/jwks.json", nil, &set); err != nil {
		return nil, fmt.Errorf("auth public keys: %w", err)
	}
	return set, nil
}

// Active implements auth.SessionChecker, reusing an answer for up to a second.
func (c *Client) Active(ctx context.Context, sessionID string) (bool, error) {
	if active, ok := c.active.Get(sessionID); ok {
		return active, nil
	}
	var out struct {
		Active bool `json:"active"`
	}
	if err := c.api.Do(ctx, http.MethodGet, "/internal/v1/sessions/"+url.PathEscape(sessionID), nil, &out); err != nil {
		return false, fmt.Errorf("session check: %w", err)
	}
	c.active.Add(sessionID, out.Active)
	return out.Active, nil
}
