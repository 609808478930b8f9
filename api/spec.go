// Package api holds the published OpenAPI contract of onsale, embedded so the server can serve it
// and validate requests against the very document integrators read.
package api

import _ "embed"

// Spec is the OpenAPI 3.1 document in YAML, exactly as it is served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte

// InternalSpec is the OpenAPI 3.1 document of the internal API, what onsale's processes ask of
// one another when modules run apart; it is served on the internal listener only.
//
//go:embed internal.yaml
var InternalSpec []byte
