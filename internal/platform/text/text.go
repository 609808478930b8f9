// Package text holds the rule for the text onsale stores and shows to people: Unicode without
// control characters. A NUL cannot be stored by PostgreSQL at all, and the other controls (an
// escape sequence in an event name, say) would reach terminals, CSV files and tickets as is.
package text

import "fmt"

// Control returns the first control character in s and its position (in bytes), or ok false when
// there is none. C0 controls (U+0000 to U+001F), DEL and C1 controls (U+0080 to U+009F) count;
// with multiline, tab, line feed and carriage return are allowed.
func Control(s string, multiline bool) (r rune, at int, ok bool) {
	for i, c := range s {
		switch {
		case multiline && (c == '\t' || c == '\n' || c == '\r'):
		case c < 0x20, c == 0x7f, c >= 0x80 && c <= 0x9f:
			return c, i, true
		}
	}
	return 0, 0, false
}

// Problem describes the first control character in s for a client ("must not contain control
// characters (U+0000 at 1)"), or returns "" when s has none.
func Problem(s string, multiline bool) string {
	r, at, ok := Control(s, multiline)
	if !ok {
		return ""
	}
	allowed := ""
	if multiline {
		allowed = " other than tab and line breaks"
	}
	return fmt.Sprintf("must not contain control characters%s (found U+%04X at byte %d)", allowed, r, at)
}
