package apispec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"strconv"
	"unicode/utf8"

	"github.com/getkin/kin-openapi/openapi3"
)

// node is one schema compiled for request validation: the keywords the document uses, turned
// into plain fields once at start, so that a request is checked by one pass over its bytes with
// no reflection and no decoded copy of the body. compile refuses any keyword it does not
// implement, so the document cannot grow a rule the fast path would silently skip.
type node struct {
	types      typeSet
	allOf      []*node
	not        *node
	enum       []string // string values only
	minLength  int
	maxLength  int // -1: none
	pattern    *pattern
	format     openapi3.StringFormatValidator
	min, max   float64
	hasMin     bool
	hasMax     bool
	exclMin    bool
	exclMax    bool
	props      map[string]*node
	required   map[string]int // property → bit in a uint64
	nRequired  int
	additional *node // nil with allowAdditional: anything goes
	noExtra    bool  // additionalProperties: false
	minProps   int
	maxProps   int // -1: none
	items      *node
	minItems   int
	maxItems   int // -1: none
}

type typeSet uint8

const (
	tObject typeSet = 1 << iota
	tArray
	tString
	tNumber
	tInteger
	tBoolean
	tNull
	tAny typeSet = 0
)

// compileSchema compiles a resolved schema. seen guards against recursive schemas, which the
// fast path does not support.
func compileSchema(ref *openapi3.SchemaRef, seen map[*openapi3.Schema]bool) (*node, error) {
	if ref == nil || ref.Value == nil {
		return &node{maxLength: -1, maxProps: -1, maxItems: -1}, nil
	}
	s := ref.Value
	if seen[s] {
		return nil, fmt.Errorf("recursive schema %s", ref.Ref)
	}
	seen[s] = true
	defer delete(seen, s)
	if err := unsupported(s); err != nil {
		return nil, err
	}
	n := &node{minLength: int(s.MinLength), maxLength: -1, minProps: int(s.MinProps), maxProps: -1,
		minItems: int(s.MinItems), maxItems: -1}
	if s.Type != nil {
		for _, t := range s.Type.Slice() {
			switch t {
			case openapi3.TypeObject:
				n.types |= tObject
			case openapi3.TypeArray:
				n.types |= tArray
			case openapi3.TypeString:
				n.types |= tString
			case openapi3.TypeNumber:
				n.types |= tNumber
			case openapi3.TypeInteger:
				n.types |= tInteger
			case openapi3.TypeBoolean:
				n.types |= tBoolean
			case openapi3.TypeNull:
				n.types |= tNull
			default:
				return nil, fmt.Errorf("type %q", t)
			}
		}
	}
	for _, e := range s.Enum {
		v, ok := e.(string)
		if !ok {
			return nil, fmt.Errorf("enum value %v is not a string", e)
		}
		n.enum = append(n.enum, v)
	}
	if s.MaxLength != nil {
		n.maxLength = int(*s.MaxLength)
	}
	if s.Pattern != "" {
		re, err := compilePattern(s.Pattern)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", s.Pattern, err)
		}
		n.pattern = re
	}
	if s.Format != "" {
		// The same format validators kin-openapi applies; formats it does not know (uuid, uri)
		// are not checked there either.
		n.format = openapi3.SchemaStringFormats[s.Format]
	}
	if s.Min != nil {
		n.min, n.hasMin, n.exclMin = *s.Min, true, s.ExclusiveMin.IsTrue()
	}
	if s.Max != nil {
		n.max, n.hasMax, n.exclMax = *s.Max, true, s.ExclusiveMax.IsTrue()
	}
	if s.MaxProps != nil {
		n.maxProps = int(*s.MaxProps)
	}
	if s.MaxItems != nil {
		n.maxItems = int(*s.MaxItems)
	}
	if len(s.Properties) > 0 {
		n.props = make(map[string]*node, len(s.Properties))
		for name, p := range s.Properties {
			c, err := compileSchema(p, seen)
			if err != nil {
				return nil, fmt.Errorf("property %s: %w", name, err)
			}
			n.props[name] = c
		}
	}
	if len(s.Required) > 64 {
		return nil, fmt.Errorf("more than 64 required properties")
	}
	if len(s.Required) > 0 {
		n.required = make(map[string]int, len(s.Required))
		for i, name := range s.Required {
			n.required[name] = i
		}
		n.nRequired = len(s.Required)
	}
	if ap := s.AdditionalProperties; ap.Has != nil && !*ap.Has {
		n.noExtra = true
	} else if ap.Schema != nil {
		c, err := compileSchema(ap.Schema, seen)
		if err != nil {
			return nil, fmt.Errorf("additionalProperties: %w", err)
		}
		n.additional = c
	}
	if s.Items != nil {
		c, err := compileSchema(s.Items, seen)
		if err != nil {
			return nil, fmt.Errorf("items: %w", err)
		}
		n.items = c
	}
	for _, sub := range s.AllOf {
		c, err := compileSchema(sub, seen)
		if err != nil {
			return nil, fmt.Errorf("allOf: %w", err)
		}
		n.allOf = append(n.allOf, c)
	}
	if s.Not != nil {
		c, err := compileSchema(s.Not, seen)
		if err != nil {
			return nil, fmt.Errorf("not: %w", err)
		}
		n.not = c
	}
	return n, nil
}

// closed reports whether n refuses, at every level, an object member it does not name: a body
// it accepts then has no member a strict decoder would refuse as unknown.
func (n *node) closed() bool {
	if n.types == tAny && n.props == nil && n.items == nil && len(n.enum) == 0 && n.pattern == nil &&
		n.format == nil && len(n.allOf) == 0 {
		return false // a free-form value
	}
	if (n.types == tAny || n.types&tObject != 0) && !n.noExtra {
		return false
	}
	if n.types == tAny || n.types&tArray != 0 {
		if n.items == nil || !n.items.closed() {
			return false
		}
	}
	for _, p := range n.props {
		if !p.closed() {
			return false
		}
	}
	for _, a := range n.allOf {
		if !a.closed() {
			return false
		}
	}
	return true
}

// unsupported names the first keyword of s that the compiled validator does not implement.
func unsupported(s *openapi3.Schema) error {
	switch {
	case len(s.OneOf) > 0:
		return fmt.Errorf("oneOf is not supported")
	case len(s.AnyOf) > 0:
		return fmt.Errorf("anyOf is not supported")
	case s.Nullable:
		return fmt.Errorf("nullable is not supported")
	case s.ReadOnly:
		return fmt.Errorf("readOnly is not supported")
	case s.UniqueItems:
		return fmt.Errorf("uniqueItems is not supported")
	case s.MultipleOf != nil:
		return fmt.Errorf("multipleOf is not supported")
	case s.ExclusiveMin.Value != nil || s.ExclusiveMax.Value != nil:
		return fmt.Errorf("numeric exclusiveMinimum/exclusiveMaximum are not supported")
	case s.Discriminator != nil:
		return fmt.Errorf("discriminator is not supported")
	case s.Const != nil:
		return fmt.Errorf("const is not supported")
	case len(s.PatternProperties) > 0 || len(s.DependentRequired) > 0 || len(s.DependentSchemas) > 0 ||
		s.If != nil || s.Then != nil || s.Else != nil || s.PropertyNames != nil || len(s.PrefixItems) > 0 ||
		s.Contains != nil || s.UnevaluatedProperties.Schema != nil || s.UnevaluatedProperties.Has != nil ||
		s.UnevaluatedItems.Schema != nil || s.UnevaluatedItems.Has != nil:
		return fmt.Errorf("a JSON Schema 2020-12 keyword is not supported")
	}
	return nil
}

// valid reports whether the JSON value v (valid JSON, surrounding space allowed) satisfies n.
func (n *node) valid(v []byte) bool {
	v = bytes.TrimSpace(v)
	if len(v) == 0 {
		return false
	}
	for _, a := range n.allOf {
		if !a.valid(v) {
			return false
		}
	}
	if n.not != nil && n.not.valid(v) {
		return false
	}
	if len(n.enum) > 0 && v[0] != '"' {
		return false
	}
	switch v[0] {
	case '{':
		return n.permits(tObject) && n.object(v)
	case '[':
		return n.permits(tArray) && n.array(v)
	case '"':
		if !n.permits(tString) {
			return false
		}
		if raw := v[1 : len(v)-1]; bytes.IndexByte(raw, '\\') < 0 && n.format == nil {
			return n.validRaw(raw) // no escapes: checked in place, without a copy
		}
		s, ok := jsonString(v)
		return ok && n.validString(s)
	case 't', 'f':
		return n.permits(tBoolean)
	case 'n':
		return n.permits(tNull)
	}
	f, err := strconv.ParseFloat(string(v), 64)
	if err != nil {
		return false
	}
	return n.validNumber(f)
}

func (n *node) permits(t typeSet) bool {
	if n.types == tAny {
		return true
	}
	if t == tNumber {
		return n.types&(tNumber|tInteger) != 0
	}
	return n.types&t != 0
}

func (n *node) validNumber(f float64) bool {
	switch {
	case n.types == tAny:
	case n.types&tNumber != 0:
	case n.types&tInteger != 0:
		if math.IsInf(f, 0) || f != math.Trunc(f) {
			return false
		}
	default:
		return false
	}
	if n.hasMin && (f < n.min || n.exclMin && f == n.min) {
		return false
	}
	if n.hasMax && (f > n.max || n.exclMax && f == n.max) {
		return false
	}
	return true
}

// validString checks a string value's own rules (the type was checked by the caller).
func (n *node) validString(s string) bool {
	if len(n.enum) > 0 {
		found := false
		for _, e := range n.enum {
			if e == s {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if n.minLength > 0 || n.maxLength >= 0 {
		// Characters, as kin-openapi counts them (its UTF-16 surrogate check never fires on the
		// runes a Go string yields, so it counts code points).
		length := utf8.RuneCountInString(s)
		if length < n.minLength || n.maxLength >= 0 && length > n.maxLength {
			return false
		}
	}
	if n.pattern != nil && !n.pattern.MatchString(s) {
		return false
	}
	if n.format != nil && n.format.Validate(s) != nil {
		return false
	}
	return true
}

// validRaw is validString for the bytes of a string without escapes, for a node without format.
func (n *node) validRaw(s []byte) bool {
	if len(n.enum) > 0 {
		found := false
		for _, e := range n.enum {
			if e == string(s) {
				found = true
				break
			}
		}
		if !found {
			return false
		}
	}
	if n.minLength > 0 || n.maxLength >= 0 {
		length := utf8.RuneCount(s)
		if length < n.minLength || n.maxLength >= 0 && length > n.maxLength {
			return false
		}
	}
	return n.pattern == nil || n.pattern.Match(s)
}

func (n *node) object(v []byte) bool {
	var seen uint64
	count := 0
	ok := true
	members(v, func(rawKey []byte, val []byte) {
		if !ok {
			return
		}
		count++
		// Keys without escapes are looked up in place (no copy); others are decoded first.
		key := rawKey[1 : len(rawKey)-1]
		if bytes.IndexByte(key, '\\') >= 0 {
			k, _ := jsonString(rawKey)
			key = []byte(k)
		}
		if bit, req := n.required[string(key)]; req {
			seen |= 1 << bit
		}
		if p, known := n.props[string(key)]; known {
			ok = p.valid(val)
			return
		}
		switch {
		case n.noExtra:
			ok = false
		case n.additional != nil:
			ok = n.additional.valid(val)
		}
	})
	if !ok || count < n.minProps || n.maxProps >= 0 && count > n.maxProps {
		return false
	}
	return seen == (uint64(1)<<n.nRequired)-1
}

func (n *node) array(v []byte) bool {
	count := 0
	ok := true
	elements(v, func(val []byte) {
		count++
		if ok && n.items != nil {
			ok = n.items.valid(val)
		}
	})
	return ok && count >= n.minItems && (n.maxItems < 0 || count <= n.maxItems)
}

// The scanners below walk JSON already checked by json.Valid, so they need not handle errors.

// members calls fn for each member of the object v, with the key as its JSON string literal.
func members(v []byte, fn func(key, val []byte)) {
	i := skipSpace(v, 1)
	for i < len(v) && v[i] != '}' {
		kEnd := valueEnd(v, i)
		key := v[i:kEnd]
		i = skipSpace(v, kEnd)
		i = skipSpace(v, i+1) // the colon
		end := valueEnd(v, i)
		fn(key, v[i:end])
		i = skipSpace(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
}

// elements calls fn for each element of the array v.
func elements(v []byte, fn func(val []byte)) {
	i := skipSpace(v, 1)
	for i < len(v) && v[i] != ']' {
		end := valueEnd(v, i)
		fn(v[i:end])
		i = skipSpace(v, end)
		if i < len(v) && v[i] == ',' {
			i = skipSpace(v, i+1)
		}
	}
}

func skipSpace(v []byte, i int) int {
	for i < len(v) && (v[i] == ' ' || v[i] == '\t' || v[i] == '\n' || v[i] == '\r') {
		i++
	}
	return i
}

// valueEnd returns the index just past the value that starts at i.
func valueEnd(v []byte, i int) int {
	switch v[i] {
	case '"':
		for j := i + 1; j < len(v); j++ {
			switch v[j] {
			case '\\':
				j++
			case '"':
				return j + 1
			}
		}
		return len(v)
	case '{', '[':
		depth := 0
		for j := i; j < len(v); j++ {
			switch v[j] {
			case '"':
				j = valueEnd(v, j) - 1
			case '{', '[':
				depth++
			case '}', ']':
				depth--
				if depth == 0 {
					return j + 1
				}
			}
		}
		return len(v)
	}
	j := i
	for j < len(v) && v[j] != ',' && v[j] != '}' && v[j] != ']' && v[j] != ' ' && v[j] != '\t' && v[j] != '\n' && v[j] != '\r' {
		j++
	}
	return j
}

// jsonString decodes a JSON string literal; only one with escapes needs the full decoder.
func jsonString(v []byte) (string, bool) {
	raw := v[1 : len(v)-1]
	if bytes.IndexByte(raw, '\\') < 0 {
		return string(raw), true
	}
	var s string
	if err := json.Unmarshal(v, &s); err != nil {
		return "", false
	}
	return s, true
}
