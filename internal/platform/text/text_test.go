package text

import "testing"

func TestControl(t *testing.T) {
	for _, tc := range []struct {
		in        string
		multiline bool
		want      rune
		at        int
		found     bool
	}{
		{"Hall 8", false, 0, 0, false},
		{"Zürich Café ☕", false, 0, 0, false},
		{"a\x00b", false, 0, 1, true},
		{"GA\x1b[2J", false, 0x1b, 2, true},
		{"line\nbreak", false, '\n', 4, true},
		{"line\nbreak\ttab\r\n", true, 0, 0, false},
		{"bell\a", true, '\a', 4, true},
		{"del\x7f", true, 0x7f, 3, true},
		{"c1\u0085", false, 0x85, 2, true},
		{"", false, 0, 0, false},
	} {
		r, at, ok := Control(tc.in, tc.multiline)
		if ok != tc.found || r != tc.want || at != tc.at {
			t.Errorf("Control(%q, %v) = %U, %d, %v; want %U, %d, %v", tc.in, tc.multiline, r, at, ok, tc.want, tc.at, tc.found)
		}
		if msg := Problem(tc.in, tc.multiline); (msg != "") != tc.found {
			t.Errorf("Problem(%q, %v) = %q", tc.in, tc.multiline, msg)
		}
	}
}
