package config

import (
	"fmt"
	"slices"
	"strings"
)

// Unknown is an environment variable that looks like a setting but is none: most often a typo,
// which would otherwise leave the setting at its default without a word.
type Unknown struct {
	Name       string // the variable as found in the environment
	Suggestion string // the closest setting's name, or empty when none is close
}

func (u Unknown) String() string {
	if u.Suggestion != "" {
		return fmt.Sprintf("unknown setting %s; did you mean %s?", u.Name, u.Suggestion)
	}
	return fmt.Sprintf("unknown setting %s (not a setting of this server; --print-config lists them all)", u.Name)
}

// UnknownEnv returns the variables of environ ("NAME=value" items, as os.Environ gives them)
// whose name starts with prefix, in any letter case, but that are not the env name of a field of
// cfg, in name order. Names for which ignore returns true are left out (ignore may be nil).
func UnknownEnv(cfg any, environ []string, prefix string, ignore func(name string) bool) []Unknown {
	fields := Fields(cfg)
	known := make(map[string]bool, len(fields))
	for _, f := range fields {
		known[f.Env] = true
	}
	var out []Unknown
	seen := map[string]bool{}
	for _, kv := range environ {
		name, _, _ := strings.Cut(kv, "=")
		upper := strings.ToUpper(name)
		if !strings.HasPrefix(upper, prefix) || known[name] || seen[name] || (ignore != nil && ignore(name)) {
			continue
		}
		seen[name] = true
		out = append(out, Unknown{Name: name, Suggestion: closest(upper, fields)})
	}
	slices.SortFunc(out, func(a, b Unknown) int { return strings.Compare(a.Name, b.Name) })
	return out
}

// closest returns the field name nearest to name by edit distance (a transposition counts as one
// edit) when it is near enough to be a typo of it: at most a third of the name's length, and at
// least 2 edits allowed.
func closest(name string, fields []Field) string {
	best, bestD := "", -1
	for _, f := range fields {
		if d := editDistance(name, f.Env); bestD < 0 || d < bestD {
			best, bestD = f.Env, d
		}
	}
	if bestD < 0 || bestD > max(2, len(name)/3) {
		return ""
	}
	return best
}

// editDistance is the optimal string alignment distance between a and b (bytes): insertions,
// deletions, substitutions and transpositions of adjacent bytes each cost one.
func editDistance(a, b string) int {
	prev2 := make([]int, len(b)+1)
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				cur[j] = min(cur[j], prev2[j-2]+1)
			}
		}
		prev2, prev, cur = prev, cur, prev2
	}
	return prev[len(b)]
}
