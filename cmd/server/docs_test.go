package main

import (
	"bytes"
	"io"
	"mime"
	"net/http"
	"net/url"
	"regexp"
	"testing"

	"github.com/onsale-dev/onsale/api"
)

// pageRef finds the URLs an HTML page makes the browser load or follow: src and href attributes,
// and Redoc's spec-url.
var pageRef = regexp.MustCompile(`(?i)\s(src|href|spec-url)\s*=\s*(?:"([^"]*)"|'([^']*)'|([^\s>]+))`)

// TestDocsPage checks the reference at /docs as a browser would meet it: an HTML page whose every
// reference stays on this server and answers, so it renders where the internet is out of reach.
func TestDocsPage(t *testing.T) {
	_, base := startApp(t, nil)
	page, err := url.Parse(base + "/docs")
	if err != nil {
		t.Fatal(err)
	}
	status, ctype, body := get(t, page.String())
	if status != http.StatusOK {
		t.Fatalf("GET /docs: %d", status)
	}
	if mt, _, _ := mime.ParseMediaType(ctype); mt != "text/html" {
		t.Fatalf("GET /docs: Content-Type %q, want text/html", ctype)
	}
	scripts, spec := 0, false
	for _, m := range pageRef.FindAllStringSubmatch(string(body), -1) {
		attr, ref := m[1], m[2]+m[3]+m[4]
		r, err := url.Parse(ref)
		if err != nil {
			t.Errorf("/docs refers to %q, which is not a URL: %v", ref, err)
			continue
		}
		u := page.ResolveReference(r)
		if u.Scheme != page.Scheme || u.Host != page.Host {
			t.Errorf("/docs refers to %s on another host: %s", ref, u)
			continue
		}
		status, ctype, got := get(t, u.String())
		if status != http.StatusOK {
			t.Errorf("/docs refers to %s (%s), which answers %d", ref, u.Path, status)
			continue
		}
		switch {
		case attr == "src":
			scripts++
			if mt, _, _ := mime.ParseMediaType(ctype); mt != "text/javascript" || !bytes.Equal(got, api.RedocScript) {
				t.Errorf("script %s: Content-Type %q, %d bytes; want the embedded Redoc bundle", ref, ctype, len(got))
			}
		case attr == "spec-url":
			spec = true
			if !bytes.Equal(got, api.Spec) {
				t.Errorf("spec-url %s does not answer the published document", ref)
			}
		}
	}
	if scripts == 0 || !spec {
		t.Fatalf("/docs loads %d scripts (spec-url found: %v); want Redoc rendering /openapi.yaml:\n%s", scripts, spec, body)
	}
}

func get(t *testing.T, u string) (status int, contentType string, body []byte) {
	t.Helper()
	resp, err := http.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	body, err = io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), body
}
