package pgpool

import (
	"context"
	"net"
	"strings"
	"testing"
)

func closedAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// TestOpenErrorsHideCredentials: neither a database that cannot be reached nor a URL that cannot
// be parsed shows the password (or a user name standing alone, which may be a token) in the
// error, which is logged.
func TestOpenErrorsHideCredentials(t *testing.T) {
	t.Parallel()
	addr := closedAddr(t)
	for _, tc := range []struct{ url, secret string }{
		{"postgres://u:PgPw99@" + addr + "/x?sslmode=disable", "PgPw99"},
		{"postgres://u@" + addr + "/x?sslmode=disable&password=QyPw77", "QyPw77"},
		{"postgres://u:Pg%zzPw@" + addr + "/x", "zzPw"},
		{"postgres://u:PgPw99@" + addr + "/x?sslmode=nonsense", "PgPw99"},
		// A user name standing alone is masked like a token.
		{"postgres://Tok3nUser@" + addr + "/x?sslmode=disable", "Tok3nUser"},
	} {
		_, err := Open(context.Background(), tc.url, 2)
		if err == nil {
			t.Fatalf("%s: opened", tc.url)
		}
		if strings.Contains(err.Error(), tc.secret) {
			t.Errorf("the error shows %s: %v", tc.secret, err)
		}
	}
}
