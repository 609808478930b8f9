package apispec

import (
	"math/rand/v2"
	"regexp"
	"testing"
)

// TestPatternAgreesWithRegexp: the class-run matcher gives regexp's answer for the patterns it
// takes over, on strings near and far from matching, and leaves other patterns to regexp.
func TestPatternAgreesWithRegexp(t *testing.T) {
	cases := []struct {
		expr string
		runs bool // compiled to class runs
	}{
		{"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$", true},
		{"^[A-Za-z0-9_-]{43}$", true},
		{"^[a-zA-Z0-9._-]+$", true},
		{"^[A-Z]{3}$", true},
		{"^[\\x21-\\x7E]+$", true},
		{"^[a-z]{2,}$", true},
		{"^[a-z]*$", true},
		{"^[^@\\s]+@[^@\\s]+\\.[^@\\s]+$", false}, // a class beyond ASCII, runs of varying length
		{"^[a-z]+-[0-9]{2}$", false},              // a varying run before another
		{"[a-z]{3}", false},                       // unanchored
		{"^(?i)[a-z]{3}$", false},                 // case folding
		{"^[é]{2}$", false},                       // not ASCII
	}
	alphabet := []string{"a", "f", "F", "z", "Z", "0", "9", "-", "_", ".", "@", " ", "\x00", "\x7f", "é", "€", "\xff", "A", "~", "!"}
	rng := rand.New(rand.NewPCG(1, 2))
	for _, c := range cases {
		p, err := compilePattern(c.expr)
		if err != nil {
			t.Fatalf("%s: %v", c.expr, err)
		}
		if (p.runs != nil) != c.runs {
			t.Errorf("%s: compiled to class runs = %v, want %v", c.expr, p.runs != nil, c.runs)
		}
		re := regexp.MustCompile(c.expr)
		inputs := []string{"", "e447c48a-0ab4-4b74-b6e2-4411a34ce81a", "E447C48A-0AB4-4B74-B6E2-4411A34CE81A",
			"e447c48a-0ab4-4b74-b6e2-4411a34ce81", "e447c48a-0ab4-4b74-b6e2-4411a34ce81aa", "e447c48a0ab4-4b74-b6e2-4411a34ce81a-",
			"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", "EUR", "EURO", "eur",
			"abc", "ab", "a", "x@y.z", "name.surname_1-2", "é", "aé", "ab-12"}
		for range 3000 {
			var s []byte
			for range rng.IntN(50) {
				s = append(s, alphabet[rng.IntN(len(alphabet))]...)
			}
			inputs = append(inputs, string(s))
		}
		for _, in := range inputs {
			if got, want := p.MatchString(in), re.MatchString(in); got != want {
				t.Errorf("%s on %q: MatchString = %v, regexp says %v", c.expr, in, got, want)
			}
			if got, want := p.Match([]byte(in)), re.MatchString(in); got != want {
				t.Errorf("%s on %q: Match = %v, regexp says %v", c.expr, in, got, want)
			}
		}
	}
}
