package api

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/onsale-dev/onsale/internal/platform/problem"
)

const (
	// repoRoot is the module's root, seen from this package's directory.
	repoRoot = ".."
	// problemPkg is the import path of the package whose New declares problems.
	problemPkg = "github.com/onsale-dev/onsale/internal/platform/problem"
	// problemsDoc is the catalogue's page for people browsing the repository.
	problemsDoc = "../docs/problems.md"
	// problemsTag is the tag of api/openapi.yaml whose description holds the catalogue.
	problemsTag = "problems"
)

// entry is one problem type: its code (the `type` URI less problem.TypeBase), the HTTP status it
// is answered with, and where it was found.
type entry struct {
	code    string
	status  int
	meaning string
	at      string
}

// TestProblemCatalogue fails when the server can answer a problem type that the catalogue (the
// spec's tag "problems" and docs/problems.md) lacks or lists with another status, and when the
// catalogue lists a type that no code declares.
func TestProblemCatalogue(t *testing.T) {
	t.Parallel()
	emitted := emittedProblems(t)
	if len(emitted) < 10 {
		t.Fatalf("found only %d problem types in the code; is the scan looking in the right place?", len(emitted))
	}
	doc, err := openapi3.NewLoader().LoadFromData(Spec)
	if err != nil {
		t.Fatal(err)
	}
	tag := doc.Tags.Get(problemsTag)
	if tag == nil {
		t.Fatalf("api/openapi.yaml has no tag %q holding the problem types", problemsTag)
	}
	inSpec := catalogue(t, "api/openapi.yaml, description of tag "+problemsTag, tag.Description)

	for code, e := range emitted {
		c, ok := inSpec[code]
		switch {
		case !ok:
			t.Errorf("%s: the server can answer %s%s (%d), which api/openapi.yaml's catalogue lacks", e.at, problem.TypeBase, code, e.status)
		case c.status != e.status:
			t.Errorf("%s: %s%s is answered with %d, but %s lists %d", e.at, problem.TypeBase, code, e.status, c.at, c.status)
		}
	}
	for code, c := range inSpec {
		if _, ok := emitted[code]; !ok {
			t.Errorf("%s: lists %s%s, which no code declares (problem.New)", c.at, problem.TypeBase, code)
		}
	}

	// Types named anywhere else in the document (examples, descriptions) must be catalogued too.
	for _, m := range regexp.MustCompile(regexp.QuoteMeta(problem.TypeBase)+`([A-Za-z0-9._~-]+)`).FindAllSubmatch(Spec, -1) {
		if _, ok := inSpec[string(m[1])]; !ok {
			t.Errorf("api/openapi.yaml names %s, which its catalogue lacks", m[0])
		}
	}

	page, err := os.ReadFile(problemsDoc)
	if err != nil {
		t.Fatalf("the catalogue page for people: %v", err)
	}
	inDoc := catalogue(t, "docs/problems.md", string(page))
	for code, c := range inSpec {
		d, ok := inDoc[code]
		switch {
		case !ok:
			t.Errorf("docs/problems.md lacks %s%s (%d), which api/openapi.yaml lists", problem.TypeBase, code, c.status)
		case d.status != c.status || d.meaning != c.meaning:
			t.Errorf("%s says %d %q, %s says %d %q", d.at, d.status, d.meaning, c.at, c.status, c.meaning)
		}
	}
	for code, d := range inDoc {
		if _, ok := inSpec[code]; !ok {
			t.Errorf("%s lists %s%s, which api/openapi.yaml does not", d.at, problem.TypeBase, code)
		}
	}
}

// emittedProblems finds every problem.New(problem.<Kind>, "<code>", "<title>") in the module's
// non-test Go files and returns the types they are answered as, by code. A problem of kind
// Internal is answered as the shared "internal" type, whatever its code (problem.NewDocument).
func emittedProblems(t *testing.T) map[string]entry {
	t.Helper()
	kinds := kindNames(t)
	out := map[string]entry{}
	fset := token.NewFileSet()
	err := filepath.WalkDir(repoRoot, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if path != repoRoot && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata" || d.Name() == "node_modules") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(fset, path, nil, parser.SkipObjectResolution)
		if err != nil {
			return err
		}
		// The name New is called by: problem.New (or an alias) elsewhere, plain New inside the
		// problem package itself.
		pkgName, inProblem := "", filepath.ToSlash(filepath.Dir(path)) == repoRoot+"/internal/platform/problem"
		for _, imp := range f.Imports {
			if p, _ := strconv.Unquote(imp.Path.Value); p == problemPkg {
				pkgName = "problem"
				if imp.Name != nil {
					pkgName = imp.Name.Name
				}
			}
		}
		if pkgName == "" && !inProblem {
			return nil
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok || !isProblemNew(call.Fun, pkgName, inProblem) {
				return true
			}
			at := fset.Position(call.Pos())
			at.Filename = strings.TrimPrefix(filepath.ToSlash(at.Filename), repoRoot+"/")
			e, err := declared(call, pkgName, inProblem, kinds)
			if err != nil {
				t.Errorf("%s: %v", at, err)
				return true
			}
			e.at = at.String()
			if prev, ok := out[e.code]; ok && prev.status != e.status {
				t.Errorf("%s: %s is declared with status %d here and %d at %s; a type has one status", e.at, e.code, e.status, prev.status, prev.at)
			}
			out[e.code] = e
			return true
		})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func isProblemNew(fun ast.Expr, pkgName string, inProblem bool) bool {
	switch f := fun.(type) {
	case *ast.SelectorExpr:
		x, ok := f.X.(*ast.Ident)
		return ok && pkgName != "" && x.Name == pkgName && f.Sel.Name == "New"
	case *ast.Ident:
		return inProblem && f.Name == "New"
	}
	return false
}

// declared reads one problem.New call; its kind and code must be spelled out so that this test
// can see them.
func declared(call *ast.CallExpr, pkgName string, inProblem bool, kinds map[string]problem.Kind) (entry, error) {
	if len(call.Args) != 3 {
		return entry{}, fmt.Errorf("problem.New with %d arguments", len(call.Args))
	}
	var kindName string
	switch k := call.Args[0].(type) {
	case *ast.SelectorExpr:
		if x, ok := k.X.(*ast.Ident); ok && x.Name == pkgName {
			kindName = k.Sel.Name
		}
	case *ast.Ident:
		if inProblem {
			kindName = k.Name
		}
	}
	kind, ok := kinds[kindName]
	if !ok {
		return entry{}, fmt.Errorf("problem.New's kind is not one of problem's Kind constants; spell it out (problem.Conflict) so the catalogue test can see it")
	}
	lit, ok := call.Args[1].(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return entry{}, fmt.Errorf("problem.New's code is not a string literal; spell it out so the catalogue test can see it")
	}
	code, err := strconv.Unquote(lit.Value)
	if err != nil {
		return entry{}, err
	}
	if kind == problem.Internal {
		// Shown to clients as the shared internal error, details hidden.
		return entry{code: problem.ErrInternal.Code, status: problem.Internal.Status()}, nil
	}
	return entry{code: code, status: kind.Status()}, nil
}

// kindNames maps the names of problem's Kind constants to their values, read from the const block
// that declares them with iota, so a kind added there is known here without a change.
func kindNames(t *testing.T) map[string]problem.Kind {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), filepath.Join(repoRoot, "internal", "platform", "problem", "problem.go"), nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	for _, d := range f.Decls {
		gd, ok := d.(*ast.GenDecl)
		if !ok || gd.Tok != token.CONST || len(gd.Specs) == 0 {
			continue
		}
		first := gd.Specs[0].(*ast.ValueSpec)
		if typ, ok := first.Type.(*ast.Ident); !ok || typ.Name != "Kind" {
			continue
		}
		if len(first.Values) != 1 || !isIota(first.Values[0]) {
			t.Fatalf("problem's Kind constants no longer start at iota; teach kindNames their values")
		}
		out := map[string]problem.Kind{}
		for i, s := range gd.Specs {
			vs := s.(*ast.ValueSpec)
			if i > 0 && (len(vs.Values) > 0 || vs.Type != nil) {
				t.Fatalf("problem's Kind constant %s has a value of its own; teach kindNames its value", vs.Names[0].Name)
			}
			for _, n := range vs.Names {
				out[n.Name] = problem.Kind(i)
			}
		}
		return out
	}
	t.Fatal("no const block of Kind in internal/platform/problem/problem.go")
	return nil
}

func isIota(e ast.Expr) bool {
	id, ok := e.(*ast.Ident)
	return ok && id.Name == "iota"
}

// catalogueRow is one row of the catalogue table: | `type URI` | status | meaning |.
var catalogueRow = regexp.MustCompile("^\\|\\s*`?" + regexp.QuoteMeta(problem.TypeBase) + "([^`|\\s]+)`?\\s*\\|\\s*([0-9]{3})\\s*\\|\\s*(.*?)\\s*\\|$")

// catalogue reads the table of problem types in text (markdown); every table row that names a
// type must be readable, and each type appears once.
func catalogue(t *testing.T, where, text string) map[string]entry {
	t.Helper()
	out := map[string]entry{}
	for i, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "|") || !strings.Contains(line, problem.TypeBase) {
			continue
		}
		at := fmt.Sprintf("%s, line %d", where, i+1)
		m := catalogueRow.FindStringSubmatch(line)
		if m == nil {
			t.Errorf("%s: a row that is not | `%s<code>` | status | meaning |: %s", at, problem.TypeBase, line)
			continue
		}
		status, _ := strconv.Atoi(m[2])
		if m[3] == "" {
			t.Errorf("%s: %s has no meaning", at, m[1])
		}
		if prev, ok := out[m[1]]; ok {
			t.Errorf("%s: %s is listed again (first at %s)", at, m[1], prev.at)
		}
		out[m[1]] = entry{code: m[1], status: status, meaning: m[3], at: at}
	}
	if len(out) == 0 {
		t.Errorf("%s: no table of problem types", where)
	}
	return out
}

// The catalogue test reads the real repository; make sure it would notice what it is for.
func TestProblemCatalogueNotices(t *testing.T) {
	t.Parallel()
	kinds := kindNames(t)
	if kinds["Conflict"] != problem.Conflict || kinds["Internal"] != problem.Internal || kinds["PreconditionFailed"] != problem.PreconditionFailed {
		t.Fatalf("kindNames read the Kind constants wrong: %v", kinds)
	}
	src := `package x
import p "github.com/onsale-dev/onsale/internal/platform/problem"
var (
	a = p.New(p.Conflict, "made-up", "Made up")
	b = p.New(p.Internal, "hidden", "Hidden")
	c = p.New(kind, "not-seen", "Not seen")
)`
	f, err := parser.ParseFile(token.NewFileSet(), "x.go", src, 0)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	var errs int
	ast.Inspect(f, func(n ast.Node) bool {
		if call, ok := n.(*ast.CallExpr); ok && isProblemNew(call.Fun, "p", false) {
			e, err := declared(call, "p", false, kinds)
			if err != nil {
				errs++
				return true
			}
			got = append(got, fmt.Sprintf("%s %d", e.code, e.status))
		}
		return true
	})
	if want := []string{"made-up 409", "internal 500"}; !slices.Equal(got, want) || errs != 1 {
		t.Fatalf("declared: got %v and %d refusals, want %v and 1 refusal (the kind it cannot read)", got, errs, want)
	}
	rows := catalogue(t, "sample", "| Type | Status | Meaning |\n| --- | --- | --- |\n| `"+problem.TypeBase+"made-up` | 409 | Made up. |\n")
	if e, ok := rows["made-up"]; !ok || e.status != 409 || e.meaning != "Made up." {
		t.Fatalf("catalogue read %v", rows)
	}
}
