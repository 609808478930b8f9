package api

import _ "embed"

// DocsPage is the HTML page served at GET /docs: it renders the document at /openapi.yaml with
// Redoc, loading nothing but from the server that served it (RedocScript), so the reference
// works where the internet is out of reach.
//
//go:embed docs.html
var DocsPage []byte

// RedocScriptPath is where the server serves RedocScript; DocsPage refers to it relatively.
const RedocScriptPath = "/docs/redoc.standalone.js"

// RedocScript is Redoc's standalone bundle, vendored from the npm package redoc (version and
// checksum in redoc/README.md, licences beside it).
//
//go:embed redoc/redoc.standalone.js
var RedocScript []byte
