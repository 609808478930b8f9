// Package config fills typed configuration structs from defaults, an optional YAML file and the
// environment, in that order of precedence (the environment wins).
//
// A field takes part when it has an `env` tag; nested structs are walked. Tags:
//
//	env:"ONSALE_HOLD_TTL"   the environment variable
//	yaml:"hold_ttl"         the key in the YAML file (flat: one level of keys)
//	default:"2m"            the value when neither source sets one
//	help:"..."              one line for people (README table, --print-config)
//	secret:"true"           masked when printed
//
// Supported field types: string, bool, int, int64, float64, time.Duration and []string
// (comma-separated in the environment, a list in YAML).
package config

import (
	"errors"
	"fmt"
	"io"
	"os"
	"reflect"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Field describes one setting, for documentation and printing.
type Field struct {
	Env     string
	YAML    string
	Default string
	Help    string
	Secret  bool
	Type    string
	value   reflect.Value
}

// Value renders the field's current value. A secret is masked; a secret URL keeps everything
// but its credentials (see RedactURL), so operators can still see where it points.
func (f Field) Value() string {
	s := render(f.value)
	if !f.Secret || s == "" {
		return s
	}
	if strings.Contains(s, "://") {
		return RedactURL(s)
	}
	return "****"
}

// Fields lists the settings of cfg (a pointer to a struct), in declaration order.
func Fields(cfg any) []Field {
	v := reflect.ValueOf(cfg)
	if v.Kind() != reflect.Pointer || v.Elem().Kind() != reflect.Struct {
		panic("config: Fields needs a pointer to a struct")
	}
	var out []Field
	walk(v.Elem(), &out)
	return out
}

func walk(v reflect.Value, out *[]Field) {
	t := v.Type()
	for i := 0; i < t.NumField(); i++ {
		sf := t.Field(i)
		fv := v.Field(i)
		if !sf.IsExported() {
			continue
		}
		env := sf.Tag.Get("env")
		if env == "" {
			if sf.Type.Kind() == reflect.Struct && sf.Type != reflect.TypeFor[time.Time]() {
				walk(fv, out)
			}
			continue
		}
		*out = append(*out, Field{
			Env:     env,
			YAML:    sf.Tag.Get("yaml"),
			Default: sf.Tag.Get("default"),
			Help:    sf.Tag.Get("help"),
			Secret:  sf.Tag.Get("secret") == "true",
			Type:    typeName(sf.Type),
			value:   fv,
		})
	}
}

// Error reports a setting that could not be used; it names the variable and what it accepts.
type Error struct {
	Env    string
	Value  string
	Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("%s: %s", e.Env, e.Reason)
	}
	return fmt.Sprintf("%s=%q: %s", e.Env, e.Value, e.Reason)
}

// Invalid reports a setting rejected by validation.
func Invalid(env, value, reason string) error {
	return &Error{Env: env, Value: value, Reason: reason}
}

// Load fills cfg from defaults, then the YAML file at path (if path is not empty), then the
// environment as seen through getenv. Every bad value is reported, not just the first.
func Load(cfg any, getenv func(string) string, path string) error {
	fields := Fields(cfg)
	var errs []error
	for _, f := range fields {
		if f.Default != "" {
			if err := set(f.value, f.Default); err != nil {
				panic(fmt.Sprintf("config: bad default for %s: %v", f.Env, err))
			}
		}
	}
	if path != "" {
		if err := loadYAML(fields, path); err != nil {
			errs = append(errs, err)
		}
	}
	for _, f := range fields {
		raw, ok := lookup(getenv, f.Env)
		if !ok {
			continue
		}
		if err := set(f.value, raw); err != nil {
			shown := raw
			if f.Secret {
				shown = "****"
			}
			errs = append(errs, &Error{Env: f.Env, Value: shown, Reason: err.Error()})
		}
	}
	return errors.Join(errs...)
}

func lookup(getenv func(string) string, name string) (string, bool) {
	v := getenv(name)
	return v, v != ""
}

func loadYAML(fields []Field, path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("config file: %w", err)
	}
	var doc map[string]yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return fmt.Errorf("config file %s: %w", path, err)
	}
	byKey := make(map[string]Field, len(fields))
	for _, f := range fields {
		byKey[f.YAML] = f
	}
	var errs []error
	for key, node := range doc {
		f, ok := byKey[key]
		if !ok || key == "" {
			errs = append(errs, fmt.Errorf("config file %s: unknown key %q", path, key))
			continue
		}
		var raw string
		if node.Kind == yaml.SequenceNode {
			var items []string
			if err := node.Decode(&items); err != nil {
				errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, key, err))
				continue
			}
			raw = strings.Join(items, ",")
		} else if err := node.Decode(&raw); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s: %w", path, key, err))
			continue
		}
		if err := set(f.value, raw); err != nil {
			errs = append(errs, fmt.Errorf("config file %s: %s (%s): %w", path, key, f.Env, err))
		}
	}
	return errors.Join(errs...)
}

func set(v reflect.Value, raw string) error {
	raw = strings.TrimSpace(raw)
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		d, err := time.ParseDuration(raw)
		if err != nil {
			return errors.New("want a duration such as 250ms, 30s or 2m")
		}
		v.SetInt(int64(d))
	case v.Kind() == reflect.String:
		v.SetString(raw)
	case v.Kind() == reflect.Bool:
		b, err := strconv.ParseBool(raw)
		if err != nil {
			return errors.New("want true or false")
		}
		v.SetBool(b)
	case v.Kind() == reflect.Int || v.Kind() == reflect.Int64:
		n, err := strconv.ParseInt(raw, 10, 64)
		if err != nil {
			return errors.New("want a whole number")
		}
		v.SetInt(n)
	case v.Kind() == reflect.Float64:
		f, err := strconv.ParseFloat(raw, 64)
		if err != nil {
			return errors.New("want a number such as 0.25")
		}
		v.SetFloat(f)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		var items []string
		for _, s := range strings.Split(raw, ",") {
			if s = strings.TrimSpace(s); s != "" {
				items = append(items, s)
			}
		}
		v.Set(reflect.ValueOf(items))
	default:
		return fmt.Errorf("unsupported type %s", v.Type())
	}
	return nil
}

func render(v reflect.Value) string {
	if !v.IsValid() {
		return ""
	}
	switch {
	case v.Type() == reflect.TypeFor[time.Duration]():
		return time.Duration(v.Int()).String()
	case v.Kind() == reflect.Slice:
		parts := make([]string, v.Len())
		for i := range parts {
			parts[i] = v.Index(i).String()
		}
		return strings.Join(parts, ",")
	default:
		return fmt.Sprint(v.Interface())
	}
}

func typeName(t reflect.Type) string {
	switch {
	case t == reflect.TypeFor[time.Duration]():
		return "duration"
	case t.Kind() == reflect.Slice:
		return "list"
	case t.Kind() == reflect.Int || t.Kind() == reflect.Int64:
		return "integer"
	case t.Kind() == reflect.Float64:
		return "number"
	default:
		return t.Kind().String()
	}
}

// Print writes the effective configuration as "NAME=value" lines, secrets masked.
func Print(w io.Writer, cfg any) error {
	for _, f := range Fields(cfg) {
		if _, err := fmt.Fprintf(w, "%s=%s\n", f.Env, f.Value()); err != nil {
			return err
		}
	}
	return nil
}
