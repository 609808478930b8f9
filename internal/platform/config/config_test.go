package config

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

type inner struct {
	Ratio float64  `env:"ONSALE_T_RATIO" yaml:"ratio" default:"0.5" help:"a fraction"`
	Tags  []string `env:"ONSALE_T_TAGS" yaml:"tags" help:"a list"`
}

type sample struct {
	Name    string        `env:"ONSALE_T_NAME" yaml:"name" default:"onsale" help:"a name"`
	On      bool          `env:"ONSALE_T_ON" yaml:"on" default:"true"`
	Count   int           `env:"ONSALE_T_COUNT" yaml:"count" default:"3"`
	Big     int64         `env:"ONSALE_T_BIG" yaml:"big" default:"9000000000"`
	Wait    time.Duration `env:"ONSALE_T_WAIT" yaml:"wait" default:"2m"`
	DBURL   string        `env:"ONSALE_T_DB_URL" yaml:"db_url" secret:"true"`
	Token   string        `env:"ONSALE_T_TOKEN" yaml:"token" secret:"true"`
	Ignored string        // no env tag: not a setting
	Inner   inner
}

func env(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "onsale.yaml")
	if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	var c sample
	if err := Load(&c, env(nil), ""); err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := sample{Name: "onsale", On: true, Count: 3, Big: 9_000_000_000, Wait: 2 * time.Minute, Inner: inner{Ratio: 0.5}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("defaults:\n got %+v\nwant %+v", c, want)
	}
}

func TestEveryTypeFromEnv(t *testing.T) {
	t.Parallel()
	var c sample
	err := Load(&c, env(map[string]string{
		"ONSALE_T_NAME":   "  box-office  ",
		"ONSALE_T_ON":     "false",
		"ONSALE_T_COUNT":  "-7",
		"ONSALE_T_BIG":    "12345678901",
		"ONSALE_T_WAIT":   "250ms",
		"ONSALE_T_RATIO":  "0.25",
		"ONSALE_T_TAGS":   " a, b ,,c ",
		"ONSALE_T_DB_URL": "postgres://u:p@db/x",
	}), "")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := sample{
		Name: "box-office", On: false, Count: -7, Big: 12345678901, Wait: 250 * time.Millisecond,
		DBURL: "postgres://u:p@db/x", Inner: inner{Ratio: 0.25, Tags: []string{"a", "b", "c"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("from env:\n got %+v\nwant %+v", c, want)
	}
}

func TestYAMLThenEnv(t *testing.T) {
	t.Parallel()
	path := writeFile(t, `
name: from-file
on: false
count: 10
big: 77
wait: 30s
ratio: 0.75
tags: [x, y]
token: file-token
`)
	var c sample
	err := Load(&c, env(map[string]string{
		"ONSALE_T_COUNT": "11", // the environment wins over the file
		"ONSALE_T_TAGS":  "z",
	}), path)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := sample{
		Name: "from-file", On: false, Count: 11, Big: 77, Wait: 30 * time.Second, Token: "file-token",
		Inner: inner{Ratio: 0.75, Tags: []string{"z"}},
	}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("file then env:\n got %+v\nwant %+v", c, want)
	}
}

func TestYAMLScalarList(t *testing.T) {
	t.Parallel()
	var c sample
	if err := Load(&c, env(nil), writeFile(t, "tags: \"a,b\"\n")); err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(c.Inner.Tags, []string{"a", "b"}) {
		t.Fatalf("tags = %q", c.Inner.Tags)
	}
}

func TestEnvErrorsNameVariableAndWhatItAccepts(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env, value, want string
	}{
		{"ONSALE_T_WAIT", "abc", `ONSALE_T_WAIT="abc": want a duration`},
		{"ONSALE_T_WAIT", "10", `ONSALE_T_WAIT="10": want a duration`}, // a unitless number is not a duration
		{"ONSALE_T_ON", "maybe", `ONSALE_T_ON="maybe": want true or false`},
		{"ONSALE_T_COUNT", "1.5", `ONSALE_T_COUNT="1.5": want a whole number`},
		{"ONSALE_T_BIG", "lots", `ONSALE_T_BIG="lots": want a whole number`},
		{"ONSALE_T_RATIO", "half", `ONSALE_T_RATIO="half": want a number`},
	}
	for _, tc := range cases {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			var c sample
			err := Load(&c, env(map[string]string{tc.env: tc.value}), "")
			if err == nil {
				t.Fatal("Load accepted a bad value")
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %q does not contain %q", err, tc.want)
			}
			var ce *Error
			if !errors.As(err, &ce) || ce.Env != tc.env {
				t.Fatalf("error %v is not a *config.Error for %s", err, tc.env)
			}
		})
	}
}

func TestSeveralBadValuesReportedTogether(t *testing.T) {
	t.Parallel()
	var c sample
	err := Load(&c, env(map[string]string{
		"ONSALE_T_WAIT":  "soon",
		"ONSALE_T_COUNT": "many",
		"ONSALE_T_ON":    "yes please",
		"ONSALE_T_NAME":  "fine",
	}), "")
	if err == nil {
		t.Fatal("Load accepted bad values")
	}
	for _, name := range []string{"ONSALE_T_WAIT", "ONSALE_T_COUNT", "ONSALE_T_ON"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
	if strings.Contains(err.Error(), "ONSALE_T_NAME") {
		t.Errorf("error names a good variable:\n%v", err)
	}
}

func TestSecretValueNotEchoedInError(t *testing.T) {
	t.Parallel()
	type withSecret struct {
		Key int `env:"ONSALE_T_KEY" secret:"true"`
	}
	var c withSecret
	err := Load(&c, env(map[string]string{"ONSALE_T_KEY": "hunter2"}), "")
	if err == nil {
		t.Fatal("Load accepted a bad value")
	}
	if strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "ONSALE_T_KEY") {
		t.Fatalf("error = %q; want the variable named and the secret hidden", err)
	}
}

func TestYAMLErrors(t *testing.T) {
	t.Parallel()
	t.Run("unknown key", func(t *testing.T) {
		t.Parallel()
		var c sample
		err := Load(&c, env(nil), writeFile(t, "name: x\ncolour: blue\n"))
		if err == nil || !strings.Contains(err.Error(), `unknown key "colour"`) {
			t.Fatalf("err = %v; want the unknown key named", err)
		}
	})
	t.Run("bad value names key and variable", func(t *testing.T) {
		t.Parallel()
		var c sample
		err := Load(&c, env(nil), writeFile(t, "wait: forever\ncount: x\n"))
		if err == nil {
			t.Fatal("Load accepted bad values")
		}
		for _, want := range []string{"wait (ONSALE_T_WAIT)", "want a duration", "count (ONSALE_T_COUNT)", "want a whole number"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error does not contain %q:\n%v", want, err)
			}
		}
	})
	t.Run("file and env errors together", func(t *testing.T) {
		t.Parallel()
		var c sample
		err := Load(&c, env(map[string]string{"ONSALE_T_RATIO": "x"}), writeFile(t, "bogus: 1\n"))
		if err == nil || !strings.Contains(err.Error(), "bogus") || !strings.Contains(err.Error(), "ONSALE_T_RATIO") {
			t.Fatalf("err = %v; want both problems", err)
		}
	})
	t.Run("missing file", func(t *testing.T) {
		t.Parallel()
		var c sample
		err := Load(&c, env(nil), filepath.Join(t.TempDir(), "nope.yaml"))
		if err == nil || !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("err = %v; want a not-exist error", err)
		}
	})
	t.Run("not yaml", func(t *testing.T) {
		t.Parallel()
		var c sample
		if err := Load(&c, env(nil), writeFile(t, "name: [unclosed\n")); err == nil {
			t.Fatal("Load accepted broken YAML")
		}
	})
}

func TestFields(t *testing.T) {
	t.Parallel()
	var c sample
	fields := Fields(&c)
	var names []string
	for _, f := range fields {
		names = append(names, f.Env)
	}
	want := []string{"ONSALE_T_NAME", "ONSALE_T_ON", "ONSALE_T_COUNT", "ONSALE_T_BIG", "ONSALE_T_WAIT",
		"ONSALE_T_DB_URL", "ONSALE_T_TOKEN", "ONSALE_T_RATIO", "ONSALE_T_TAGS"}
	if !reflect.DeepEqual(names, want) {
		t.Fatalf("fields = %v\nwant %v", names, want)
	}
	types := map[string]string{}
	for _, f := range fields {
		types[f.Env] = f.Type
	}
	for env, typ := range map[string]string{"ONSALE_T_NAME": "string", "ONSALE_T_ON": "bool", "ONSALE_T_COUNT": "integer",
		"ONSALE_T_BIG": "integer", "ONSALE_T_WAIT": "duration", "ONSALE_T_RATIO": "number", "ONSALE_T_TAGS": "list"} {
		if types[env] != typ {
			t.Errorf("%s type = %q, want %q", env, types[env], typ)
		}
	}
	if f := fields[0]; f.YAML != "name" || f.Default != "onsale" || f.Help != "a name" || f.Secret {
		t.Errorf("first field = %+v", f)
	}
}

func TestSecretMasking(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name, value, want string
		hidden            string
	}{
		{"url with password", "postgres://onsale:s3cr3t@db.internal:5432/onsale?sslmode=disable", "postgres://onsale:****@db.internal:5432/onsale?sslmode=disable", "s3cr3t"},
		{"redis url with password only", "redis://:p4ss@cache:6379/0", "redis://****@cache:6379/0", "p4ss"},
		{"url with a bare token as user", "nats://tok3n@nats:4222", "nats://****@nats:4222", "tok3n"},
		{"url without credentials", "nats://nats:4222", "nats://nats:4222", ""},
		{"url with secret in query", "redis://cache:6379/0?password=q1", "redis://cache:6379/0?password=****", "q1"},
		{"not a url", "sk_live_abcdef", "****", "sk_live_abcdef"},
		{"empty", "", "", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			c := sample{DBURL: tc.value}
			var f Field
			for _, x := range Fields(&c) {
				if x.Env == "ONSALE_T_DB_URL" {
					f = x
				}
			}
			if !f.Secret {
				t.Fatal("ONSALE_T_DB_URL not marked secret")
			}
			got := f.Value()
			if got != tc.want {
				t.Errorf("Value() = %q, want %q", got, tc.want)
			}
			if tc.hidden != "" && strings.Contains(got, tc.hidden) {
				t.Errorf("Value() = %q shows the secret", got)
			}
		})
	}
}

func TestPrint(t *testing.T) {
	t.Parallel()
	var c sample
	err := Load(&c, env(map[string]string{
		"ONSALE_T_DB_URL": "postgres://onsale:s3cr3t@db:5432/onsale",
		"ONSALE_T_TOKEN":  "tok-123456",
		"ONSALE_T_TAGS":   "a,b",
	}), "")
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := Print(&buf, &c); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, line := range []string{
		"ONSALE_T_NAME=onsale\n",
		"ONSALE_T_ON=true\n",
		"ONSALE_T_COUNT=3\n",
		"ONSALE_T_BIG=9000000000\n",
		"ONSALE_T_WAIT=2m0s\n",
		"ONSALE_T_DB_URL=postgres://onsale:****@db:5432/onsale\n",
		"ONSALE_T_TOKEN=****\n",
		"ONSALE_T_RATIO=0.5\n",
		"ONSALE_T_TAGS=a,b\n",
	} {
		if !strings.Contains(out, line) {
			t.Errorf("output lacks %q:\n%s", line, out)
		}
	}
	for _, secret := range []string{"s3cr3t", "tok-123456"} {
		if strings.Contains(out, secret) {
			t.Errorf("output shows secret %q:\n%s", secret, out)
		}
	}
	if n := strings.Count(out, "\n"); n != 9 {
		t.Errorf("printed %d lines, want 9:\n%s", n, out)
	}
}

func TestInvalid(t *testing.T) {
	t.Parallel()
	err := Invalid("ONSALE_T_X", "7", "want 1 to 5")
	if err.Error() != `ONSALE_T_X="7": want 1 to 5` {
		t.Errorf("Invalid = %q", err)
	}
	if got := Invalid("ONSALE_T_X", "", "want a path").Error(); got != "ONSALE_T_X: want a path" {
		t.Errorf("Invalid without value = %q", got)
	}
}

func TestRedactURL(t *testing.T) {
	t.Parallel()
	cases := []struct {
		in, want string
		hidden   []string
	}{
		{"", "", nil},
		{"nats://127.0.0.1:4222", "nats://127.0.0.1:4222", nil},
		{"nats://tok3n@127.0.0.1:1", "nats://****@127.0.0.1:1", []string{"tok3n"}},
		{"nats://user:S3cretPw@127.0.0.1:1", "nats://user:****@127.0.0.1:1", []string{"S3cretPw"}},
		{"redis://u:R3disPw@127.0.0.1:1/0", "redis://u:****@127.0.0.1:1/0", []string{"R3disPw"}},
		{"redis://:R3disPw@cache:6379/0", "redis://****@cache:6379/0", []string{"R3disPw"}},
		{"postgres://u:PgPw99@127.0.0.1:1/x?sslmode=disable", "postgres://u:****@127.0.0.1:1/x?sslmode=disable", []string{"PgPw99"}},
		{"postgres://db/x?sslmode=require&password=Qp1&sslpassword=Qp2", "postgres://db/x?sslmode=require&password=****&sslpassword=****", []string{"Qp1", "Qp2"}},
		{"http://acct:Pr0vPw@127.0.0.1:1", "http://acct:****@127.0.0.1:1", []string{"Pr0vPw"}},
		{"https://otel:OtlpPw@collector:4318/v1/traces#x", "https://otel:****@collector:4318/v1/traces#x", []string{"OtlpPw"}},
		{"https://collector/v1/traces?api_key=K9&x=1", "https://collector/v1/traces?api_key=****&x=1", []string{"K9"}},
		// A list of NATS servers: each is redacted.
		{"nats://a:Pa1@n1:4222,nats://b:Pb2@n2:4222", "nats://a:****@n1:4222,nats://b:****@n2:4222", []string{"Pa1", "Pb2"}},
		// A raw @ and comma in the password; an unparseable escape (masked by text).
		{"postgres://u:p@ss,w0rd@db:5432/x", "postgres://u:****@db:5432/x", []string{"p@ss", "w0rd"}},
		{"redis://u:Bad%zzPw@cache:6379", "redis://****@cache:6379", []string{"Bad", "zzPw"}},
	}
	for _, tc := range cases {
		got := RedactURL(tc.in)
		if got != tc.want {
			t.Errorf("RedactURL(%q) = %q, want %q", tc.in, got, tc.want)
		}
		for _, h := range tc.hidden {
			if strings.Contains(got, h) {
				t.Errorf("RedactURL(%q) = %q shows %q", tc.in, got, h)
			}
		}
	}
}

func TestUnknownEnv(t *testing.T) {
	t.Parallel()
	environ := []string{
		"PATH=/usr/bin",
		"ONSALE_T_NAME=known",
		"ONSALE_T_NAEM=transposed",
		"ONSALE_TCOUNT=3",
		"onsale_t_wait=5s",
		"ONSALE_T_SOMETHING_ELSE=1",
		"ONSALE_T_SOMETHING_ELSE=twice",
		"ONSALE_TEST_REDIS_URL=redis://x",
		"ONSALE_TAGS",
		"ONSALE_NOTHING_LIKE_IT=1",
	}
	ignore := func(name string) bool { return strings.HasPrefix(name, "ONSALE_TEST_") }
	got := UnknownEnv(&sample{}, environ, "ONSALE_", ignore)
	want := []Unknown{
		{Name: "ONSALE_NOTHING_LIKE_IT", Suggestion: ""},
		{Name: "ONSALE_TAGS", Suggestion: "ONSALE_T_TAGS"},
		{Name: "ONSALE_TCOUNT", Suggestion: "ONSALE_T_COUNT"},
		{Name: "ONSALE_T_NAEM", Suggestion: "ONSALE_T_NAME"},
		{Name: "ONSALE_T_SOMETHING_ELSE", Suggestion: ""},
		{Name: "onsale_t_wait", Suggestion: "ONSALE_T_WAIT"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("UnknownEnv:\n got %+v\nwant %+v", got, want)
	}
	if s := got[2].String(); s != "unknown setting ONSALE_TCOUNT; did you mean ONSALE_T_COUNT?" {
		t.Errorf("String() = %q", s)
	}
	if s := got[4].String(); !strings.Contains(s, "ONSALE_T_SOMETHING_ELSE") || strings.Contains(s, "did you mean") {
		t.Errorf("String() without a suggestion = %q", s)
	}
	if got := UnknownEnv(&sample{}, []string{"ONSALE_T_NAME=x", "HOME=/"}, "ONSALE_", nil); len(got) != 0 {
		t.Errorf("known settings reported: %+v", got)
	}
}

func TestEditDistance(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"", "abc", 3}, {"HOLD_TTL", "HOLD_TTL", 0}, {"HOLDTTL", "HOLD_TTL", 1},
		{"HOLD_TLT", "HOLD_TTL", 1}, {"kitten", "sitting", 3}, {"REDIS_ULR", "REDIS_URL", 1},
	} {
		if got := editDistance(tc.a, tc.b); got != tc.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tc.a, tc.b, got, tc.want)
		}
	}
}

func TestRedactError(t *testing.T) {
	t.Parallel()
	base := errors.New("dial tcp 127.0.0.1:1: connection refused")
	raw := "nats://user:S3cretPw@127.0.0.1:1"
	wrapped := fmt.Errorf("connect %s (password S3cretPw, escaped S3cret%%50w): %w", raw, base)
	got := RedactError(wrapped, raw)
	if strings.Contains(got.Error(), "S3cretPw") {
		t.Errorf("RedactError = %q shows the password", got)
	}
	if !strings.Contains(got.Error(), "nats://user:****@127.0.0.1:1") || !errors.Is(got, base) {
		t.Errorf("RedactError = %q lost the server or the chain", got)
	}
	// A token given as the user, escaped in the URL; a secret query value.
	raw = "nats://t%40k3n@h:4222,nats://h2:4222?token=Q9q9"
	got = RedactError(fmt.Errorf("bad token t@k3n or t%%40k3n, or Q9q9"), raw)
	for _, s := range []string{"t@k3n", "t%40k3n", "Q9q9"} {
		if strings.Contains(got.Error(), s) {
			t.Errorf("RedactError = %q shows %q", got, s)
		}
	}
	if err := errors.New("nothing secret"); RedactError(err, raw) != err {
		t.Error("an error without credentials was replaced")
	}
	if RedactError(nil, raw) != nil {
		t.Error("nil became an error")
	}
}
