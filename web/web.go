// Package web holds the pages onsale serves itself: the storefront at /, the organizer's
// dashboard at /organizer and the door staff's check-in page at /checkin. They are plain HTML,
// CSS and JavaScript embedded in the binary (no build step, nothing loaded from elsewhere) that
// call the public API from the same origin, as any client would.
package web

import (
	"embed"
	"net/http"
	"path"

	"github.com/labstack/echo/v4"

	"github.com/onsale-dev/onsale/internal/platform/httpserver"
	"github.com/onsale-dev/onsale/internal/platform/problem"
)

//go:embed static
var files embed.FS

// AssetPrefix is where the pages' scripts and styles are served.
const AssetPrefix = "/web/"

// contentTypes are the asset kinds the pages use.
var contentTypes = map[string]string{
	".js":  "text/javascript; charset=utf-8",
	".css": "text/css; charset=utf-8",
	".txt": "text/plain; charset=utf-8",
}

// Routes lists the pages and their assets.
func Routes() []httpserver.Route {
	return []httpserver.Route{
		{Method: http.MethodGet, Path: "/", Handler: page("static/index.html")},
		{Method: http.MethodGet, Path: "/organizer", Handler: page("static/organizer.html")},
		{Method: http.MethodGet, Path: "/checkin", Handler: page("static/checkin.html")},
		{Method: http.MethodGet, Path: AssetPrefix + ":file", Handler: asset},
		{Method: http.MethodGet, Path: AssetPrefix + "vendor/:file", Handler: vendored},
	}
}

func page(name string) echo.HandlerFunc {
	return func(c echo.Context) error {
		body, err := files.ReadFile(name)
		if err != nil {
			return problem.ErrInternal.Wrap(err)
		}
		// A page is small and changes with the binary: always revalidated, never stale after an
		// upgrade.
		c.Response().Header().Set("Cache-Control", "no-cache")
		return c.HTMLBlob(http.StatusOK, body)
	}
}

func asset(c echo.Context) error { return serve(c, "static/"+c.Param("file")) }

func vendored(c echo.Context) error { return serve(c, "static/vendor/"+c.Param("file")) }

func serve(c echo.Context, name string) error {
	ct, ok := contentTypes[path.Ext(name)]
	body, err := files.ReadFile(path.Clean(name))
	if !ok || err != nil {
		return problem.ErrNotFound
	}
	c.Response().Header().Set("Cache-Control", "no-cache")
	return c.Blob(http.StatusOK, ct, body)
}
