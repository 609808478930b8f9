// Package deploy holds the deployment files of onsale — Kubernetes manifests (k8s/), the
// docker compose setup for a laptop (compose.yaml with nginx/), the Grafana dashboard (grafana/)
// and the Prometheus alert rules (prometheus/) — and the test that validates them: every manifest
// decodes strictly into the official Kubernetes API types, and the dashboard and alerts query only
// metrics the server exports.
package deploy
