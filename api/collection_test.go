package api

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"

	"github.com/onsale-dev/onsale/internal/platform/apispec"
)

// collectionDir holds the request collection people open in an HTTP client instead of typing.
const collectionDir = "../examples/http"

var (
	requestLine = regexp.MustCompile(`^(GET|POST|PUT|PATCH|DELETE|HEAD|OPTIONS|TRACE|CONNECT) +(\S+)( +HTTP/[0-9.]+)?$`)
	fileVar     = regexp.MustCompile(`^@([A-Za-z_][A-Za-z0-9_]*) *= *(.*)$`)
	varUse      = regexp.MustCompile(`\{\{ *([^}]*?) *\}\}`)
	namedReq    = regexp.MustCompile(`^(?:#|//) *@name +([A-Za-z_][A-Za-z0-9_]*)$`)
	pathParam   = regexp.MustCompile(`^\{[^{}]+\}$`)
	varSegment  = regexp.MustCompile(`^\{\{[^{}]+\}\}$`)
)

// request is one request of the collection: where it is, and its method and path template.
type request struct {
	at     string // file:line
	method string
	path   string // as written, without {{base}} and the query string
}

// key is the request's operation with its path parameters unnamed, so {{order_id}} in the
// collection meets {order_id} in the document.
func (r request) key() string { return r.method + " " + templateKey(r.path, varSegment) }

// templateKey replaces the path segments param matches with {}.
func templateKey(path string, param *regexp.Regexp) string {
	segs := strings.Split(path, "/")
	for i, s := range segs {
		if param.MatchString(s) {
			segs[i] = "{}"
		}
	}
	return strings.Join(segs, "/")
}

// parseCollection reads one .http file in the shape both VS Code's REST Client and JetBrains'
// HTTP Client read: file variables (@name = value), then requests separated by ### lines, each a
// request line, headers, a blank line and a body. It reports malformed requests, requests that do
// not start at {{base}}, and variables used without being defined in the file.
func parseCollection(t *testing.T, file string) []request {
	t.Helper()
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	name := filepath.Base(file)
	defined := map[string]bool{}
	var reqs []request
	type use struct {
		at, name string
	}
	var uses []use
	inRequest, sawRequest := false, false // inRequest: past the request line of the current block
	blockStart := 0
	endBlock := func() {
		if blockStart > 0 && !sawRequest {
			t.Errorf("%s:%d: a ### block with no request line", name, blockStart)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimRight(sc.Text(), " \t\r")
		at := fmt.Sprintf("%s:%d", name, n)
		if strings.HasPrefix(line, "###") {
			endBlock()
			inRequest, sawRequest, blockStart = false, false, n
			continue
		}
		if !inRequest {
			switch {
			case line == "":
			case namedReq.MatchString(line):
				defined[namedReq.FindStringSubmatch(line)[1]] = true
			case strings.HasPrefix(line, "#"), strings.HasPrefix(line, "//"):
			case fileVar.MatchString(line):
				m := fileVar.FindStringSubmatch(line)
				defined[m[1]] = true
				for _, u := range varUse.FindAllStringSubmatch(m[2], -1) {
					uses = append(uses, use{at, u[1]})
				}
			case requestLine.MatchString(line):
				m := requestLine.FindStringSubmatch(line)
				target, ok := strings.CutPrefix(m[2], "{{base}}")
				if !ok {
					t.Errorf("%s: %s does not start at {{base}}", at, m[2])
				}
				path, _, _ := strings.Cut(target, "?")
				reqs = append(reqs, request{at: at, method: m[1], path: path})
				inRequest, sawRequest = true, true
			default:
				t.Errorf("%s: want a request line (METHOD {{base}}/path), a comment or @name = value, got %q", at, line)
			}
		}
		if inRequest {
			for _, u := range varUse.FindAllStringSubmatch(line, -1) {
				uses = append(uses, use{at, u[1]})
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	endBlock()
	for _, u := range uses {
		root, _, _ := strings.Cut(u.name, ".") // otherRequest.response.body.$.id
		if !defined[root] {
			t.Errorf("%s: {{%s}} is not defined in %s (want @%s = … or a request named %s)", u.at, u.name, name, root, root)
		}
	}
	return reqs
}

// TestCollectionCoversSpec fails when an operation of the document has no request in
// examples/http, or when a request there is for an operation the document does not have: the
// collection people click through stays the API as published.
func TestCollectionCoversSpec(t *testing.T) {
	spec, err := apispec.Load(Spec)
	if err != nil {
		t.Fatal(err)
	}
	files, err := filepath.Glob(filepath.Join(collectionDir, "*.http"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no .http files in %s", collectionDir)
	}
	collected := map[string][]request{}
	for _, f := range files {
		for _, r := range parseCollection(t, f) {
			collected[r.key()] = append(collected[r.key()], r)
		}
	}

	documented := map[string]bool{}
	for _, op := range spec.Operations() {
		key := op.Method + " " + templateKey(op.Path, pathParam)
		documented[key] = true
		if len(collected[key]) == 0 {
			t.Errorf("%s %s (%s) has no request in %s", op.Method, op.Path, op.ID, collectionDir)
		}
	}
	var extra []string
	for key, reqs := range collected {
		if documented[key] {
			continue
		}
		for _, r := range reqs {
			extra = append(extra, fmt.Sprintf("%s: %s %s is not an operation of api/openapi.yaml", r.at, r.method, r.path))
		}
	}
	sort.Strings(extra)
	for _, e := range extra {
		t.Error(e)
	}
}
