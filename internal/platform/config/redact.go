package config

import (
	"net/url"
	"strings"
)

// mask stands for a hidden credential.
const mask = "****"

// RedactURL returns raw with its credentials masked, for log lines, error messages and
// --print-config: the user-info (a password, and a user name standing alone, since NATS and
// others take a bare token there) and the values of query parameters that look secret
// (password, token, key...). Scheme, host, port and path stay, so the value still says where it
// points. A comma-separated list of URLs (NATS takes one) is redacted URL by URL. A value that does
// not parse is masked by text, erring on the side of hiding too much.
//
//	nats://tok3n@nats:4222            → nats://****@nats:4222
//	redis://u:pw@cache:6379/0         → redis://u:****@cache:6379/0
//	postgres://db/x?password=pw       → postgres://db/x?password=****
func RedactURL(raw string) string {
	if raw == "" {
		return ""
	}
	// A list only when every item is a URL of its own: a raw comma inside a password must not
	// split the password into a "URL" that keeps half of it.
	if parts := strings.Split(raw, ","); len(parts) > 1 {
		list := true
		for _, p := range parts {
			list = list && strings.Contains(p, "://")
		}
		if list {
			for i, p := range parts {
				parts[i] = redactOne(p)
			}
			return strings.Join(parts, ",")
		}
	}
	return redactOne(raw)
}

func redactOne(raw string) string {
	u, err := url.Parse(raw)
	if err != nil || u.Scheme == "" || u.Opaque != "" || (u.Host == "" && u.User != nil) {
		return redactText(raw)
	}
	var userinfo string
	if u.User != nil {
		if _, ok := u.User.Password(); ok && u.User.Username() != "" {
			userinfo = url.User(u.User.Username()).String() + ":" + mask + "@"
		} else {
			userinfo = mask + "@"
		}
	}
	query := redactQuery(u.RawQuery)
	u.User, u.RawQuery, u.ForceQuery = nil, "", false
	s := u.String()
	if userinfo != "" {
		s = strings.Replace(s, "://", "://"+userinfo, 1)
	}
	if query != "" {
		// The fragment, if any, follows the query.
		if i := strings.IndexByte(s, '#'); i >= 0 {
			s = s[:i] + "?" + query + s[i:]
		} else {
			s += "?" + query
		}
	}
	return s
}

// redactText masks what could be credentials in a value url.Parse refuses: everything between
// the scheme and the last @, and secret-looking query values.
func redactText(raw string) string {
	prefix, rest := "", raw
	if i := strings.Index(raw, "://"); i >= 0 {
		prefix, rest = raw[:i+3], raw[i+3:]
	}
	if i := strings.LastIndexByte(rest, '@'); i >= 0 {
		rest = mask + rest[i:]
	}
	if i := strings.IndexByte(rest, '?'); i >= 0 {
		rest = rest[:i+1] + redactQuery(rest[i+1:])
	}
	return prefix + rest
}

// redactQuery masks the values of parameters whose name suggests a secret, keeping the others
// (sslmode=require is worth seeing) as they were written.
func redactQuery(q string) string {
	if q == "" {
		return ""
	}
	params := strings.Split(q, "&")
	for i, p := range params {
		k, _, hasValue := strings.Cut(p, "=")
		if hasValue && secretParam(k) {
			params[i] = k + "=" + mask
		}
	}
	return strings.Join(params, "&")
}

func secretParam(name string) bool {
	if n, err := url.QueryUnescape(name); err == nil {
		name = n
	}
	name = strings.ToLower(name)
	for _, s := range []string{"pass", "pwd", "secret", "token", "key", "auth", "credential", "signature"} {
		if strings.Contains(name, s) {
			return true
		}
	}
	return false
}

// RedactError returns err with every credential of raw (a URL it may quote: the whole URL, its
// password, a token given as its user, secret query values) masked in its message, for errors
// that libraries build from a connection URL. errors.Is and errors.As still see err's chain.
func RedactError(err error, raw string) error {
	if err == nil || raw == "" {
		return err
	}
	msg := err.Error()
	redacted := strings.ReplaceAll(msg, raw, RedactURL(raw))
	for _, s := range urlSecrets(raw) {
		redacted = strings.ReplaceAll(redacted, s, mask)
	}
	if redacted == msg {
		return err
	}
	return &redactedError{msg: redacted, err: err}
}

type redactedError struct {
	msg string
	err error
}

func (e *redactedError) Error() string { return e.msg }
func (e *redactedError) Unwrap() error { return e.err }

// urlSecrets lists the credentials in raw, as written and unescaped.
func urlSecrets(raw string) []string {
	var out []string
	add := func(s string) {
		if s == "" {
			return
		}
		out = append(out, s)
		if u, err := url.PathUnescape(s); err == nil && u != s && u != "" {
			out = append(out, u)
		}
	}
	for _, part := range strings.Split(raw, ",") {
		rest := part
		if i := strings.Index(rest, "://"); i >= 0 {
			rest = rest[i+3:]
		}
		if i := strings.LastIndexByte(rest, '@'); i >= 0 {
			userinfo := rest[:i]
			if user, pass, ok := strings.Cut(userinfo, ":"); ok {
				add(pass)
			} else {
				add(user)
			}
			rest = rest[i+1:]
		}
		if _, q, ok := strings.Cut(rest, "?"); ok {
			q, _, _ = strings.Cut(q, "#")
			for _, p := range strings.Split(q, "&") {
				if k, v, ok := strings.Cut(p, "="); ok && secretParam(k) {
					add(v)
				}
			}
		}
	}
	return out
}
