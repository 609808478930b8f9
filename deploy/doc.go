// Package deploy holds the deployment files of onsale — Kubernetes manifests (k8s/, and
// k8s/split/ for the modules in tiers of their own), the docker compose setup for a laptop
// (compose.yaml with nginx/, its split profile routed by nginx/split.conf), the Grafana dashboard
// (grafana/) and the Prometheus configuration and alert rules (prometheus/) — and the test that
// validates them: every manifest decodes strictly into the official Kubernetes API types, every
// process's settings pass the server's own validation, the split tiers find and trust one another
// and every API operation is routed to a process that runs its module, and the dashboard and
// alerts query only metrics the server exports.
package deploy
