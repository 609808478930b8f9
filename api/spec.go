// Package api holds the published OpenAPI contract of onsale, embedded so the server can serve it
// and validate requests against the very document integrators read.
package api

import _ "embed"

// Spec is the OpenAPI 3.1 document in YAML, exactly as it is served at GET /openapi.yaml.
//
//go:embed openapi.yaml
var Spec []byte
