package httpserver

import (
	"net/http"
	"net/url"
	"strings"

	"github.com/labstack/echo/v4"
)

// corsMaxAge is how long a browser may reuse a preflight answer (seconds): a storefront on
// another origin then pays one OPTIONS per route every ten minutes, not one per request.
const corsMaxAge = "600"

// The request headers a page on an allowed origin may send, and the response headers its script
// may read (beyond the CORS-safelisted ones).
const (
	corsAllowHeaders  = "Authorization, Content-Type, Idempotency-Key, Queue-Pass, Last-Event-ID, X-Request-Id"
	corsAllowMethods  = "GET, POST, PUT, PATCH, DELETE"
	corsExposeHeaders = "Location, Retry-After, X-Request-Id, Idempotent-Replayed, Queue-Pass, ETag, RateLimit, RateLimit-Policy"
)

// cors answers cross-origin requests from the configured origins only. Credentials are never
// allowed: the API authenticates with a bearer token in the Authorization header (and event
// streams with a stream ticket in the URL), never with cookies, so a page on another origin needs
// no credentialed request and a forged one from any other site carries nothing the API honours.
// A preflight is answered here, before routing, and cached by the browser for corsMaxAge.
func cors(origins []string) echo.MiddlewareFunc {
	allowed := make(map[string]bool, len(origins))
	for _, o := range origins {
		allowed[strings.TrimRight(o, "/")] = true
	}
	return func(next echo.HandlerFunc) echo.HandlerFunc {
		return func(c echo.Context) error {
			req := c.Request()
			origin := req.Header.Get("Origin")
			h := c.Response().Header()
			// The answer depends on Origin whatever it is, so shared caches must key on it.
			h.Add("Vary", "Origin")
			if origin == "" || !allowed[origin] {
				return next(c)
			}
			h.Set("Access-Control-Allow-Origin", origin)
			if req.Method == http.MethodOptions && req.Header.Get("Access-Control-Request-Method") != "" {
				h.Set("Access-Control-Allow-Methods", corsAllowMethods)
				h.Set("Access-Control-Allow-Headers", corsAllowHeaders)
				h.Set("Access-Control-Max-Age", corsMaxAge)
				return c.NoContent(http.StatusNoContent)
			}
			h.Set("Access-Control-Expose-Headers", corsExposeHeaders)
			return next(c)
		}
	}
}

// validOrigin tells whether s is a browser origin: scheme and host (and port), nothing else.
func validOrigin(s string) bool {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return false
	}
	return u.Path == "" && u.RawQuery == "" && u.Fragment == "" && u.User == nil
}
