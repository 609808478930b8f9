package deploy

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	k8sjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/onsale-dev/onsale/internal/app"
	"github.com/onsale-dev/onsale/internal/platform/config"
)

// ---- what the server is (facts the manifests must agree with) ----

const (
	defaultDrainDelay      = 5 * time.Second  // ONSALE_DRAIN_DELAY's default
	defaultShutdownTimeout = 25 * time.Second // ONSALE_SHUTDOWN_TIMEOUT's default
	defaultHTTPAddr        = ":8080"          // ONSALE_HTTP_ADDR's default
	imageUID               = 65532            // distroless nonroot, as in the Dockerfile
)

// requiredInProduction are the settings the server refuses to start without when
// ONSALE_ENV=production with every module in the process (internal/app/config.go), besides
// ONSALE_ENV itself.
var requiredInProduction = []string{
	"ONSALE_REDIS_URL", "ONSALE_DATABASE_URL", "ONSALE_NATS_URL", "ONSALE_JWT_KEYS_FILE", "ONSALE_TICKET_KEYS_FILE",
}

// connectionURLs may carry passwords: they must come from a Secret (the last two when set).
var connectionURLs = []string{"ONSALE_REDIS_URL", "ONSALE_DATABASE_URL", "ONSALE_NATS_URL", "ONSALE_MIGRATE_DATABASE_URL", "ONSALE_DATABASE_READ_URL"}

// exportedMetrics are the series names the server's /metrics serves (OpenTelemetry's Prometheus
// exporter plus the Go and process collectors), and target_info.
var exportedMetrics = set(
	"http_server_request_duration_seconds_bucket", "http_server_request_duration_seconds_sum", "http_server_request_duration_seconds_count",
	"onsale_http_requests_total", "onsale_http_errors_total", "onsale_http_in_flight", "onsale_http_shed_total",
	"onsale_auth_logins_total",
	"onsale_inventory_holds_created_total", "onsale_inventory_holds_rejected_total",
	"onsale_inventory_holds_released_total", "onsale_inventory_holds_expired_total",
	"onsale_inventory_cache_hits_total", "onsale_inventory_cache_misses_total",
	"onsale_inventory_commits_total",
	"onsale_inventory_commit_batch_size_bucket", "onsale_inventory_commit_batch_size_sum", "onsale_inventory_commit_batch_size_count",
	"onsale_payment_orders_created_total", "onsale_payment_orders_total", "onsale_payment_breaker_state",
	"onsale_payment_queue_pending", "onsale_payment_queue_ack_pending", "onsale_payment_outbox_backlog",
	"onsale_payment_dead_lettered_total",
	"onsale_payment_processing_duration_seconds_bucket", "onsale_payment_processing_duration_seconds_sum",
	"onsale_payment_processing_duration_seconds_count",
	"target_info",
	// Go collector.
	"go_gc_duration_seconds", "go_gc_duration_seconds_count", "go_gc_duration_seconds_sum", "go_gc_gogc_percent",
	"go_gc_gomemlimit_bytes", "go_goroutines", "go_info", "go_memstats_alloc_bytes", "go_memstats_alloc_bytes_total",
	"go_memstats_buck_hash_sys_bytes", "go_memstats_frees_total", "go_memstats_gc_sys_bytes", "go_memstats_heap_alloc_bytes",
	"go_memstats_heap_idle_bytes", "go_memstats_heap_inuse_bytes", "go_memstats_heap_objects", "go_memstats_heap_released_bytes",
	"go_memstats_heap_sys_bytes", "go_memstats_last_gc_time_seconds", "go_memstats_mallocs_total", "go_memstats_mcache_inuse_bytes",
	"go_memstats_mcache_sys_bytes", "go_memstats_mspan_inuse_bytes", "go_memstats_mspan_sys_bytes", "go_memstats_next_gc_bytes",
	"go_memstats_other_sys_bytes", "go_memstats_stack_inuse_bytes", "go_memstats_stack_sys_bytes", "go_memstats_sys_bytes",
	"go_sched_gomaxprocs_threads", "go_threads",
	// Process collector.
	"process_cpu_seconds_total", "process_max_fds", "process_network_receive_bytes_total", "process_network_transmit_bytes_total",
	"process_open_fds", "process_resident_memory_bytes", "process_start_time_seconds", "process_virtual_memory_bytes",
	"process_virtual_memory_max_bytes",
)

// prometheusMetrics are the series Prometheus makes itself for every target it scrapes.
var prometheusMetrics = set("up", "scrape_duration_seconds", "scrape_samples_scraped")

// knownLabels are the label names a query may filter or group by: the server's own, the OTel
// scope and resource labels, and what Prometheus adds (job, instance) or histograms have (le).
var knownLabels = set(
	"http_route", "http_request_method", "http_response_status_code", "result", "reason", "cache", "status",
	"otel_scope_name", "otel_scope_version", "otel_scope_schema_url", "service_name", "service_version",
	"job", "instance", "le", "quantile", "__name__",
)

func set(names ...string) map[string]bool {
	m := make(map[string]bool, len(names))
	for _, n := range names {
		m[n] = true
	}
	return m
}

// ---- Kubernetes manifests ----

// manifests are the decoded documents of one set of manifests: deploy/k8s (the all-in-one
// Deployment) or deploy/k8s/split (a tier per module).
type manifests struct {
	deployments     []*appsv1.Deployment
	services        []*corev1.Service
	pdbs            []*policyv1.PodDisruptionBudget
	hpas            []*autoscalingv2.HorizontalPodAutoscaler
	configMaps      []*corev1.ConfigMap
	secrets         []*corev1.Secret
	serviceAccounts []*corev1.ServiceAccount
	networkPolicies []*networkingv1.NetworkPolicy
	ingresses       []*networkingv1.Ingress
}

// newObject returns the official API type for an apiVersion and kind; anything else is refused.
func newObject(apiVersion, kind string) (any, error) {
	switch apiVersion + " " + kind {
	case "apps/v1 Deployment":
		return &appsv1.Deployment{}, nil
	case "v1 Service":
		return &corev1.Service{}, nil
	case "policy/v1 PodDisruptionBudget":
		return &policyv1.PodDisruptionBudget{}, nil
	case "autoscaling/v2 HorizontalPodAutoscaler":
		return &autoscalingv2.HorizontalPodAutoscaler{}, nil
	case "v1 ConfigMap":
		return &corev1.ConfigMap{}, nil
	case "v1 Secret":
		return &corev1.Secret{}, nil
	case "v1 ServiceAccount":
		return &corev1.ServiceAccount{}, nil
	case "networking.k8s.io/v1 NetworkPolicy":
		return &networkingv1.NetworkPolicy{}, nil
	case "networking.k8s.io/v1 Ingress":
		return &networkingv1.Ingress{}, nil
	}
	return nil, fmt.Errorf("unexpected kind %q of apiVersion %q", kind, apiVersion)
}

// decodeManifest decodes one YAML document strictly: unknown fields, duplicate fields and (as the
// API server does) field names in the wrong case are errors.
func decodeManifest(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	if tm.APIVersion == "" || tm.Kind == "" {
		return nil, errors.New("apiVersion and kind are required")
	}
	obj, err := newObject(tm.APIVersion, tm.Kind)
	if err != nil {
		return nil, err
	}
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, err
	}
	// encoding/json (under sigs.k8s.io/yaml) matches field names case-insensitively; the API
	// server does not. Decode again the way it does.
	js, err := yaml.YAMLToJSONStrict(doc)
	if err != nil {
		return nil, err
	}
	again, _ := newObject(tm.APIVersion, tm.Kind)
	strictErrs, err := k8sjson.UnmarshalStrict(js, again, k8sjson.DisallowDuplicateFields, k8sjson.DisallowUnknownFields)
	if err != nil {
		return nil, err
	}
	if len(strictErrs) > 0 {
		return nil, errors.Join(strictErrs...)
	}
	return obj, nil
}

// splitDocuments splits a YAML stream at its "---" lines, dropping documents that hold nothing
// but comments.
func splitDocuments(data []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	flush := func() {
		var v any
		if err := yamlv3.Unmarshal(cur.Bytes(), &v); err != nil || v != nil {
			docs = append(docs, bytes.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimRight(line, " \t") == "---" {
			flush()
			continue
		}
		cur.WriteString(line)
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

// manifestFiles lists the manifests of one directory, not of its subdirectories (as `kubectl
// apply -f dir` does): *.yaml, *.yml and the *.yaml.example templates (which kubectl skips, but
// which must decode all the same).
func manifestFiles(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() && (strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml") || strings.HasSuffix(name, ".yaml.example")) {
			files = append(files, filepath.Join(dir, name))
		}
	}
	if len(files) == 0 {
		t.Fatalf("no manifests in deploy/%s", dir)
	}
	sort.Strings(files)
	return files
}

// loadManifests decodes deploy/k8s: the all-in-one deployment.
func loadManifests(t *testing.T) *manifests {
	t.Helper()
	return loadManifestFiles(t, manifestFiles(t, "k8s"))
}

// loadSplitManifests decodes deploy/k8s/split, with the Secret templates of deploy/k8s whose
// Secrets the split tiers share (onsale-connections, onsale-keys).
func loadSplitManifests(t *testing.T) *manifests {
	t.Helper()
	return loadManifestFiles(t, append(manifestFiles(t, "k8s/split"), "k8s/secret.yaml.example"))
}

func loadManifestFiles(t *testing.T, files []string) *manifests {
	t.Helper()
	m := &manifests{}
	for _, path := range files {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitDocuments(data) {
			obj, err := decodeManifest(doc)
			if err != nil {
				t.Errorf("%s, document %d: %v", path, i+1, err)
				continue
			}
			switch o := obj.(type) {
			case *appsv1.Deployment:
				m.deployments = append(m.deployments, o)
			case *corev1.Service:
				m.services = append(m.services, o)
			case *policyv1.PodDisruptionBudget:
				m.pdbs = append(m.pdbs, o)
			case *autoscalingv2.HorizontalPodAutoscaler:
				m.hpas = append(m.hpas, o)
			case *corev1.ConfigMap:
				m.configMaps = append(m.configMaps, o)
			case *corev1.Secret:
				m.secrets = append(m.secrets, o)
			case *corev1.ServiceAccount:
				m.serviceAccounts = append(m.serviceAccounts, o)
			case *networkingv1.NetworkPolicy:
				m.networkPolicies = append(m.networkPolicies, o)
			case *networkingv1.Ingress:
				m.ingresses = append(m.ingresses, o)
			}
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	for _, names := range [][]string{
		namesOf(m.deployments), namesOf(m.services), namesOf(m.pdbs), namesOf(m.hpas),
		namesOf(m.configMaps), namesOf(m.secrets), namesOf(m.serviceAccounts),
		namesOf(m.networkPolicies), namesOf(m.ingresses),
	} {
		for i := 1; i < len(names); i++ {
			if slices.Contains(names[:i], names[i]) {
				t.Errorf("two manifests of one kind are named %q", names[i])
			}
		}
	}
	for _, o := range allObjects(m) {
		if o.GetNamespace() != "" {
			t.Errorf("%s has namespace %q: the manifests must be namespace-agnostic", o.GetName(), o.GetNamespace())
		}
	}
	return m
}

func namesOf[T metav1.Object](objs []T) []string {
	out := make([]string, len(objs))
	for i, o := range objs {
		out[i] = o.GetName()
	}
	return out
}

func allObjects(m *manifests) []metav1.Object {
	var out []metav1.Object
	for _, o := range m.deployments {
		out = append(out, o)
	}
	for _, o := range m.services {
		out = append(out, o)
	}
	for _, o := range m.pdbs {
		out = append(out, o)
	}
	for _, o := range m.hpas {
		out = append(out, o)
	}
	for _, o := range m.configMaps {
		out = append(out, o)
	}
	for _, o := range m.secrets {
		out = append(out, o)
	}
	for _, o := range m.serviceAccounts {
		out = append(out, o)
	}
	for _, o := range m.networkPolicies {
		out = append(out, o)
	}
	for _, o := range m.ingresses {
		out = append(out, o)
	}
	return out
}

func (m *manifests) configMap(name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name {
			return c
		}
	}
	return nil
}

func (m *manifests) secret(name string) *corev1.Secret {
	for _, s := range m.secrets {
		if s.Name == name {
			return s
		}
	}
	return nil
}

func secretKeys(s *corev1.Secret) map[string]bool {
	keys := map[string]bool{}
	for k := range s.Data {
		keys[k] = true
	}
	for k := range s.StringData {
		keys[k] = true
	}
	return keys
}

// theDeployment returns the onsale Deployment and its server container (the one with the port
// named http).
func (m *manifests) theDeployment(t *testing.T) (*appsv1.Deployment, *corev1.Container) {
	t.Helper()
	if len(m.deployments) != 1 {
		t.Fatalf("want exactly one Deployment, found %d", len(m.deployments))
	}
	d := m.deployments[0]
	for i := range d.Spec.Template.Spec.Containers {
		c := &d.Spec.Template.Spec.Containers[i]
		for _, p := range c.Ports {
			if p.Name == "http" {
				return d, c
			}
		}
	}
	t.Fatalf("Deployment %s has no container with a port named http", d.Name)
	return nil, nil
}

// envValue is one environment variable as the container will see it.
type envValue struct {
	value      string // empty when it comes from a field or resource reference
	fromSecret bool
	source     string
}

// containerEnv resolves a container's environment from envFrom and env, checking that every
// ConfigMap, Secret and key referred to exists in the manifests.
func containerEnv(t *testing.T, m *manifests, c *corev1.Container) map[string]envValue {
	t.Helper()
	env := map[string]envValue{}
	for _, ef := range c.EnvFrom {
		switch {
		case ef.ConfigMapRef != nil:
			cm := m.configMap(ef.ConfigMapRef.Name)
			if cm == nil {
				t.Errorf("envFrom refers to ConfigMap %q, which is not in deploy/k8s", ef.ConfigMapRef.Name)
				continue
			}
			for k, v := range cm.Data {
				env[ef.Prefix+k] = envValue{value: v, source: "ConfigMap " + cm.Name}
			}
		case ef.SecretRef != nil:
			s := m.secret(ef.SecretRef.Name)
			if s == nil {
				t.Errorf("envFrom refers to Secret %q, which is not in deploy/k8s", ef.SecretRef.Name)
				continue
			}
			for k := range secretKeys(s) {
				env[ef.Prefix+k] = envValue{value: s.StringData[k] + string(s.Data[k]), fromSecret: true, source: "Secret " + s.Name}
			}
		default:
			t.Errorf("envFrom entry with neither configMapRef nor secretRef")
		}
	}
	for _, e := range c.Env {
		switch {
		case e.ValueFrom == nil:
			env[e.Name] = envValue{value: e.Value, source: "env"}
		case e.ValueFrom.ConfigMapKeyRef != nil:
			ref := e.ValueFrom.ConfigMapKeyRef
			cm := m.configMap(ref.Name)
			if cm == nil {
				t.Errorf("%s: configMapKeyRef to ConfigMap %q, which is not in deploy/k8s", e.Name, ref.Name)
				continue
			}
			v, ok := cm.Data[ref.Key]
			if !ok {
				t.Errorf("%s: configMapKeyRef to key %q, which ConfigMap %s does not have", e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = envValue{value: v, source: "ConfigMap " + cm.Name}
		case e.ValueFrom.SecretKeyRef != nil:
			ref := e.ValueFrom.SecretKeyRef
			s := m.secret(ref.Name)
			if s == nil {
				t.Errorf("%s: secretKeyRef to Secret %q, which is not in deploy/k8s", e.Name, ref.Name)
				continue
			}
			if !secretKeys(s)[ref.Key] {
				t.Errorf("%s: secretKeyRef to key %q, which Secret %s does not have", e.Name, ref.Key, ref.Name)
			}
			env[e.Name] = envValue{value: s.StringData[ref.Key] + string(s.Data[ref.Key]), fromSecret: true, source: "Secret " + s.Name}
		default:
			env[e.Name] = envValue{source: "field or resource reference"}
		}
	}
	return env
}

// knownSettings lists the server's ONSALE_* settings from the env tags of its configuration
// structs, so a misspelt variable in a manifest is caught.
func knownSettings(t *testing.T) map[string]bool {
	t.Helper()
	re := regexp.MustCompile(`env:"(ONSALE_[A-Z0-9_]+)"`)
	known := map[string]bool{}
	for _, dir := range []string{"../cmd", "../internal"} {
		err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			data, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			for _, sm := range re.FindAllSubmatch(data, -1) {
				known[string(sm[1])] = true
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, name := range append([]string{"ONSALE_ENV", "ONSALE_DRAIN_DELAY", "ONSALE_SHUTDOWN_TIMEOUT", "ONSALE_HTTP_ADDR"}, requiredInProduction...) {
		if !known[name] {
			t.Fatalf("the settings scan of cmd/ and internal/ did not find %s; has the configuration moved?", name)
		}
	}
	return known
}

// durationSetting reads a duration the way the server does, or its default when unset.
func durationSetting(t *testing.T, env map[string]envValue, name string, def time.Duration) time.Duration {
	t.Helper()
	v, ok := env[name]
	if !ok || strings.TrimSpace(v.value) == "" {
		return def
	}
	d, err := time.ParseDuration(strings.TrimSpace(v.value))
	if err != nil {
		t.Fatalf("%s=%q (from %s): %v", name, v.value, v.source, err)
	}
	return d
}

// serverAccepts loads a process's settings the way the server does and validates them: what the
// server would refuse at start, a manifest must not ask of it. env holds what the process sees
// (values of Secrets are the templates' placeholders); modules is its --modules flag ("" for
// none). It returns the configuration the process would run with.
func serverAccepts(t *testing.T, where string, env map[string]envValue, modules string) *app.Config {
	t.Helper()
	var environ []string
	for k, v := range env {
		environ = append(environ, k+"="+v.value)
	}
	if unknown := config.UnknownEnv(&app.Config{}, environ, "ONSALE_", nil); len(unknown) > 0 {
		t.Errorf("%s: settings the server does not know: %v", where, unknown)
	}
	cfg := &app.Config{}
	if err := config.Load(cfg, func(name string) string { return env[name].value }, ""); err != nil {
		t.Errorf("%s: the server cannot read its settings: %v", where, err)
		return cfg
	}
	if modules != "" {
		cfg.Modules = modules
	}
	if err := cfg.Validate(); err != nil {
		t.Errorf("%s: the server would refuse to start:\n%v", where, err)
	}
	return cfg
}

// containerModules returns the value of the container's --modules flag ("" without one). The
// image's entrypoint is the server, so args are its flags; anything but --modules is refused
// here, since a flag the server does not know stops it.
func containerModules(t *testing.T, c *corev1.Container) string {
	t.Helper()
	if len(c.Command) > 0 {
		t.Errorf("container %s overrides the image's entrypoint with %v", c.Name, c.Command)
	}
	return modulesFlag(t, c.Name, c.Args)
}

// modulesFlag reads --modules (or -modules) from a server's arguments, in any of the forms Go's
// flag package takes.
func modulesFlag(t *testing.T, where string, args []string) string {
	t.Helper()
	modules := ""
	for i := 0; i < len(args); i++ {
		name, value, hasValue := strings.Cut(strings.TrimLeft(args[i], "-"), "=")
		if !strings.HasPrefix(args[i], "-") || name != "modules" {
			t.Errorf("%s: argument %q: the server is given no flag but --modules here", where, args[i])
			continue
		}
		if !hasValue {
			if i+1 == len(args) {
				t.Errorf("%s: --modules without a value", where)
				break
			}
			i++
			value = args[i]
		}
		modules = value
	}
	return modules
}

func TestManifestsDecodeStrictly(t *testing.T) {
	m := loadManifests(t)
	if len(m.deployments) == 0 || len(m.services) == 0 || len(m.pdbs) == 0 || len(m.hpas) == 0 ||
		len(m.configMaps) == 0 || len(m.secrets) == 0 {
		t.Errorf("want a Deployment, Service, PodDisruptionBudget, HorizontalPodAutoscaler, ConfigMap and Secret; found %d, %d, %d, %d, %d, %d",
			len(m.deployments), len(m.services), len(m.pdbs), len(m.hpas), len(m.configMaps), len(m.secrets))
	}
	sm := loadSplitManifests(t)
	if len(sm.deployments) == 0 || len(sm.services) == 0 || len(sm.pdbs) == 0 || len(sm.configMaps) == 0 ||
		len(sm.secrets) == 0 || len(sm.networkPolicies) == 0 || len(sm.ingresses) == 0 {
		t.Errorf("k8s/split: want Deployments, Services, PodDisruptionBudgets, a ConfigMap, a Secret, a NetworkPolicy and an Ingress; found %d, %d, %d, %d, %d, %d, %d",
			len(sm.deployments), len(sm.services), len(sm.pdbs), len(sm.configMaps), len(sm.secrets), len(sm.networkPolicies), len(sm.ingresses))
	}
}

// The decoder must refuse what the API server would: these guard the guard.
func TestDecodeRefusesBadManifests(t *testing.T) {
	for name, doc := range map[string]string{
		"unknown field": `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec: {replica: 3}
`,
		"unknown nested field": `apiVersion: apps/v1
kind: Deployment
metadata: {name: x}
spec:
  template:
    spec:
      containers:
        - name: c
          image: i
          readinessProbe: {httpGet: {path: /readyz, port: http}, periodSecond: 5}
`,
		"field in the wrong case": `apiVersion: v1
kind: Service
metadata: {name: x}
spec: {Type: ClusterIP}
`,
		"duplicate field": `apiVersion: v1
kind: ConfigMap
metadata: {name: x}
data: {A: "1"}
data: {B: "2"}
`,
		"unknown kind":       "apiVersion: v1\nkind: Pod\nmetadata: {name: x}\n",
		"unknown apiVersion": "apiVersion: autoscaling/v1\nkind: HorizontalPodAutoscaler\nmetadata: {name: x}\n",
		"no kind":            "apiVersion: v1\nmetadata: {name: x}\n",
	} {
		if _, err := decodeManifest([]byte(doc)); err == nil {
			t.Errorf("%s: decoded without an error", name)
		}
	}
	if _, err := decodeManifest([]byte("apiVersion: v1\nkind: ConfigMap\nmetadata: {name: x}\ndata: {A: \"1\"}\n")); err != nil {
		t.Errorf("a valid ConfigMap: %v", err)
	}
}

func TestDeploymentProbesAndPorts(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("replicas = %v, want 3", d.Spec.Replicas)
	}
	checkProbesAndPorts(t, m, c)
}

// checkProbesAndPorts: the port named http is where the server listens, and the probes ask it
// the right questions.
func checkProbesAndPorts(t *testing.T, m *manifests, c *corev1.Container) {
	t.Helper()
	if c.Image == "" {
		t.Error("the server container has no image")
	}
	env := containerEnv(t, m, c)
	addr := defaultHTTPAddr
	if v, ok := env["ONSALE_HTTP_ADDR"]; ok && v.value != "" {
		addr = v.value
	}
	_, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("ONSALE_HTTP_ADDR=%q: %v", addr, err)
	}
	listenPort, _ := strconv.Atoi(portStr)
	var httpPort corev1.ContainerPort
	for _, p := range c.Ports {
		if p.Name == "http" {
			httpPort = p
		}
	}
	if int(httpPort.ContainerPort) != listenPort {
		t.Errorf("container port http = %d, but the server listens on %s", httpPort.ContainerPort, addr)
	}

	probe := func(name string, p *corev1.Probe, path string) {
		t.Helper()
		if p == nil {
			t.Errorf("%s probe is missing", name)
			return
		}
		if p.HTTPGet == nil {
			t.Errorf("%s probe is not an HTTP GET", name)
			return
		}
		if p.HTTPGet.Path != path {
			t.Errorf("%s probe path = %q, want %q", name, p.HTTPGet.Path, path)
		}
		switch port := p.HTTPGet.Port; port.Type {
		case intstr.String:
			if port.StrVal != "http" {
				t.Errorf("%s probe port = %q, want the port named http", name, port.StrVal)
			}
		default:
			if int(port.IntVal) != listenPort {
				t.Errorf("%s probe port = %d, want %d", name, port.IntVal, listenPort)
			}
		}
		if p.TimeoutSeconds < 1 || p.PeriodSeconds < 1 || p.FailureThreshold < 1 {
			t.Errorf("%s probe: set timeoutSeconds, periodSeconds and failureThreshold explicitly", name)
		}
	}
	probe("readiness", c.ReadinessProbe, "/readyz")
	probe("liveness", c.LivenessProbe, "/livez")
	probe("startup", c.StartupProbe, "/livez")
	if p := c.StartupProbe; p != nil && p.PeriodSeconds*p.FailureThreshold < 120 {
		t.Errorf("startup probe allows %ds; migrations at start need 120s or more", p.PeriodSeconds*p.FailureThreshold)
	}
	if p := c.ReadinessProbe; p != nil && p.TimeoutSeconds < 1 {
		t.Errorf("readiness probe timeout %ds: /readyz may take 500 ms", p.TimeoutSeconds)
	}
}

// TestImagesPinned: every image names a version or a digest. :latest (or no tag, which means
// latest) lets replicas of one Deployment run different builds and leaves a rollback nothing to
// go back to.
func TestImagesPinned(t *testing.T) {
	for _, d := range append(loadManifests(t).deployments, loadSplitManifests(t).deployments...) {
		spec := d.Spec.Template.Spec
		for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
			ref := c.Image
			if _, digest, ok := strings.Cut(ref, "@"); ok {
				if !strings.HasPrefix(digest, "sha256:") {
					t.Errorf("%s/%s: image %q has a malformed digest", d.Name, c.Name, ref)
				}
				continue
			}
			name := ref[strings.LastIndex(ref, "/")+1:]
			_, tag, ok := strings.Cut(name, ":")
			if !ok || tag == "" || tag == "latest" {
				t.Errorf("%s/%s: image %q is not pinned to a version tag or a digest", d.Name, c.Name, ref)
			}
		}
	}
}

// TestMetricsOnInternalPort: the server serves /metrics and pprof on ONSALE_DEBUG_ADDR, a named
// container port that Prometheus scrapes and the Service does not expose; the compose replicas
// do the same for their Prometheus.
func TestMetricsOnInternalPort(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	checkDebugPort(t, m, d, c)

	cf := loadCompose(t)
	jobs := scrapeJobs(t)
	job, ok := jobs["onsale"]
	if !ok || job.path != "/metrics" {
		t.Fatalf("prometheus.yml has no job onsale scraping /metrics: %+v", jobs)
	}
	for _, name := range []string{"onsale-1", "onsale-2", "onsale-3"} {
		_, p, err := net.SplitHostPort(cf.Services[name].env("ONSALE_DEBUG_ADDR"))
		if err != nil {
			t.Errorf("%s: ONSALE_DEBUG_ADDR=%q: %v", name, cf.Services[name].env("ONSALE_DEBUG_ADDR"), err)
			continue
		}
		if !slices.Contains(job.targets, name+":"+p) {
			t.Errorf("prometheus.yml does not scrape %s:%s (targets %v)", name, p, job.targets)
		}
	}
}

// checkDebugPort: /metrics and pprof are on ONSALE_DEBUG_ADDR, a named container port other than
// http, which Prometheus is pointed at and no Service exposes.
func checkDebugPort(t *testing.T, m *manifests, d *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	env := containerEnv(t, m, c)
	addr := env["ONSALE_DEBUG_ADDR"].value
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("ONSALE_DEBUG_ADDR=%q: want host:port (the internal listener for /metrics): %v", addr, err)
	}
	if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
		t.Errorf("ONSALE_DEBUG_ADDR=%s is loopback: Prometheus cannot scrape /metrics there", addr)
	}
	port, _ := strconv.Atoi(portStr)
	var internal *corev1.ContainerPort
	for i := range c.Ports {
		if int(c.Ports[i].ContainerPort) == port {
			internal = &c.Ports[i]
		}
	}
	if internal == nil || internal.Name == "" || internal.Name == "http" {
		t.Fatalf("no named container port %d for ONSALE_DEBUG_ADDR (ports %v)", port, c.Ports)
	}
	ann := d.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/path"] != "/metrics" ||
		(ann["prometheus.io/port"] != portStr && ann["prometheus.io/port"] != internal.Name) {
		t.Errorf("the pod's prometheus.io annotations %v do not point at /metrics on port %d", ann, port)
	}
	for _, svc := range m.services {
		for _, p := range svc.Spec.Ports {
			if (p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == internal.Name) ||
				(p.TargetPort.Type == intstr.Int && int(p.TargetPort.IntVal) == port) || int(p.Port) == port {
				t.Errorf("Service %s exposes the internal port %d (metrics and pprof)", svc.Name, port)
			}
		}
	}
}

func TestDeploymentResources(t *testing.T) {
	m := loadManifests(t)
	_, c := m.theDeployment(t)
	checkResources(t, m, c)
}

// checkResources: requests and limits for CPU and memory, and GOMEMLIMIT below the memory limit.
func checkResources(t *testing.T, m *manifests, c *corev1.Container) {
	t.Helper()
	for _, r := range []corev1.ResourceName{corev1.ResourceCPU, corev1.ResourceMemory} {
		req, okReq := c.Resources.Requests[r]
		lim, okLim := c.Resources.Limits[r]
		if !okReq || req.IsZero() {
			t.Errorf("no %s request", r)
		}
		if !okLim || lim.IsZero() {
			t.Errorf("no %s limit", r)
		}
		if okReq && okLim && req.Cmp(lim) > 0 {
			t.Errorf("%s request %s is above its limit %s", r, req.String(), lim.String())
		}
	}
	env := containerEnv(t, m, c)
	if v, ok := env["GOMEMLIMIT"]; ok {
		limit, err := parseGoMemLimit(v.value)
		if err != nil {
			t.Fatalf("GOMEMLIMIT=%q: %v", v.value, err)
		}
		memLimit := c.Resources.Limits[corev1.ResourceMemory]
		if memLimit.Value() > 0 && limit >= memLimit.Value() {
			t.Errorf("GOMEMLIMIT=%s is not below the memory limit %s", v.value, memLimit.String())
		}
	}
}

// parseGoMemLimit parses a GOMEMLIMIT value (bytes, with an optional B, KiB, MiB, GiB or TiB).
func parseGoMemLimit(s string) (int64, error) {
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10}, {"B", 1}} {
		if n, ok := strings.CutSuffix(s, u.suffix); ok {
			v, err := strconv.ParseInt(n, 10, 64)
			return v * u.mult, err
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

func TestDeploymentShutdown(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	checkShutdown(t, m, d, c)
}

// checkShutdown: the grace period holds the preStop sleep and the server's whole shutdown.
func checkShutdown(t *testing.T, m *manifests, d *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	env := containerEnv(t, m, c)
	drain := durationSetting(t, env, "ONSALE_DRAIN_DELAY", defaultDrainDelay)
	shutdown := durationSetting(t, env, "ONSALE_SHUTDOWN_TIMEOUT", defaultShutdownTimeout)
	if shutdown <= drain {
		t.Errorf("ONSALE_SHUTDOWN_TIMEOUT %s must be longer than ONSALE_DRAIN_DELAY %s (the server refuses to start)", shutdown, drain)
	}
	spec := d.Spec.Template.Spec
	if spec.TerminationGracePeriodSeconds == nil {
		t.Fatal("terminationGracePeriodSeconds is not set")
	}
	grace := time.Duration(*spec.TerminationGracePeriodSeconds) * time.Second
	if grace <= drain+shutdown {
		t.Errorf("terminationGracePeriodSeconds %s is not above ONSALE_DRAIN_DELAY + ONSALE_SHUTDOWN_TIMEOUT (%s)", grace, drain+shutdown)
	}
	if c.Lifecycle == nil || c.Lifecycle.PreStop == nil {
		t.Fatal("no preStop hook: the pod would get SIGTERM before load balancers stop sending to it")
	}
	pre := c.Lifecycle.PreStop
	if pre.Exec != nil {
		t.Error("preStop runs a command, but the distroless image has no shell or sleep binary: use the sleep action")
	}
	if pre.Sleep == nil || pre.Sleep.Seconds <= 0 {
		t.Fatal("preStop must be a sleep of a few seconds")
	}
	preStop := time.Duration(pre.Sleep.Seconds) * time.Second
	if preStop >= grace {
		t.Errorf("preStop sleep %s is not shorter than the grace period %s", preStop, grace)
	}
	// The grace period counts from the preStop hook: SIGTERM comes after it, and the whole
	// shutdown (drain delay included) must still fit.
	if preStop+shutdown >= grace {
		t.Errorf("preStop %s + ONSALE_SHUTDOWN_TIMEOUT %s does not fit in the grace period %s", preStop, shutdown, grace)
	}
}

func TestDeploymentSecurity(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	checkSecurity(t, m, d, c)
}

// checkSecurity: non-root, read-only root with emptyDirs for the data directory and /tmp, no
// privileges, no service account token, no service links.
func checkSecurity(t *testing.T, m *manifests, d *appsv1.Deployment, c *corev1.Container) {
	t.Helper()
	pod := d.Spec.Template.Spec
	psc := pod.SecurityContext
	if psc == nil {
		psc = &corev1.PodSecurityContext{}
	}
	csc := c.SecurityContext
	if csc == nil {
		t.Fatal("the server container has no securityContext")
	}
	nonRoot := csc.RunAsNonRoot
	if nonRoot == nil {
		nonRoot = psc.RunAsNonRoot
	}
	if nonRoot == nil || !*nonRoot {
		t.Error("runAsNonRoot is not true")
	}
	uid := csc.RunAsUser
	if uid == nil {
		uid = psc.RunAsUser
	}
	if uid == nil || *uid != imageUID {
		t.Errorf("runAsUser = %v, want %d (the image's nonroot user)", uid, imageUID)
	}
	if csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("readOnlyRootFilesystem is not true")
	}
	if csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
		t.Error("allowPrivilegeEscalation is not false")
	}
	if csc.Privileged != nil && *csc.Privileged {
		t.Error("the container is privileged")
	}
	if csc.Capabilities == nil || !slices.Contains(csc.Capabilities.Drop, "ALL") || len(csc.Capabilities.Add) > 0 {
		t.Error("capabilities must drop ALL and add none")
	}
	seccomp := csc.SeccompProfile
	if seccomp == nil {
		seccomp = psc.SeccompProfile
	}
	if seccomp == nil || seccomp.Type != corev1.SeccompProfileTypeRuntimeDefault {
		t.Error("seccompProfile is not RuntimeDefault")
	}
	if pod.AutomountServiceAccountToken == nil || *pod.AutomountServiceAccountToken {
		t.Error("automountServiceAccountToken is not false: the server calls no Kubernetes API")
	}
	// Service links would add ONSALE_SERVICE_HOST, ONSALE_PORT... for a Service named onsale,
	// into the very namespace of the server's settings.
	if pod.EnableServiceLinks == nil || *pod.EnableServiceLinks {
		t.Error("enableServiceLinks is not false")
	}
	if pod.ServiceAccountName != "" {
		found := false
		for _, sa := range m.serviceAccounts {
			found = found || sa.Name == pod.ServiceAccountName
		}
		if !found {
			t.Errorf("serviceAccountName %q is not among the manifests", pod.ServiceAccountName)
		}
	}

	// With a read-only root, the data directory and /tmp are emptyDirs.
	env := containerEnv(t, m, c)
	dataDir := "/data"
	if v, ok := env["ONSALE_DATA_DIR"]; ok && v.value != "" {
		dataDir = v.value
	}
	for _, dir := range []string{dataDir, "/tmp"} {
		vol := volumeAt(pod, c, dir)
		if vol == nil || vol.EmptyDir == nil {
			t.Errorf("%s is not an emptyDir mount", dir)
		}
	}
}

// volumeAt returns the volume mounted exactly at dir.
func volumeAt(pod corev1.PodSpec, c *corev1.Container, dir string) *corev1.Volume {
	for _, vm := range c.VolumeMounts {
		if filepath.Clean(vm.MountPath) != filepath.Clean(dir) {
			continue
		}
		for i := range pod.Volumes {
			if pod.Volumes[i].Name == vm.Name {
				return &pod.Volumes[i]
			}
		}
	}
	return nil
}

func TestDeploymentPlacement(t *testing.T) {
	m := loadManifests(t)
	d, _ := m.theDeployment(t)
	checkPlacement(t, d)
}

// checkPlacement: the Deployment's pods spread over zones and, preferably, nodes.
func checkPlacement(t *testing.T, d *appsv1.Deployment) {
	t.Helper()
	podLabels := labels.Set(d.Spec.Template.Labels)
	sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Fatalf("the Deployment's selector %v does not select its own pods (%v)", d.Spec.Selector, err)
	}
	selects := func(ls *metav1.LabelSelector) bool {
		s, err := metav1.LabelSelectorAsSelector(ls)
		return err == nil && !s.Empty() && s.Matches(podLabels)
	}
	spec := d.Spec.Template.Spec
	zoned := false
	for _, tsc := range spec.TopologySpreadConstraints {
		if tsc.TopologyKey == "topology.kubernetes.io/zone" {
			zoned = true
			if !selects(tsc.LabelSelector) {
				t.Error("the zone spread constraint does not select the Deployment's pods")
			}
			if tsc.MaxSkew < 1 {
				t.Error("the zone spread constraint has no maxSkew")
			}
		}
	}
	if !zoned {
		t.Error("no topologySpreadConstraint across topology.kubernetes.io/zone")
	}
	var terms []corev1.PodAffinityTerm
	if a := spec.Affinity; a != nil && a.PodAntiAffinity != nil {
		terms = append(terms, a.PodAntiAffinity.RequiredDuringSchedulingIgnoredDuringExecution...)
		for _, w := range a.PodAntiAffinity.PreferredDuringSchedulingIgnoredDuringExecution {
			terms = append(terms, w.PodAffinityTerm)
		}
	}
	perNode := false
	for _, term := range terms {
		if term.TopologyKey == "kubernetes.io/hostname" && selects(term.LabelSelector) {
			perNode = true
		}
	}
	if !perNode {
		t.Error("no pod anti-affinity across nodes (kubernetes.io/hostname) for the Deployment's pods")
	}
	if s := d.Spec.Strategy.RollingUpdate; d.Spec.Strategy.Type == appsv1.RollingUpdateDeploymentStrategyType && s != nil &&
		s.MaxUnavailable != nil && s.MaxUnavailable.String() != "0" {
		t.Logf("note: rolling updates may take %s replicas down at once", s.MaxUnavailable.String())
	}
}

func TestProductionEnvironment(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	env := containerEnv(t, m, c)
	if env["ONSALE_ENV"].value != "production" {
		t.Errorf("ONSALE_ENV = %q, want production", env["ONSALE_ENV"].value)
	}
	for _, name := range requiredInProduction {
		v, ok := env[name]
		if !ok {
			t.Errorf("%s is not provided: the server refuses to start in production without it", name)
			continue
		}
		if v.value == "" && !v.fromSecret {
			t.Errorf("%s is empty (from %s)", name, v.source)
		}
	}
	for _, name := range connectionURLs {
		if v, ok := env[name]; ok && !v.fromSecret {
			t.Errorf("%s comes from %s: connection URLs carry passwords and must come from a Secret", name, v.source)
		}
	}
	known := knownSettings(t)
	for name, v := range env {
		if strings.HasPrefix(name, "ONSALE_") && !known[name] {
			t.Errorf("%s (from %s) is not a setting of the server", name, v.source)
		}
	}
	if v := env["ONSALE_TRUSTED_PROXIES"].value; v != "" {
		for _, p := range strings.Split(v, ",") {
			if _, err := netip.ParsePrefix(strings.TrimSpace(p)); err != nil {
				t.Errorf("ONSALE_TRUSTED_PROXIES: %v", err)
			}
		}
	}
	if v := env["ONSALE_PROVIDER_URL"].value; v == "" {
		t.Error("ONSALE_PROVIDER_URL is empty: production would charge nobody (simulated provider)")
	}

	// The key files are files of a Secret volume, with keys that the Secret has.
	for _, name := range []string{"ONSALE_JWT_KEYS_FILE", "ONSALE_TICKET_KEYS_FILE"} {
		secretFile(t, m, d, c, env, name)
	}
	checkVolumeItems(t, m, d)
	serverAccepts(t, d.Name, env, containerModules(t, c))
}

// secretFile checks that the file a setting names is a file of a Secret volume mounted in the
// container, projected from a key the Secret has, readable by no one but the server's group; it
// returns the Secret and key ("" when a check failed).
func secretFile(t *testing.T, m *manifests, d *appsv1.Deployment, c *corev1.Container, env map[string]envValue, name string) (secret, key string) {
	t.Helper()
	path := env[name].value
	if !filepath.IsAbs(path) {
		t.Errorf("%s: %s = %q, want an absolute path into a Secret volume", d.Name, name, path)
		return "", ""
	}
	vol := volumeAt(d.Spec.Template.Spec, c, filepath.Dir(path))
	if vol == nil || vol.Secret == nil {
		t.Errorf("%s: %s = %s is not in a Secret volume mount", d.Name, name, path)
		return "", ""
	}
	s := m.secret(vol.Secret.SecretName)
	if s == nil {
		t.Errorf("%s: volume %s refers to Secret %q, which is not among the manifests", d.Name, vol.Name, vol.Secret.SecretName)
		return "", ""
	}
	key = filepath.Base(path)
	if len(vol.Secret.Items) > 0 {
		key = ""
		for _, it := range vol.Secret.Items {
			if it.Path == filepath.Base(path) {
				key = it.Key
			}
		}
		if key == "" {
			t.Errorf("%s: %s = %s: volume %s projects no item to %s", d.Name, name, path, vol.Name, filepath.Base(path))
			return "", ""
		}
	}
	if !secretKeys(s)[key] {
		t.Errorf("%s: %s: Secret %s has no key %q", d.Name, name, s.Name, key)
		return "", ""
	}
	if mode := vol.Secret.DefaultMode; mode != nil && *mode&0o007 != 0 {
		t.Errorf("%s: volume %s: defaultMode %#o lets everyone read %s", d.Name, vol.Name, *mode, key)
	}
	return s.Name, key
}

// checkVolumeItems: every projected item of every Secret or ConfigMap volume exists.
func checkVolumeItems(t *testing.T, m *manifests, d *appsv1.Deployment) {
	t.Helper()
	for _, vol := range d.Spec.Template.Spec.Volumes {
		if vol.Secret != nil {
			s := m.secret(vol.Secret.SecretName)
			if s == nil {
				t.Errorf("%s: volume %s: Secret %q is not among the manifests", d.Name, vol.Name, vol.Secret.SecretName)
				continue
			}
			for _, it := range vol.Secret.Items {
				if !secretKeys(s)[it.Key] {
					t.Errorf("volume %s: Secret %s has no key %q", vol.Name, s.Name, it.Key)
				}
			}
		}
		if vol.ConfigMap != nil {
			cm := m.configMap(vol.ConfigMap.Name)
			if cm == nil {
				t.Errorf("%s: volume %s: ConfigMap %q is not among the manifests", d.Name, vol.Name, vol.ConfigMap.Name)
				continue
			}
			for _, it := range vol.ConfigMap.Items {
				if _, ok := cm.Data[it.Key]; !ok {
					t.Errorf("volume %s: ConfigMap %s has no key %q", vol.Name, cm.Name, it.Key)
				}
			}
		}
	}
}

func TestServiceAndDisruptionBudget(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	podLabels := labels.Set(d.Spec.Template.Labels)
	if len(m.services) != 1 {
		t.Fatalf("want one Service, found %d", len(m.services))
	}
	svc := m.services[0]
	if svc.Spec.Type != "" && svc.Spec.Type != corev1.ServiceTypeClusterIP {
		t.Errorf("Service type %s, want ClusterIP", svc.Spec.Type)
	}
	if len(svc.Spec.Selector) == 0 || !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("the Service's selector %v does not select the Deployment's pods %v", svc.Spec.Selector, podLabels)
	}
	found := false
	for _, p := range svc.Spec.Ports {
		if p.Port != 80 {
			continue
		}
		found = true
		ok := false
		for _, cp := range c.Ports {
			ok = ok || (p.TargetPort.Type == intstr.String && p.TargetPort.StrVal == cp.Name) ||
				(p.TargetPort.Type == intstr.Int && p.TargetPort.IntVal == cp.ContainerPort)
		}
		if !ok || p.TargetPort.String() == "0" {
			t.Errorf("Service port 80 targets %s, which is not a port of the server container", p.TargetPort.String())
		}
	}
	if !found {
		t.Error("the Service has no port 80")
	}

	if len(m.pdbs) != 1 {
		t.Fatalf("want one PodDisruptionBudget, found %d", len(m.pdbs))
	}
	pdb := m.pdbs[0]
	sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector)
	if err != nil || sel.Empty() || !sel.Matches(podLabels) {
		t.Errorf("the PodDisruptionBudget's selector does not select the Deployment's pods (%v)", err)
	}
	replicas := int(*d.Spec.Replicas)
	switch {
	case pdb.Spec.MinAvailable != nil && pdb.Spec.MaxUnavailable != nil:
		t.Error("the PodDisruptionBudget sets both minAvailable and maxUnavailable")
	case pdb.Spec.MinAvailable != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MinAvailable, replicas, true)
		if err != nil || n < 2 || n >= replicas {
			t.Errorf("minAvailable %s: want at least 2 and fewer than the %d replicas", pdb.Spec.MinAvailable.String(), replicas)
		}
	case pdb.Spec.MaxUnavailable != nil:
		n, err := intstr.GetScaledValueFromIntOrPercent(pdb.Spec.MaxUnavailable, replicas, false)
		if err != nil || n != 1 {
			t.Errorf("maxUnavailable %s: want 1", pdb.Spec.MaxUnavailable.String())
		}
	default:
		t.Error("the PodDisruptionBudget sets neither minAvailable nor maxUnavailable")
	}
}

func TestHorizontalPodAutoscaler(t *testing.T) {
	m := loadManifests(t)
	d, c := m.theDeployment(t)
	if len(m.hpas) != 1 {
		t.Fatalf("want one HorizontalPodAutoscaler, found %d", len(m.hpas))
	}
	h := m.hpas[0]
	ref := h.Spec.ScaleTargetRef
	if ref.Kind != "Deployment" || ref.Name != d.Name || ref.APIVersion != "apps/v1" {
		t.Errorf("scaleTargetRef %s %s/%s, want apps/v1 Deployment/%s", ref.APIVersion, ref.Kind, ref.Name, d.Name)
	}
	if h.Spec.MinReplicas == nil || *h.Spec.MinReplicas != 3 {
		t.Errorf("minReplicas = %v, want 3", h.Spec.MinReplicas)
	}
	if h.Spec.MaxReplicas < 3 {
		t.Errorf("maxReplicas %d is below minReplicas", h.Spec.MaxReplicas)
	}
	// Of the resources, CPU only (the custom metrics are TestCustomMetricsAutoscaler's): the Go
	// runtime keeps the heap it grew (GOGC 400, GOMEMLIMIT), so memory says
	// little about load, and a memory target would scale out and never back in.
	want := map[corev1.ResourceName]int32{corev1.ResourceCPU: 70}
	got := map[corev1.ResourceName]int32{}
	for _, mt := range h.Spec.Metrics {
		if mt.Type != autoscalingv2.ResourceMetricSourceType || mt.Resource == nil {
			continue
		}
		if mt.Resource.Name == corev1.ResourceMemory {
			t.Error("the HPA scales on memory, which the Go runtime does not give back: it would never scale in")
		}
		if mt.Resource.Target.Type != autoscalingv2.UtilizationMetricType || mt.Resource.Target.AverageUtilization == nil {
			t.Errorf("%s target is not an average utilization", mt.Resource.Name)
			continue
		}
		got[mt.Resource.Name] = *mt.Resource.Target.AverageUtilization
	}
	for r, pct := range want {
		if got[r] != pct {
			t.Errorf("%s target utilization = %d%%, want %d%%", r, got[r], pct)
		}
		// Utilization is relative to requests: without one the HPA cannot compute it.
		if q, ok := c.Resources.Requests[r]; !ok || q.IsZero() {
			t.Errorf("the HPA scales on %s but the container requests none", r)
		}
	}
	env := containerEnv(t, m, c)
	conns := 16
	if v, ok := env["ONSALE_DB_MAX_CONNS"]; ok && v.value != "" {
		n, err := strconv.Atoi(v.value)
		if err != nil {
			t.Fatalf("ONSALE_DB_MAX_CONNS=%q: %v", v.value, err)
		}
		conns = n
	}
	t.Logf("at maxReplicas the pools hold up to %d x %d = %d PostgreSQL connections", h.Spec.MaxReplicas, conns, int(h.Spec.MaxReplicas)*conns)
}

// ---- a split deployment on Kubernetes (deploy/k8s/split) ----

// apiRoute is one operation of the published API and the module whose process serves it ("" for
// every process).
type apiRoute struct {
	method, path, module, tag string
}

// moduleOfTag says which module serves the operations of each tag of api/openapi.yaml.
var moduleOfTag = map[string]string{
	"operations": "", "auth": app.Auth, "events": app.Inventory, "holds": app.Inventory,
	"orders": app.Payment, "checkins": app.Payment, "waiting-room": app.Inventory,
	"sales": app.Payment, "pages": "", "webhooks": app.Payment,
}

// ingressGaps are the tags whose operations a split Ingress cannot route, and why. A known gap is
// named here rather than routed wrongly.
var ingressGaps = map[string]string{
	"sales": "the organizer's reads are under /v1/events/{id}/ but served by payment; Exact and Prefix paths cannot part them from inventory's",
}

// eventStreams are the Server-Sent Event routes a proxy must pass through unbuffered and keep
// open: an example path of each, and a path of the same prefix that is not a stream.
var eventStreams = []struct{ name, path, not string }{
	{"the order event streams", "/v1/orders/0b7e9a5c-6f0e-4f35-9a77-8f3f5d3f0a11/events", "/v1/orders"},
	{"the waiting-room streams", "/v1/events/0b7e9a5c-6f0e-4f35-9a77-8f3f5d3f0a11/queue/me/events", "/v1/events/0b7e9a5c-6f0e-4f35-9a77-8f3f5d3f0a11/queue/me"},
}

// apiRoutes lists the operations of api/openapi.yaml with a concrete path (parameters filled in)
// and the module that serves them, by their tag.
func apiRoutes(t *testing.T) []apiRoute {
	t.Helper()
	data, err := os.ReadFile("../api/openapi.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var spec struct {
		Paths map[string]map[string]yamlv3.Node `yaml:"paths"`
	}
	if err := yamlv3.Unmarshal(data, &spec); err != nil {
		t.Fatalf("api/openapi.yaml: %v", err)
	}
	param := regexp.MustCompile(`\{[^}]+\}`)
	var routes []apiRoute
	for path, item := range spec.Paths {
		for method, node := range item {
			switch method {
			case "get", "put", "post", "delete", "patch", "head", "options":
			default:
				continue
			}
			var op struct {
				Tags []string `yaml:"tags"`
			}
			if err := node.Decode(&op); err != nil || len(op.Tags) != 1 {
				t.Errorf("%s %s: want exactly one tag, the module that serves it (%v)", method, path, err)
				continue
			}
			module, ok := moduleOfTag[op.Tags[0]]
			if !ok {
				t.Errorf("%s %s: tag %q is new: route it in deploy/nginx/split.conf and deploy/k8s/split/ingress.yaml, and add it to moduleOfTag",
					method, path, op.Tags[0])
				continue
			}
			concrete := param.ReplaceAllString(path, "0b7e9a5c-6f0e-4f35-9a77-8f3f5d3f0a11")
			routes = append(routes, apiRoute{method: strings.ToUpper(method), path: concrete, module: module, tag: op.Tags[0]})
		}
	}
	if len(routes) < 20 {
		t.Fatalf("only %d operations in api/openapi.yaml", len(routes))
	}
	sort.Slice(routes, func(i, j int) bool { return routes[i].path+routes[i].method < routes[j].path+routes[j].method })
	return routes
}

// splitTier is one Deployment of k8s/split: its server container, what it runs and the
// configuration the server would run with.
type splitTier struct {
	d     *appsv1.Deployment
	c     *corev1.Container
	env   map[string]envValue
	cfg   *app.Config
	local map[string]bool
}

// serverContainer returns the Deployment's container with the port named http.
func serverContainer(t *testing.T, d *appsv1.Deployment) *corev1.Container {
	t.Helper()
	for i := range d.Spec.Template.Spec.Containers {
		c := &d.Spec.Template.Spec.Containers[i]
		if containerPort(c, "http") != nil {
			return c
		}
	}
	t.Fatalf("Deployment %s has no container with a port named http", d.Name)
	return nil
}

func containerPort(c *corev1.Container, name string) *corev1.ContainerPort {
	for i := range c.Ports {
		if c.Ports[i].Name == name {
			return &c.Ports[i]
		}
	}
	return nil
}

// listenPort is the port of a listen address such as ":9090" (0 when there is none).
func listenPort(addr string) int32 {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return int32(n)
}

// loadSplitTiers checks each Deployment's --modules against its name and the server's own
// validation of its settings, and returns the tiers.
func loadSplitTiers(t *testing.T, m *manifests) []*splitTier {
	t.Helper()
	if len(m.deployments) == 0 {
		t.Fatal("no Deployment in deploy/k8s/split")
	}
	var tiers []*splitTier
	for _, d := range m.deployments {
		c := serverContainer(t, d)
		modules := containerModules(t, c)
		// onsale-payment runs payment; onsale-auth-inventory would run auth,inventory.
		named, ok := strings.CutPrefix(d.Name, "onsale-")
		if want := strings.ReplaceAll(named, "-", ","); !ok || modules != want {
			t.Errorf("Deployment %s runs --modules=%q; its name says %q", d.Name, modules, want)
		}
		local, err := app.ParseModules(modules)
		if err != nil || modules == "" || modules == "all" {
			t.Errorf("Deployment %s: --modules=%q: a tier names the modules it runs (%v)", d.Name, modules, err)
			continue
		}
		env := containerEnv(t, m, c)
		if v, ok := env["ONSALE_MODULES"]; ok {
			t.Errorf("Deployment %s also sets ONSALE_MODULES=%q (from %s): --modules alone says what it runs", d.Name, v.value, v.source)
		}
		tiers = append(tiers, &splitTier{d: d, c: c, env: env, cfg: serverAccepts(t, d.Name, env, modules), local: local})
	}
	if t.Failed() {
		t.FailNow()
	}
	return tiers
}

// TestSplitManifests: the split tiers are held to what the all-in-one Deployment is (probes,
// shutdown, security, resources, placement, metrics off the public port), and each runs what its
// name says with settings the server accepts.
func TestSplitManifests(t *testing.T) {
	m := loadSplitManifests(t)
	tiers := loadSplitTiers(t, m)
	for _, tier := range tiers {
		t.Run(tier.d.Name, func(t *testing.T) {
			if r := tier.d.Spec.Replicas; r == nil || *r < 2 {
				t.Errorf("replicas = %v: a tier of one pod is down whenever that pod is", r)
			}
			checkProbesAndPorts(t, m, tier.c)
			checkShutdown(t, m, tier.d, tier.c)
			checkSecurity(t, m, tier.d, tier.c)
			checkResources(t, m, tier.c)
			checkPlacement(t, tier.d)
			checkDebugPort(t, m, tier.d, tier.c)
			checkVolumeItems(t, m, tier.d)
			for _, name := range connectionURLs {
				if v, ok := tier.env[name]; ok && !v.fromSecret {
					t.Errorf("%s comes from %s: connection URLs carry passwords and must come from a Secret", name, v.source)
				}
			}
		})
	}
	// Every module runs in exactly one tier.
	for _, module := range app.ModuleNames() {
		var in []string
		for _, tier := range tiers {
			if tier.local[module] {
				in = append(in, tier.d.Name)
			}
		}
		if len(in) != 1 {
			t.Errorf("module %s runs in %v: want exactly one tier", module, in)
		}
	}
	// One PodDisruptionBudget per tier.
	for _, tier := range tiers {
		podLabels := labels.Set(tier.d.Spec.Template.Labels)
		n := 0
		for _, pdb := range m.pdbs {
			if sel, err := metav1.LabelSelectorAsSelector(pdb.Spec.Selector); err == nil && !sel.Empty() && sel.Matches(podLabels) {
				n++
				if pdb.Spec.MaxUnavailable == nil || pdb.Spec.MaxUnavailable.String() != "1" {
					t.Errorf("PodDisruptionBudget %s: want maxUnavailable 1", pdb.Name)
				}
			}
		}
		if n != 1 {
			t.Errorf("%s: %d PodDisruptionBudgets select its pods, want 1", tier.d.Name, n)
		}
	}
}

// serviceTarget resolves a Service port to the container port it reaches in each Deployment the
// Service selects.
func serviceTarget(svc *corev1.Service, port corev1.ServicePort, tiers []*splitTier) map[*splitTier]*corev1.ContainerPort {
	out := map[*splitTier]*corev1.ContainerPort{}
	if len(svc.Spec.Selector) == 0 {
		return out
	}
	sel := labels.SelectorFromSet(svc.Spec.Selector)
	for _, tier := range tiers {
		if !sel.Matches(labels.Set(tier.d.Spec.Template.Labels)) {
			continue
		}
		for i := range tier.c.Ports {
			cp := &tier.c.Ports[i]
			if (port.TargetPort.Type == intstr.String && port.TargetPort.StrVal == cp.Name) ||
				(port.TargetPort.Type == intstr.Int && port.TargetPort.IntVal == cp.ContainerPort) ||
				(port.TargetPort.Type == intstr.Int && port.TargetPort.IntVal == 0 && port.Port == cp.ContainerPort) {
				out[tier] = cp
			}
		}
	}
	return out
}

func (m *manifests) service(name string) *corev1.Service {
	for _, s := range m.services {
		if s.Name == name {
			return s
		}
	}
	return nil
}

// TestSplitWiring: how the tiers find and trust one another. Each ONSALE_*_URL is the internal
// port of a Service that reaches the tier running that module, and names only a module the tier
// depends on (a URL makes /readyz wait for that module: one for a module nothing calls couples
// the tiers' readiness for nothing, and could make two tiers wait for each other at start).
// Every tier mounts the same internal secret; only the tier that signs holds a private key.
func TestSplitWiring(t *testing.T) {
	m := loadSplitManifests(t)
	tiers := loadSplitTiers(t, m)
	runs := map[string]*splitTier{}
	for _, tier := range tiers {
		for module := range tier.local {
			runs[module] = tier
		}
	}
	needs := func(tier *splitTier) map[string]bool {
		out := map[string]bool{}
		for _, r := range app.Registrations() {
			if !tier.local[r.Name] {
				continue
			}
			for _, dep := range r.DependsOn {
				if !tier.local[dep] {
					out[dep] = true
				}
			}
		}
		return out
	}

	var secretRef string
	for _, tier := range tiers {
		d := tier.d
		internal := containerPort(tier.c, "internal")
		if internal == nil {
			t.Errorf("%s: no container port named internal", d.Name)
		} else if p := listenPort(tier.cfg.Internal.Addr); p != internal.ContainerPort {
			t.Errorf("%s: ONSALE_INTERNAL_ADDR=%q, but the port named internal is %d", d.Name, tier.cfg.Internal.Addr, internal.ContainerPort)
		}
		if http := containerPort(tier.c, "http"); http != nil && internal != nil && http.ContainerPort == internal.ContainerPort {
			t.Errorf("%s: the internal API and the public API share port %d", d.Name, http.ContainerPort)
		}

		for _, module := range app.ModuleNames() {
			raw := tier.cfg.Internal.URL(module)
			if raw == "" {
				continue
			}
			if tier.local[module] || !needs(tier)[module] {
				t.Errorf("%s sets %s=%s, but no module it runs calls %s", d.Name, settingOf(module), raw, module)
				continue
			}
			u, err := url.Parse(raw)
			if err != nil || u.Scheme != "http" || u.Port() == "" || (u.Path != "" && u.Path != "/") {
				t.Errorf("%s: %s=%q: want http://SERVICE:PORT", d.Name, settingOf(module), raw)
				continue
			}
			svc := m.service(u.Hostname())
			if svc == nil {
				t.Errorf("%s: %s=%s names no Service of deploy/k8s/split", d.Name, settingOf(module), raw)
				continue
			}
			port, _ := strconv.Atoi(u.Port())
			var sp *corev1.ServicePort
			for i := range svc.Spec.Ports {
				if int(svc.Spec.Ports[i].Port) == port {
					sp = &svc.Spec.Ports[i]
				}
			}
			if sp == nil {
				t.Errorf("%s: %s=%s: Service %s has no port %d", d.Name, settingOf(module), raw, svc.Name, port)
				continue
			}
			targets := serviceTarget(svc, *sp, tiers)
			if len(targets) == 0 {
				t.Errorf("%s: %s=%s: Service %s port %d reaches no server container", d.Name, settingOf(module), raw, svc.Name, port)
			}
			for target, cp := range targets {
				if !target.local[module] {
					t.Errorf("%s: %s=%s reaches %s, which does not run %s", d.Name, settingOf(module), raw, target.d.Name, module)
				}
				if cp.Name != "internal" {
					t.Errorf("%s: %s=%s reaches port %s of %s, not its internal API", d.Name, settingOf(module), raw, cp.Name, target.d.Name)
				}
			}
		}
		// Validation already refuses a missing URL; this says which tier is meant.
		for dep := range needs(tier) {
			if tier.cfg.Internal.URL(dep) == "" && runs[dep] != nil {
				t.Errorf("%s needs %s: set %s to http://%s:PORT (its internal port)", d.Name, dep, settingOf(dep), runs[dep].d.Name)
			}
		}

		// The internal secret: a file of one Secret, the same in every tier.
		if tier.cfg.Internal.SecretFile == "" {
			t.Errorf("%s: ONSALE_INTERNAL_SECRET_FILE is not set", d.Name)
		} else if s, key := secretFile(t, m, d, tier.c, tier.env, "ONSALE_INTERNAL_SECRET_FILE"); s != "" {
			if ref := s + "/" + key; secretRef == "" {
				secretRef = ref
			} else if ref != secretRef {
				t.Errorf("%s reads the internal secret from %s, another tier from %s: every process must present the same one", d.Name, ref, secretRef)
			}
		}
	}

	// The private keys: only the tier that signs with them mounts them.
	for _, keys := range []struct{ module, setting string }{{app.Auth, "ONSALE_JWT_KEYS_FILE"}, {app.Payment, "ONSALE_TICKET_KEYS_FILE"}} {
		owner := runs[keys.module]
		if owner == nil {
			continue
		}
		secret, key := secretFile(t, m, owner.d, owner.c, owner.env, keys.setting)
		if secret == "" {
			continue
		}
		for _, tier := range tiers {
			if tier.local[keys.module] {
				continue
			}
			if v, ok := tier.env[keys.setting]; ok {
				t.Errorf("%s sets %s=%q (from %s) without running %s", tier.d.Name, keys.setting, v.value, v.source, keys.module)
			}
			if where := mountsSecretKey(m, tier.d, secret, key); where != "" {
				t.Errorf("%s mounts %s's private keys (Secret %s, key %s) through %s without running %s", tier.d.Name, keys.module, secret, key, where, keys.module)
			}
		}
	}
}

func settingOf(module string) string { return "ONSALE_" + strings.ToUpper(module) + "_URL" }

// mountsSecretKey tells how a Deployment's pods get a Secret's key, if they do: a volume (the
// whole Secret or the item), a projected volume, an env reference or envFrom.
func mountsSecretKey(m *manifests, d *appsv1.Deployment, secret, key string) string {
	spec := d.Spec.Template.Spec
	has := func(items []corev1.KeyToPath) bool {
		if len(items) == 0 {
			s := m.secret(secret)
			return s == nil || secretKeys(s)[key]
		}
		return slices.ContainsFunc(items, func(it corev1.KeyToPath) bool { return it.Key == key })
	}
	for _, v := range spec.Volumes {
		if v.Secret != nil && v.Secret.SecretName == secret && has(v.Secret.Items) {
			return "volume " + v.Name
		}
		if v.Projected != nil {
			for _, src := range v.Projected.Sources {
				if src.Secret != nil && src.Secret.Name == secret && has(src.Secret.Items) {
					return "projected volume " + v.Name
				}
			}
		}
	}
	for _, c := range append(append([]corev1.Container{}, spec.InitContainers...), spec.Containers...) {
		for _, e := range c.Env {
			if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil && r.SecretKeyRef.Name == secret && r.SecretKeyRef.Key == key {
				return "env " + e.Name
			}
		}
		for _, ef := range c.EnvFrom {
			if ef.SecretRef != nil && ef.SecretRef.Name == secret && has(nil) {
				return "envFrom"
			}
		}
	}
	return ""
}

// policyAdmits tells whether a NetworkPolicy rule's ports take the container port.
func policyAdmits(ports []networkingv1.NetworkPolicyPort, cp *corev1.ContainerPort) bool {
	if len(ports) == 0 {
		return true
	}
	for _, p := range ports {
		if p.Protocol != nil && *p.Protocol != corev1.ProtocolTCP {
			continue
		}
		switch {
		case p.Port == nil:
			return true
		case p.Port.Type == intstr.String:
			if p.Port.StrVal == cp.Name {
				return true
			}
		case p.EndPort != nil:
			if p.Port.IntVal <= cp.ContainerPort && cp.ContainerPort <= *p.EndPort {
				return true
			}
		default:
			if p.Port.IntVal == cp.ContainerPort {
				return true
			}
		}
	}
	return false
}

// TestSplitNetworkPolicy: where policies are enforced, only onsale pods reach a tier's internal
// port, every tier that calls another is among them, and the public and debug ports stay open.
func TestSplitNetworkPolicy(t *testing.T) {
	m := loadSplitManifests(t)
	tiers := loadSplitTiers(t, m)
	for _, tier := range tiers {
		podLabels := labels.Set(tier.d.Spec.Template.Labels)
		var rules []networkingv1.NetworkPolicyIngressRule
		for _, np := range m.networkPolicies {
			sel, err := metav1.LabelSelectorAsSelector(&np.Spec.PodSelector)
			if err != nil || !sel.Matches(podLabels) {
				continue
			}
			if !slices.Contains(np.Spec.PolicyTypes, networkingv1.PolicyTypeIngress) {
				continue
			}
			rules = append(rules, np.Spec.Ingress...)
		}
		if rules == nil {
			t.Errorf("%s: no NetworkPolicy restricts who reaches its pods", tier.d.Name)
			continue
		}
		internal, http, debug := containerPort(tier.c, "internal"), containerPort(tier.c, "http"), containerPort(tier.c, "debug")
		if internal == nil || http == nil || debug == nil {
			t.Errorf("%s: want container ports named http, internal and debug", tier.d.Name)
			continue
		}
		admitted := func(cp *corev1.ContainerPort) bool {
			return slices.ContainsFunc(rules, func(r networkingv1.NetworkPolicyIngressRule) bool { return policyAdmits(r.Ports, cp) })
		}
		if !admitted(http) {
			t.Errorf("%s: the NetworkPolicy leaves no way to its public port: the Ingress could not reach it", tier.d.Name)
		}
		if !admitted(debug) {
			t.Errorf("%s: the NetworkPolicy leaves no way to its debug port: Prometheus could not scrape it", tier.d.Name)
		}
		// Who may reach the internal port: only peers that are onsale pods of this namespace.
		var peers []networkingv1.NetworkPolicyPeer
		for _, r := range rules {
			if !policyAdmits(r.Ports, internal) {
				continue
			}
			if len(r.From) == 0 {
				t.Errorf("%s: a NetworkPolicy rule admits anyone to the internal port %d", tier.d.Name, internal.ContainerPort)
			}
			peers = append(peers, r.From...)
		}
		notOnsale := labels.Set{}
		for k, v := range podLabels {
			notOnsale[k] = v
		}
		notOnsale["app.kubernetes.io/name"] = "something-else"
		for _, p := range peers {
			if p.IPBlock != nil || p.NamespaceSelector != nil || p.PodSelector == nil {
				t.Errorf("%s: the internal port admits %+v: want onsale pods of this namespace only (a podSelector alone)", tier.d.Name, p)
				continue
			}
			sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
			if err != nil || sel.Empty() || sel.Matches(notOnsale) {
				t.Errorf("%s: the internal port admits pods by %v, which takes pods other than onsale's", tier.d.Name, p.PodSelector)
			}
		}
		// Every tier that calls this one is admitted.
		for _, caller := range tiers {
			calls := false
			for module := range tier.local {
				calls = calls || (!caller.local[module] && caller.cfg.Internal.URL(module) != "")
			}
			if !calls {
				continue
			}
			callerLabels := labels.Set(caller.d.Spec.Template.Labels)
			ok := slices.ContainsFunc(peers, func(p networkingv1.NetworkPolicyPeer) bool {
				sel, err := metav1.LabelSelectorAsSelector(p.PodSelector)
				return p.PodSelector != nil && err == nil && sel.Matches(callerLabels)
			})
			if !ok {
				t.Errorf("%s calls %s's internal API, but the NetworkPolicy does not admit it", caller.d.Name, tier.d.Name)
			}
		}
	}
}

// ingressRoute is one path of an Ingress rule.
type ingressRoute struct {
	ing      *networkingv1.Ingress
	path     string
	pathType networkingv1.PathType
	backend  networkingv1.IngressServiceBackend
}

// ingressMatch picks the route a request path takes, as the Ingress API defines it: an Exact
// path over a Prefix one of the same length, else the longest Prefix matching whole path
// elements.
func ingressMatch(routes []ingressRoute, path string) *ingressRoute {
	var best *ingressRoute
	for i := range routes {
		r := &routes[i]
		var ok bool
		switch r.pathType {
		case networkingv1.PathTypeExact:
			ok = path == r.path
		case networkingv1.PathTypePrefix:
			prefix := strings.TrimSuffix(r.path, "/")
			ok = prefix == "" || path == prefix || strings.HasPrefix(path, prefix+"/")
		}
		if !ok {
			continue
		}
		if best == nil || len(r.path) > len(best.path) ||
			(len(r.path) == len(best.path) && r.pathType == networkingv1.PathTypeExact) {
			best = r
		}
	}
	return best
}

// TestSplitIngress: every operation of the API reaches, by its path, a tier that runs its module,
// on the tier's public port; the order event streams are unbuffered and held open; nothing is
// routed to an internal or debug port.
func TestSplitIngress(t *testing.T) {
	m := loadSplitManifests(t)
	tiers := loadSplitTiers(t, m)
	var routes []ingressRoute
	for _, ing := range m.ingresses {
		if ing.Spec.DefaultBackend != nil {
			t.Errorf("Ingress %s has a default backend: route by path only", ing.Name)
		}
		for _, rule := range ing.Spec.Rules {
			if rule.HTTP == nil {
				continue
			}
			for _, p := range rule.HTTP.Paths {
				if p.PathType == nil || (*p.PathType != networkingv1.PathTypeExact && *p.PathType != networkingv1.PathTypePrefix) {
					t.Errorf("Ingress %s path %s: want pathType Exact or Prefix (ImplementationSpecific differs between controllers)", ing.Name, p.Path)
					continue
				}
				if p.Backend.Service == nil {
					t.Errorf("Ingress %s path %s has no Service backend", ing.Name, p.Path)
					continue
				}
				routes = append(routes, ingressRoute{ing: ing, path: p.Path, pathType: *p.PathType, backend: *p.Backend.Service})
			}
		}
	}
	// Every backend is a Service port that reaches the public port of a tier.
	reach := func(r *ingressRoute) map[*splitTier]*corev1.ContainerPort {
		svc := m.service(r.backend.Name)
		if svc == nil {
			t.Errorf("Ingress %s path %s: no Service %s", r.ing.Name, r.path, r.backend.Name)
			return nil
		}
		for _, sp := range svc.Spec.Ports {
			if (r.backend.Port.Name != "" && sp.Name == r.backend.Port.Name) || (r.backend.Port.Name == "" && sp.Port == r.backend.Port.Number) {
				return serviceTarget(svc, sp, tiers)
			}
		}
		t.Errorf("Ingress %s path %s: Service %s has no port %v", r.ing.Name, r.path, svc.Name, r.backend.Port)
		return nil
	}
	for i := range routes {
		for tier, cp := range reach(&routes[i]) {
			if cp.Name != "http" {
				t.Errorf("Ingress %s path %s reaches port %s of %s: only the public port is for the outside", routes[i].ing.Name, routes[i].path, cp.Name, tier.d.Name)
			}
		}
	}
	for _, api := range apiRoutes(t) {
		if gap, ok := ingressGaps[api.tag]; ok {
			t.Logf("%s %s: not routed by the split Ingress: %s", api.method, api.path, gap)
			continue
		}
		r := ingressMatch(routes, api.path)
		if r == nil {
			t.Errorf("%s %s: no Ingress routes it", api.method, api.path)
			continue
		}
		targets := reach(r)
		if len(targets) == 0 {
			t.Errorf("%s %s: Ingress %s path %s reaches no tier", api.method, api.path, r.ing.Name, r.path)
		}
		for tier := range targets {
			if api.module != "" && !tier.local[api.module] {
				t.Errorf("%s %s goes to %s (Ingress %s, path %s), which does not run %s", api.method, api.path, tier.d.Name, r.ing.Name, r.path, api.module)
			}
		}
	}
	// The event streams: unbuffered, and a read timeout that outlasts the heartbeats.
	for _, es := range eventStreams {
		stream := ingressMatch(routes, es.path)
		if stream == nil {
			t.Errorf("no Ingress routes %s", es.name)
			continue
		}
		ann := stream.ing.Annotations
		if ann["nginx.ingress.kubernetes.io/proxy-buffering"] != "off" {
			t.Errorf("Ingress %s (%s) does not turn proxy buffering off", stream.ing.Name, es.name)
		}
		if n, err := strconv.Atoi(ann["nginx.ingress.kubernetes.io/proxy-read-timeout"]); err != nil || n < 300 {
			t.Errorf("Ingress %s (%s): proxy-read-timeout %q, want 300 seconds or more", stream.ing.Name, es.name, ann["nginx.ingress.kubernetes.io/proxy-read-timeout"])
		}
	}
	// What an Ingress sends for /metrics, /debug or /internal reaches a public port, where the
	// server does not serve them (the debug listener is set, and internal routes have a
	// listener of their own).
	for _, tier := range tiers {
		if tier.cfg.DebugAddr == "" {
			t.Errorf("%s: ONSALE_DEBUG_ADDR is empty, so its public port would serve /metrics", tier.d.Name)
		}
		if tier.cfg.Internal.Addr == "" || listenPort(tier.cfg.Internal.Addr) == listenPort(tier.cfg.HTTP.Addr) {
			t.Errorf("%s: the internal API needs a listener of its own (ONSALE_INTERNAL_ADDR=%q)", tier.d.Name, tier.cfg.Internal.Addr)
		}
	}
}

// ---- docker compose ----

type composeFile struct {
	Name     string                    `yaml:"name"`
	Services map[string]composeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes  map[string]any `yaml:"volumes"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
}

type composeService struct {
	Image           string                   `yaml:"image"`
	Build           composeBuild             `yaml:"build"`
	Command         []string                 `yaml:"command"`
	Environment     map[string]any           `yaml:"environment"`
	Secrets         []string                 `yaml:"secrets"`
	DependsOn       map[string]any           `yaml:"-"` // list or map in compose; see UnmarshalYAML
	Ports           []string                 `yaml:"ports"`
	Expose          []string                 `yaml:"expose"`
	Volumes         []string                 `yaml:"volumes"`
	Healthcheck     *struct{ Test []string } `yaml:"healthcheck"`
	Profiles        []string                 `yaml:"profiles"`
	ReadOnly        bool                     `yaml:"read_only"`
	StopGracePeriod string                   `yaml:"stop_grace_period"`
}

type composeBuild struct {
	Context    string `yaml:"context"`
	Dockerfile string `yaml:"dockerfile"`
}

// UnmarshalYAML takes depends_on as a list or a map.
func (s *composeService) UnmarshalYAML(n *yamlv3.Node) error {
	type plain composeService
	var raw struct {
		plain     `yaml:",inline"`
		DependsOn yamlv3.Node `yaml:"depends_on"`
	}
	if err := n.Decode(&raw); err != nil {
		return err
	}
	*s = composeService(raw.plain)
	s.DependsOn = map[string]any{}
	switch raw.DependsOn.Kind {
	case 0:
	case yamlv3.SequenceNode:
		var names []string
		if err := raw.DependsOn.Decode(&names); err != nil {
			return err
		}
		for _, name := range names {
			s.DependsOn[name] = nil
		}
	default:
		if err := raw.DependsOn.Decode(&s.DependsOn); err != nil {
			return err
		}
	}
	return nil
}

func (s composeService) env(name string) string {
	v, ok := s.Environment[name]
	if !ok || v == nil {
		return ""
	}
	return fmt.Sprint(v)
}

// envValues is the service's environment as the server sees it.
func (s composeService) envValues(service string) map[string]envValue {
	env := map[string]envValue{}
	for k := range s.Environment {
		env[k] = envValue{value: s.env(k), source: service}
	}
	return env
}

// hostPort is the host side of a published port ("8081" of "8081:8080" or "127.0.0.1:8081:8080").
func hostPort(published string) string {
	parts := strings.Split(published, ":")
	if len(parts) < 2 {
		return ""
	}
	return parts[len(parts)-2]
}

func loadCompose(t *testing.T) *composeFile {
	t.Helper()
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	return &cf
}

func TestCompose(t *testing.T) {
	cf := loadCompose(t)
	known := knownSettings(t)

	var replicas []string
	for name, s := range cf.Services {
		if s.Build.Dockerfile != "" && len(s.Command) == 0 && len(s.Profiles) == 0 {
			replicas = append(replicas, name)
		}
	}
	sort.Strings(replicas)
	if !slices.Equal(replicas, []string{"onsale-1", "onsale-2", "onsale-3"}) {
		t.Fatalf("server replicas built from the Dockerfile: %v, want onsale-1, onsale-2, onsale-3", replicas)
	}
	for _, infra := range []string{"redis", "postgres", "nats", "nginx", "provider"} {
		if _, ok := cf.Services[infra]; !ok {
			t.Errorf("no %s service", infra)
		}
	}
	if got := cf.Services["redis"].Image; got != "redis:7.0" {
		t.Errorf("redis image %q, want redis:7.0", got)
	}
	redisCmd := strings.Join(cf.Services["redis"].Command, " ")
	for _, want := range []string{"--maxmemory-policy noeviction", "--appendonly no", "--save "} {
		if !strings.Contains(redisCmd+" ", want) {
			t.Errorf("redis command %q lacks %q", redisCmd, want)
		}
	}
	if got := cf.Services["postgres"].Image; got != "postgres:15" {
		t.Errorf("postgres image %q, want postgres:15", got)
	}
	if got := cf.Services["nats"].Image; got != "nats:2.10-alpine" {
		t.Errorf("nats image %q, want nats:2.10-alpine", got)
	}
	if !slices.Contains(cf.Services["nats"].Command, "-js") {
		t.Error("nats runs without -js (JetStream)")
	}
	for _, name := range []string{"redis", "postgres", "nats"} {
		if hc := cf.Services[name].Healthcheck; hc == nil || len(hc.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	provider := cf.Services["provider"]
	if !slices.Equal(provider.Command, []string{"admin", "simulate-provider", "--addr", "0.0.0.0:9090"}) {
		t.Errorf("provider command %v", provider.Command)
	}
	if provider.Build.Dockerfile == "" {
		t.Error("the provider is not built from the server's Dockerfile")
	}

	var subnet netip.Prefix
	if n, ok := cf.Networks["default"]; ok && len(n.IPAM.Config) > 0 {
		var err error
		if subnet, err = netip.ParsePrefix(n.IPAM.Config[0].Subnet); err != nil {
			t.Errorf("default network subnet: %v", err)
		}
	}
	gitignore, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range replicas {
		s := cf.Services[name]
		if filepath.Clean(filepath.Join(s.Build.Context, s.Build.Dockerfile)) != filepath.Clean("../Dockerfile") {
			t.Errorf("%s is built from %s/%s, want ../Dockerfile", name, s.Build.Context, s.Build.Dockerfile)
		}
		if _, err := os.Stat(filepath.Join(s.Build.Context, s.Build.Dockerfile)); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		if s.env("ONSALE_ENV") != "production" {
			t.Errorf("%s: ONSALE_ENV = %q, want production", name, s.env("ONSALE_ENV"))
		}
		for _, v := range requiredInProduction {
			if s.env(v) == "" {
				t.Errorf("%s: %s is not set", name, v)
			}
		}
		for v := range s.Environment {
			if strings.HasPrefix(v, "ONSALE_") && !known[v] {
				t.Errorf("%s: %s is not a setting of the server", name, v)
			}
		}
		for v, host := range map[string]string{"ONSALE_REDIS_URL": "redis", "ONSALE_DATABASE_URL": "postgres", "ONSALE_NATS_URL": "nats", "ONSALE_PROVIDER_URL": "provider"} {
			if !strings.Contains(s.env(v), "://"+host+":") && !strings.Contains(s.env(v), "@"+host+":") {
				t.Errorf("%s: %s = %q does not point at the %s service", name, v, s.env(v), host)
			}
			if _, ok := s.DependsOn[host]; !ok {
				t.Errorf("%s does not depend on %s", name, host)
			}
		}
		for _, v := range []string{"ONSALE_JWT_KEYS_FILE", "ONSALE_TICKET_KEYS_FILE"} {
			secret, ok := strings.CutPrefix(s.env(v), "/run/secrets/")
			if !ok || !slices.Contains(s.Secrets, secret) {
				t.Errorf("%s: %s = %q is not one of its secrets", name, v, s.env(v))
				continue
			}
			file := cf.Secrets[secret].File
			if file == "" {
				t.Errorf("secret %s has no file", secret)
				continue
			}
			if !slices.Contains(strings.Fields(string(gitignore)), filepath.Base(file)) {
				t.Errorf("deploy/.gitignore does not list %s (a private key)", filepath.Base(file))
			}
		}
		proxies := s.env("ONSALE_TRUSTED_PROXIES")
		if p, err := netip.ParsePrefix(proxies); err != nil || p != subnet {
			t.Errorf("%s: ONSALE_TRUSTED_PROXIES = %q, want the compose network's range %s", name, proxies, subnet)
		}
		env := s.envValues(name)
		serverAccepts(t, name, env, "")
		drain := durationSetting(t, env, "ONSALE_DRAIN_DELAY", defaultDrainDelay)
		shutdown := durationSetting(t, env, "ONSALE_SHUTDOWN_TIMEOUT", defaultShutdownTimeout)
		grace, err := time.ParseDuration(s.StopGracePeriod)
		if err != nil || grace <= shutdown || grace < drain+shutdown {
			t.Errorf("%s: stop_grace_period %q must exceed the drain delay + shutdown timeout (%s)", name, s.StopGracePeriod, drain+shutdown)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes ports: only nginx should", name)
		}
	}

	nginx := cf.Services["nginx"]
	mounted := false
	for _, v := range nginx.Volumes {
		mounted = mounted || strings.HasPrefix(v, "./nginx/nginx.conf:")
	}
	if !mounted {
		t.Error("nginx does not mount ./nginx/nginx.conf")
	}
	for _, r := range replicas {
		if _, ok := nginx.DependsOn[r]; !ok {
			t.Errorf("nginx does not depend on %s", r)
		}
	}
	checkNginx(t, replicas)

	// The optional observability profile mounts files that exist.
	for _, name := range []string{"prometheus", "grafana"} {
		for _, v := range cf.Services[name].Volumes {
			src, _, _ := strings.Cut(v, ":")
			if strings.HasPrefix(src, "./") {
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s mounts %s: %v", name, src, err)
				}
			}
		}
	}
}

// readNginxConf reads an nginx configuration of deploy/nginx without its comments, so that prose
// cannot satisfy a check.
func readNginxConf(t *testing.T, file string) string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("nginx", file))
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, line := range strings.Split(string(data), "\n") {
		line, _, _ = strings.Cut(line, "#")
		b.WriteString(line + "\n")
	}
	conf := b.String()
	if strings.Count(conf, "{") != strings.Count(conf, "}") {
		t.Fatalf("%s: unbalanced braces", file)
	}
	return conf
}

// nginxUpstreams returns the upstream blocks of a configuration: their servers (host:port) by
// name.
func nginxUpstreams(t *testing.T, file, conf string) map[string][]string {
	t.Helper()
	out := map[string][]string{}
	for _, u := range regexp.MustCompile(`(?s)upstream\s+(\w+)\s*\{(.*?)\}`).FindAllStringSubmatch(conf, -1) {
		if regexp.MustCompile(`(?m)^\s*keepalive\s`).MatchString(u[2]) {
			t.Errorf("%s: the upstream %s keeps connections alive: a draining process would fail requests already sent", file, u[1])
		}
		servers := []string{}
		for _, sv := range regexp.MustCompile(`(?m)^\s*server\s+([^\s;]+)`).FindAllStringSubmatch(u[2], -1) {
			servers = append(servers, sv[1])
		}
		out[u[1]] = servers
	}
	if len(out) == 0 {
		t.Fatalf("%s has no upstream block", file)
	}
	return out
}

// TestComposeSplit: the split profile runs each module in a service of its own, from the same
// image, with settings the server accepts; the services find one another on their internal ports
// and share one internal secret; only auth holds the JWT keys and only payment the ticket keys;
// nginx-split routes every operation by path to the service that runs its module, and
// Prometheus scrapes every container of them.
func TestComposeSplit(t *testing.T) {
	cf := loadCompose(t)
	gitignore, err := os.ReadFile(".gitignore")
	if err != nil {
		t.Fatal(err)
	}
	var subnet netip.Prefix
	if n, ok := cf.Networks["default"]; ok && len(n.IPAM.Config) > 0 {
		subnet, _ = netip.ParsePrefix(n.IPAM.Config[0].Subnet)
	}

	type process struct {
		name  string
		s     composeService
		cfg   *app.Config
		local map[string]bool
	}
	var procs []*process
	runs := map[string]*process{}
	for name, s := range cf.Services {
		if !slices.Contains(s.Profiles, "split") || s.Build.Dockerfile == "" {
			continue
		}
		if s.Image != "" {
			t.Errorf("%s: image %q; the split processes are built from the repository like the replicas", name, s.Image)
		}
		if filepath.Clean(filepath.Join(s.Build.Context, s.Build.Dockerfile)) != filepath.Clean("../Dockerfile") {
			t.Errorf("%s is built from %s/%s, want ../Dockerfile", name, s.Build.Context, s.Build.Dockerfile)
		}
		modules := modulesFlag(t, name, s.Command)
		local, err := app.ParseModules(modules)
		if err != nil || modules == "" || modules == "all" {
			t.Errorf("%s: command %v: a split process names the modules it runs (%v)", name, s.Command, err)
			continue
		}
		if want := "onsale-" + strings.ReplaceAll(modules, ",", "-"); name != want {
			t.Errorf("service %s runs --modules=%s; name it %s", name, modules, want)
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes ports: only nginx-split should", name)
		}
		if got := s.env("ONSALE_TRUSTED_PROXIES"); got != subnet.String() {
			t.Errorf("%s: ONSALE_TRUSTED_PROXIES = %q, want the compose network's range %s", name, got, subnet)
		}
		env := s.envValues(name)
		drain := durationSetting(t, env, "ONSALE_DRAIN_DELAY", defaultDrainDelay)
		shutdown := durationSetting(t, env, "ONSALE_SHUTDOWN_TIMEOUT", defaultShutdownTimeout)
		if grace, err := time.ParseDuration(s.StopGracePeriod); err != nil || grace < drain+shutdown {
			t.Errorf("%s: stop_grace_period %q must exceed the drain delay + shutdown timeout (%s)", name, s.StopGracePeriod, drain+shutdown)
		}
		if !s.ReadOnly {
			t.Errorf("%s: read_only is not true", name)
		}
		p := &process{name: name, s: s, cfg: serverAccepts(t, name, env, modules), local: local}
		procs = append(procs, p)
		for m := range local {
			if other := runs[m]; other != nil {
				t.Errorf("module %s runs in both %s and %s: a split service per module (scale a service for more)", m, other.name, name)
			}
			runs[m] = p
		}
	}
	for _, m := range app.ModuleNames() {
		if runs[m] == nil {
			t.Errorf("no service of the split profile runs %s", m)
		}
	}
	if t.Failed() {
		t.FailNow()
	}
	sort.Slice(procs, func(i, j int) bool { return procs[i].name < procs[j].name })

	internalSecret := ""
	for _, p := range procs {
		// Connections: each service waits for what it uses.
		for v, host := range map[string]string{"ONSALE_REDIS_URL": "redis", "ONSALE_DATABASE_URL": "postgres", "ONSALE_NATS_URL": "nats", "ONSALE_PROVIDER_URL": "provider"} {
			if p.s.env(v) == "" {
				continue
			}
			if !strings.Contains(p.s.env(v), "://"+host+":") && !strings.Contains(p.s.env(v), "@"+host+":") {
				t.Errorf("%s: %s = %q does not point at the %s service", p.name, v, p.s.env(v), host)
			}
			if _, ok := p.s.DependsOn[host]; !ok {
				t.Errorf("%s uses %s but does not depend on it", p.name, host)
			}
		}
		// The files: compose secrets, git-ignored.
		file := func(setting string) string {
			secret, ok := strings.CutPrefix(p.s.env(setting), "/run/secrets/")
			if !ok || !slices.Contains(p.s.Secrets, secret) {
				t.Errorf("%s: %s = %q is not one of its secrets", p.name, setting, p.s.env(setting))
				return ""
			}
			f := cf.Secrets[secret].File
			if f == "" {
				t.Errorf("secret %s has no file", secret)
			} else if !slices.Contains(strings.Fields(string(gitignore)), filepath.Base(f)) {
				t.Errorf("deploy/.gitignore does not list %s (secret %s)", filepath.Base(f), secret)
			}
			return secret
		}
		if secret := file("ONSALE_INTERNAL_SECRET_FILE"); secret != "" {
			if internalSecret == "" {
				internalSecret = secret
			} else if secret != internalSecret {
				t.Errorf("%s reads the internal secret %s, another process %s: every process must present the same one", p.name, secret, internalSecret)
			}
		}
		for _, keys := range []struct{ module, setting, secret string }{
			{app.Auth, "ONSALE_JWT_KEYS_FILE", "jwt-keys"}, {app.Payment, "ONSALE_TICKET_KEYS_FILE", "ticket-keys"},
		} {
			if p.local[keys.module] {
				file(keys.setting)
				continue
			}
			if v := p.s.env(keys.setting); v != "" {
				t.Errorf("%s sets %s=%q without running %s", p.name, keys.setting, v, keys.module)
			}
			if slices.Contains(p.s.Secrets, keys.secret) {
				t.Errorf("%s is given the secret %s (%s's private keys) without running %s", p.name, keys.secret, keys.module, keys.module)
			}
		}
		// Where the other modules are: the internal port of the service that runs each, and
		// only those the modules here call.
		internalPort := listenPort(p.cfg.Internal.Addr)
		if internalPort == 0 || internalPort == listenPort(p.cfg.HTTP.Addr) {
			t.Errorf("%s: ONSALE_INTERNAL_ADDR=%q: the internal API needs a port of its own", p.name, p.cfg.Internal.Addr)
		}
		needs := map[string]bool{}
		for _, r := range app.Registrations() {
			for _, dep := range r.DependsOn {
				if p.local[r.Name] && !p.local[dep] {
					needs[dep] = true
				}
			}
		}
		for _, m := range app.ModuleNames() {
			raw := p.cfg.Internal.URL(m)
			if raw == "" {
				continue
			}
			if !needs[m] {
				t.Errorf("%s sets %s=%s, but no module it runs calls %s", p.name, settingOf(m), raw, m)
				continue
			}
			target := runs[m]
			u, err := url.Parse(raw)
			if err != nil || u.Scheme != "http" || u.Hostname() != target.name || u.Port() != strconv.Itoa(int(listenPort(target.cfg.Internal.Addr))) {
				t.Errorf("%s: %s=%s; want http://%s%s, the internal API of the service that runs %s", p.name, settingOf(m), raw, target.name, target.cfg.Internal.Addr, m)
			}
		}
	}

	// nginx-split: its own configuration and port, after the processes.
	ng, ok := cf.Services["nginx-split"]
	if !ok {
		t.Fatal("no nginx-split service")
	}
	if !slices.Contains(ng.Profiles, "split") {
		t.Error("nginx-split is not in the split profile")
	}
	mounted := false
	for _, v := range ng.Volumes {
		mounted = mounted || strings.HasPrefix(v, "./nginx/split.conf:/etc/nginx/nginx.conf")
	}
	if !mounted {
		t.Error("nginx-split does not mount ./nginx/split.conf as its nginx.conf")
	}
	if len(ng.Ports) != 1 || len(cf.Services["nginx"].Ports) == 0 || hostPort(ng.Ports[0]) == hostPort(cf.Services["nginx"].Ports[0]) {
		t.Errorf("nginx-split publishes %v, nginx %v: one port, not nginx's, so both shapes can run at once", ng.Ports, cf.Services["nginx"].Ports)
	}
	for _, p := range procs {
		if _, ok := ng.DependsOn[p.name]; !ok {
			t.Errorf("nginx-split does not depend on %s", p.name)
		}
	}
	public := map[string]string{} // host:port of each process's public listener → its name
	for _, p := range procs {
		public[fmt.Sprintf("%s:%d", p.name, listenPort(p.cfg.HTTP.Addr))] = p.name
	}
	checkSplitNginx(t, public, func(name, module string) bool {
		for _, p := range procs {
			if p.name == name {
				return p.local[module]
			}
		}
		return false
	})

	// Prometheus finds every container of each split service on its debug port.
	job := scrapeJobs(t)["onsale"]
	for _, p := range procs {
		want := fmt.Sprintf("%s:%d", p.name, listenPort(p.cfg.DebugAddr))
		if !slices.Contains(job.dnsTargets, want) {
			t.Errorf("prometheus.yml does not find %s's containers on their debug port (%s; DNS targets %v)", p.name, want, job.dnsTargets)
		}
	}
}

// checkSplitNginx: split.conf proxies only to the processes' public listeners (public: host:port
// → service), sends every operation of the API to a process that runs its module (runs), streams
// order events unbuffered, and refuses metrics, profiles and the internal API.
func checkSplitNginx(t *testing.T, public map[string]string, runs func(service, module string) bool) {
	t.Helper()
	conf := readNginxConf(t, "split.conf")
	upstreams := nginxUpstreams(t, "split.conf", conf)
	for name, servers := range upstreams {
		if len(servers) == 0 {
			t.Errorf("split.conf: upstream %s has no server", name)
		}
		for _, sv := range servers {
			if _, ok := public[sv]; !ok {
				t.Errorf("split.conf: upstream %s sends to %s, which is not the public listener of a split process (%v)", name, sv, public)
			}
		}
	}
	checkNginxProxying(t, "split.conf", conf)
	locs := nginxLocations(conf)
	for _, uri := range []string{"/internal/v1/livez", "/internal/v1/holds/x/commit", "/internal/v1/jwks.json"} {
		if l := selectLocation(locs, uri); !nginxRefuses(l) {
			t.Errorf("split.conf: %s from outside is not refused (location %v)", uri, l)
		}
	}
	proxiedTo := func(l *nginxLocation) []string {
		m := regexp.MustCompile(`proxy_pass\s+http://(\w+)\s*;`).FindStringSubmatch(l.body)
		if m == nil {
			return nil
		}
		return upstreams[m[1]]
	}
	for _, api := range apiRoutes(t) {
		l := selectLocation(locs, api.path)
		if api.path == "/metrics" {
			continue // refused above: metrics are on the debug port
		}
		servers := []string(nil)
		if l != nil {
			servers = proxiedTo(l)
		}
		if len(servers) == 0 {
			t.Errorf("split.conf: %s %s is not proxied (location %v)", api.method, api.path, l)
			continue
		}
		for _, sv := range servers {
			if api.module != "" && !runs(public[sv], api.module) {
				t.Errorf("split.conf: %s %s goes to %s (%v), which does not run %s", api.method, api.path, sv, l, api.module)
			}
		}
		// Every process that runs the module takes its share.
		for addr, service := range public {
			if api.module != "" && runs(service, api.module) && !slices.Contains(servers, addr) {
				t.Errorf("split.conf: %s %s never goes to %s, which runs %s", api.method, api.path, addr, api.module)
			}
		}
	}
}

func checkNginx(t *testing.T, replicas []string) {
	t.Helper()
	conf := readNginxConf(t, "nginx.conf")
	upstreams := nginxUpstreams(t, "nginx.conf", conf)
	if len(upstreams) != 1 {
		t.Fatalf("nginx.conf: want one upstream, the replicas; found %v", upstreams)
	}
	for name, servers := range upstreams {
		for _, r := range replicas {
			if !slices.Contains(servers, r+":8080") {
				t.Errorf("the upstream does not list %s:8080", r)
			}
		}
		if !strings.Contains(conf, "proxy_pass http://"+name) {
			t.Errorf("nothing is proxied to the upstream %s", name)
		}
	}
	checkNginxProxying(t, "nginx.conf", conf)
}

// checkNginxProxying: what nginx in front of onsale must do whatever it balances over: retry a
// request only when it was not sent, pass the client's address, stream order events unbuffered,
// refuse metrics and profiles, and proxy the API.
func checkNginxProxying(t *testing.T, file, conf string) {
	t.Helper()
	if !regexp.MustCompile(`proxy_next_upstream\s+error\s+timeout\s*;`).MatchString(conf) {
		t.Errorf("%s: no `proxy_next_upstream error timeout;`", file)
	}
	if !regexp.MustCompile(`proxy_set_header\s+X-Forwarded-For\s+\$proxy_add_x_forwarded_for\s*;`).MatchString(conf) {
		t.Errorf("%s: X-Forwarded-For is not set", file)
	}
	loc := regexp.MustCompile(`(?s)location\s+~\s+(\S+)\s*\{(.*?)\}`).FindAllStringSubmatch(conf, -1)
	for _, stream := range eventStreams {
		found := false
		for _, l := range loc {
			re, err := regexp.Compile(l[1])
			if err != nil || !re.MatchString(stream.path) || re.MatchString(stream.not) {
				continue
			}
			found = true
			if !regexp.MustCompile(`proxy_buffering\s+off\s*;`).MatchString(l[2]) {
				t.Errorf("%s: the location of %s does not turn proxy_buffering off", file, stream.name)
			}
			m := regexp.MustCompile(`proxy_read_timeout\s+(\d+)([smh]?)\s*;`).FindStringSubmatch(l[2])
			if m == nil {
				t.Errorf("%s: the location of %s has no proxy_read_timeout", file, stream.name)
			} else if d, _ := time.ParseDuration(m[1] + map[string]string{"": "s"}[m[2]] + m[2]); d < 5*time.Minute {
				t.Errorf("%s: the location of %s has a read timeout %s%s, short for an event stream", file, stream.name, m[1], m[2])
			}
		}
		if !found {
			t.Errorf("%s: no location for %s", file, stream.name)
		}
	}

	// Metrics and profiles are refused from outside; the API is still proxied.
	locs := nginxLocations(conf)
	for _, uri := range []string{"/metrics", "/metrics/", "/debug/pprof/", "/debug/pprof/profile", "/debug/vars"} {
		if l := selectLocation(locs, uri); !nginxRefuses(l) {
			t.Errorf("%s: GET %s from outside is not refused (location %v)", file, uri, l)
		}
	}
	for _, uri := range []string{"/v1/events", "/readyz", "/v1/orders/0b7e9a5c-6f0e-4f35-9a77-8f3f5d3f0a11/events", "/metricsx", "/v1/metrics"} {
		if l := selectLocation(locs, uri); l == nil || !strings.Contains(l.body, "proxy_pass") {
			t.Errorf("%s: GET %s is not proxied (location %v)", file, uri, l)
		}
	}
}

// nginxRefuses tells whether a location answers by itself with a refusal, proxying nothing.
func nginxRefuses(l *nginxLocation) bool {
	return l != nil && regexp.MustCompile(`(return\s+(403|404)|deny\s+all)\s*;`).MatchString(l.body) && !strings.Contains(l.body, "proxy_pass")
}

// nginxLocation is one location block of nginx.conf (bodies without nested blocks).
type nginxLocation struct {
	modifier, path, body string
}

func (l *nginxLocation) String() string { return "location " + l.modifier + " " + l.path }

func nginxLocations(conf string) []nginxLocation {
	var out []nginxLocation
	for _, m := range regexp.MustCompile(`(?s)location\s+(=|~\*|~|\^~)?\s*(\S+)\s*\{(.*?)\}`).FindAllStringSubmatch(conf, -1) {
		out = append(out, nginxLocation{modifier: m[1], path: m[2], body: m[3]})
	}
	return out
}

// selectLocation picks the location nginx uses for uri: an exact match; else the longest prefix
// if it is ^~; else the first matching regular expression in order; else the longest prefix.
func selectLocation(locs []nginxLocation, uri string) *nginxLocation {
	var prefix *nginxLocation
	for i := range locs {
		l := &locs[i]
		switch l.modifier {
		case "=":
			if l.path == uri {
				return l
			}
		case "", "^~":
			if strings.HasPrefix(uri, l.path) && (prefix == nil || len(l.path) > len(prefix.path)) {
				prefix = l
			}
		}
	}
	if prefix != nil && prefix.modifier == "^~" {
		return prefix
	}
	for i := range locs {
		l := &locs[i]
		if l.modifier != "~" && l.modifier != "~*" {
			continue
		}
		expr := l.path
		if l.modifier == "~*" {
			expr = "(?i)" + expr
		}
		if re, err := regexp.Compile(expr); err == nil && re.MatchString(uri) {
			return l
		}
	}
	return prefix
}

// ---- Prometheus alert rules ----

type ruleFile struct {
	Groups []struct {
		Name     string `yaml:"name"`
		Interval string `yaml:"interval"`
		Rules    []struct {
			Alert         string            `yaml:"alert"`
			Record        string            `yaml:"record"`
			Expr          string            `yaml:"expr"`
			For           string            `yaml:"for"`
			KeepFiringFor string            `yaml:"keep_firing_for"`
			Labels        map[string]string `yaml:"labels"`
			Annotations   map[string]string `yaml:"annotations"`
		} `yaml:"rules"`
	} `yaml:"groups"`
}

var promDuration = regexp.MustCompile(`^([0-9]+(ms|s|m|h|d|w|y))+$`)

func TestAlertRules(t *testing.T) {
	data, err := os.ReadFile("prometheus/alerts.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var rf ruleFile
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&rf); err != nil {
		t.Fatalf("alerts.yaml is not a Prometheus rule file: %v", err)
	}
	anchors := operationsAnchors(t)
	seen := map[string]bool{}
	used := map[string]bool{}
	if len(rf.Groups) == 0 {
		t.Fatal("no rule groups")
	}
	for _, g := range rf.Groups {
		if g.Name == "" || len(g.Rules) == 0 {
			t.Errorf("group %q is unnamed or empty", g.Name)
		}
		for _, r := range g.Rules {
			if r.Alert == "" {
				t.Errorf("group %s: a rule without alert (recording rules do not belong here)", g.Name)
				continue
			}
			if seen[r.Alert] {
				t.Errorf("alert %s appears twice", r.Alert)
			}
			seen[r.Alert] = true
			if strings.TrimSpace(r.Expr) == "" {
				t.Errorf("%s: no expr", r.Alert)
			}
			if !promDuration.MatchString(r.For) {
				t.Errorf("%s: for %q is not a duration", r.Alert, r.For)
			}
			switch r.Labels["severity"] {
			case "page", "warning", "info":
			default:
				t.Errorf("%s: severity %q, want page, warning or info", r.Alert, r.Labels["severity"])
			}
			if strings.TrimSpace(r.Annotations["summary"]) == "" {
				t.Errorf("%s: no summary", r.Alert)
			}
			runbook := r.Annotations["runbook_url"]
			_, anchor, ok := strings.Cut(runbook, "docs/operations.md#")
			if !ok || !anchors[anchor] {
				t.Errorf("%s: runbook_url %q does not point at a section of docs/operations.md", r.Alert, runbook)
			}
			if anchor != strings.ToLower(r.Alert) {
				t.Errorf("%s: runbook_url points at #%s, want the alert's own section #%s", r.Alert, anchor, strings.ToLower(r.Alert))
			}
			checkQuery(t, r.Alert, r.Expr, used)
		}
	}
	for _, want := range []string{
		"onsale_http_errors_total", "http_server_request_duration_seconds_bucket", "onsale_payment_breaker_state",
		"onsale_payment_queue_pending", "onsale_payment_outbox_backlog", "onsale_http_shed_total", "process_start_time_seconds",
		"up", "onsale_payment_dead_lettered_total",
	} {
		if !used[want] {
			t.Errorf("no alert watches %s", want)
		}
	}

	// "No replica is up" needs an expression that also fires when there is no series at all:
	// absent(...), since up == 0 alone says nothing once every target is gone.
	noneUp := false
	jobs := scrapeJobs(t)
	for _, g := range rf.Groups {
		for _, r := range g.Rules {
			if regexp.MustCompile(`absent\(\s*up\{`).MatchString(r.Expr) {
				noneUp = true
			}
			for _, m := range regexp.MustCompile(`\bjob\s*=\s*"([^"]*)"`).FindAllStringSubmatch(r.Expr, -1) {
				if _, ok := jobs[m[1]]; !ok {
					t.Errorf("%s: job %q is not a scrape job of prometheus/prometheus.yml", r.Alert, m[1])
				}
			}
		}
	}
	if !noneUp {
		t.Error("no alert fires when no replica is up (absent(up{...} == 1))")
	}
}

// promConfig is the part of prometheus.yml the checks read.
type promConfig struct {
	RuleFiles     []string `yaml:"rule_files"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		MetricsPath   string `yaml:"metrics_path"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
		DNSSDConfigs []struct {
			Names []string `yaml:"names"`
			Type  string   `yaml:"type"`
			Port  int      `yaml:"port"`
		} `yaml:"dns_sd_configs"`
	} `yaml:"scrape_configs"`
}

// scrapeJob is one scrape job of prometheus.yml: its metrics path, its static targets, and the
// names (host:port) it finds targets under in DNS (every address of each name).
type scrapeJob struct {
	path       string
	targets    []string
	dnsTargets []string
}

// scrapeJobs returns prometheus.yml's scrape jobs by name.
func scrapeJobs(t *testing.T) map[string]scrapeJob {
	t.Helper()
	data, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	var pc promConfig
	if err := yamlv3.Unmarshal(data, &pc); err != nil {
		t.Fatalf("prometheus.yml: %v", err)
	}
	jobs := map[string]scrapeJob{}
	for _, sc := range pc.ScrapeConfigs {
		j := jobs[sc.JobName]
		j.path = sc.MetricsPath
		for _, st := range sc.StaticConfigs {
			j.targets = append(j.targets, st.Targets...)
		}
		for _, dc := range sc.DNSSDConfigs {
			if dc.Type != "A" && dc.Type != "AAAA" {
				t.Errorf("prometheus.yml job %s: DNS service discovery of type %q, want A (compose's DNS has no SRV records)", sc.JobName, dc.Type)
			}
			for _, n := range dc.Names {
				j.dnsTargets = append(j.dnsTargets, fmt.Sprintf("%s:%d", n, dc.Port))
			}
		}
		jobs[sc.JobName] = j
	}
	return jobs
}

// operationsAnchors returns the anchors GitHub makes for docs/operations.md's headings.
func operationsAnchors(t *testing.T) map[string]bool {
	t.Helper()
	data, err := os.ReadFile("../docs/operations.md")
	if err != nil {
		t.Fatalf("the runbooks live in docs/operations.md: %v", err)
	}
	anchors := map[string]bool{}
	inFence := false
	for _, line := range strings.Split(string(data), "\n") {
		if strings.HasPrefix(line, "```") {
			inFence = !inFence
		}
		if inFence || !strings.HasPrefix(line, "#") {
			continue
		}
		title := strings.TrimSpace(strings.TrimLeft(line, "#"))
		anchors[githubAnchor(title)] = true
	}
	return anchors
}

func githubAnchor(title string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(title) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '-', r == '_':
			b.WriteRune(r)
		case r == ' ':
			b.WriteRune('-')
		}
	}
	return b.String()
}

// ---- PromQL, roughly ----

var (
	reGrafanaVar = regexp.MustCompile(`\$\{[^}]*\}|\$[A-Za-z_][A-Za-z0-9_]*`)
	reString     = regexp.MustCompile(`"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|` + "`[^`]*`")
	reMatchers   = regexp.MustCompile(`\{[^{}]*\}`)
	reMatcher    = regexp.MustCompile(`([A-Za-z_][A-Za-z0-9_]*)\s*(=~|!~|!=|=)`)
	reRange      = regexp.MustCompile(`\[[^\[\]]*\]`)
	reGrouping   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\(([^()]*)\)`)
	reIdent      = regexp.MustCompile(`[A-Za-z_:][A-Za-z0-9_:]*`)
	promKeywords = set("by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and", "or", "unless",
		"offset", "inf", "nan", "Inf", "NaN", "atan2")
)

// queryNames returns the metric names and the label names a PromQL expression uses. It is no
// parser, but it handles what dashboards and alert rules are made of: functions, aggregations
// with by/without, label matchers, ranges and subqueries, binary operators with on/ignoring and
// group_left/right, numbers, strings and Grafana variables.
func queryNames(expr string) (metrics, labelNames []string, err error) {
	if strings.Count(expr, "(") != strings.Count(expr, ")") || strings.Count(expr, "{") != strings.Count(expr, "}") ||
		strings.Count(expr, "[") != strings.Count(expr, "]") {
		return nil, nil, errors.New("unbalanced brackets")
	}
	s := reGrafanaVar.ReplaceAllString(expr, "0")
	s = reString.ReplaceAllString(s, `""`)
	for _, m := range reMatchers.FindAllString(s, -1) {
		for _, lm := range reMatcher.FindAllStringSubmatch(m, -1) {
			labelNames = append(labelNames, lm[1])
		}
	}
	s = reMatchers.ReplaceAllString(s, " ")
	s = reRange.ReplaceAllString(s, " ")
	for _, g := range reGrouping.FindAllStringSubmatch(s, -1) {
		for _, l := range strings.Split(g[2], ",") {
			if l = strings.TrimSpace(l); l != "" {
				labelNames = append(labelNames, l)
			}
		}
	}
	s = reGrouping.ReplaceAllString(s, " ")
	for _, loc := range reIdent.FindAllStringIndex(s, -1) {
		if loc[0] > 0 {
			if prev := s[loc[0]-1]; prev == '.' || prev >= '0' && prev <= '9' {
				continue // part of a number such as 1e3
			}
		}
		name := s[loc[0]:loc[1]]
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if promKeywords[name] || strings.HasPrefix(rest, "(") {
			continue // keyword, function or aggregation
		}
		metrics = append(metrics, name)
	}
	return metrics, labelNames, nil
}

func TestQueryNames(t *testing.T) {
	metrics, labelNames, err := queryNames(`histogram_quantile(0.99, sum by (le, http_route) (rate(http_server_request_duration_seconds_bucket{http_route=~"/v1/.+",instance=~"$instance"}[$__rate_interval])))
  > 0.1 and on (job, instance) group_left target_info{service_name="onsale"} or deriv(max(onsale_payment_queue_pending)[10m:1m]) > 1e3`)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"http_server_request_duration_seconds_bucket", "target_info", "onsale_payment_queue_pending"}; !slices.Equal(metrics, want) {
		t.Errorf("metrics %v, want %v", metrics, want)
	}
	sort.Strings(labelNames)
	if want := []string{"http_route", "http_route", "instance", "instance", "job", "le", "service_name"}; !slices.Equal(labelNames, want) {
		t.Errorf("labels %v, want %v", labelNames, want)
	}
}

// checkQuery reports metric or label names the server does not export, and records the metrics
// seen in used.
func checkQuery(t *testing.T, where, expr string, used map[string]bool) {
	t.Helper()
	metrics, labelNames, err := queryNames(expr)
	if err != nil {
		t.Errorf("%s: %v in %q", where, err, expr)
		return
	}
	if len(metrics) == 0 {
		t.Errorf("%s: the query %q uses no metric", where, expr)
	}
	for _, m := range metrics {
		used[m] = true
		if !exportedMetrics[m] && !prometheusMetrics[m] {
			t.Errorf("%s: %s is not a metric the server exports", where, m)
		}
	}
	for _, l := range labelNames {
		if !knownLabels[l] {
			t.Errorf("%s: label %s is not one the server's metrics have", where, l)
		}
	}
}

// ---- Grafana dashboard ----

type dashPanel struct {
	ID         int             `json:"id"`
	Type       string          `json:"type"`
	Title      string          `json:"title"`
	Datasource json.RawMessage `json:"datasource"`
	GridPos    struct {
		H, W, X, Y int
	} `json:"gridPos"`
	Targets []struct {
		RefID string `json:"refId"`
		Expr  string `json:"expr"`
	} `json:"targets"`
	Panels []dashPanel `json:"panels"`
}

type dashboard struct {
	UID           string      `json:"uid"`
	Title         string      `json:"title"`
	SchemaVersion int         `json:"schemaVersion"`
	Panels        []dashPanel `json:"panels"`
	Templating    struct {
		List []struct {
			Name  string          `json:"name"`
			Type  string          `json:"type"`
			Query json.RawMessage `json:"query"`
		} `json:"list"`
	} `json:"templating"`
}

func TestGrafanaDashboard(t *testing.T) {
	files, err := filepath.Glob("grafana/*.json")
	if err != nil || len(files) == 0 {
		t.Fatalf("no dashboard in deploy/grafana (%v)", err)
	}
	for _, file := range files {
		t.Run(filepath.Base(file), func(t *testing.T) { checkDashboard(t, file) })
	}
}

func checkDashboard(t *testing.T, file string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	if err := json.Unmarshal(data, &d); err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	if d.UID == "" || d.Title == "" {
		t.Error("the dashboard needs a uid and a title")
	}
	if d.SchemaVersion < 36 {
		t.Errorf("schemaVersion %d: want 36 or later", d.SchemaVersion)
	}
	dsVar := ""
	used := map[string]bool{}
	for _, v := range d.Templating.List {
		var q string
		if err := json.Unmarshal(v.Query, &q); err != nil {
			var obj struct {
				Query string `json:"query"`
			}
			if err := json.Unmarshal(v.Query, &obj); err != nil {
				t.Errorf("variable %s: unreadable query", v.Name)
				continue
			}
			q = obj.Query
		}
		if v.Type == "datasource" && q == "prometheus" {
			dsVar = v.Name
			continue
		}
		if v.Type == "query" {
			if lv := regexp.MustCompile(`^label_values\((.*),\s*([A-Za-z_][A-Za-z0-9_]*)\s*\)$`).FindStringSubmatch(strings.TrimSpace(q)); lv != nil {
				q = lv[1]
				if !knownLabels[lv[2]] {
					t.Errorf("variable %s: label %s is not one the server's metrics have", v.Name, lv[2])
				}
			}
			checkQuery(t, "variable "+v.Name, q, used)
		}
	}
	if dsVar == "" {
		t.Fatal("no Prometheus data source variable")
	}
	ids := map[int]bool{}
	var walk func(ps []dashPanel)
	walk = func(ps []dashPanel) {
		for _, p := range ps {
			if ids[p.ID] {
				t.Errorf("panel id %d is used twice", p.ID)
			}
			ids[p.ID] = true
			if p.GridPos.W < 1 || p.GridPos.X+p.GridPos.W > 24 || p.GridPos.H < 1 {
				t.Errorf("panel %q: gridPos %+v outside the 24-column grid", p.Title, p.GridPos)
			}
			if p.Type == "row" {
				walk(p.Panels)
				continue
			}
			var ds struct {
				UID string `json:"uid"`
			}
			if json.Unmarshal(p.Datasource, &ds) != nil || (ds.UID != "${"+dsVar+"}" && ds.UID != "$"+dsVar) {
				t.Errorf("panel %q does not use the data source variable", p.Title)
			}
			if len(p.Targets) == 0 {
				t.Errorf("panel %q has no queries", p.Title)
			}
			for _, tg := range p.Targets {
				checkQuery(t, fmt.Sprintf("panel %q query %s", p.Title, tg.RefID), tg.Expr, used)
			}
		}
	}
	walk(d.Panels)
	for _, want := range []string{
		"onsale_http_requests_total", "onsale_http_errors_total", "http_server_request_duration_seconds_bucket",
		"onsale_inventory_holds_created_total", "onsale_inventory_holds_rejected_total", "onsale_inventory_holds_expired_total",
		"onsale_inventory_holds_released_total", "onsale_payment_orders_created_total", "onsale_payment_orders_total",
		"onsale_payment_breaker_state", "onsale_payment_queue_pending", "onsale_payment_queue_ack_pending",
		"onsale_payment_outbox_backlog", "onsale_inventory_cache_hits_total", "onsale_inventory_cache_misses_total",
		"onsale_inventory_commit_batch_size_bucket", "onsale_http_in_flight", "onsale_http_shed_total",
		"process_resident_memory_bytes", "go_goroutines",
	} {
		if !used[want] {
			t.Errorf("no panel shows %s", want)
		}
	}
}

// ---- every YAML file parses ----

func TestYAMLFilesParse(t *testing.T) {
	err := filepath.WalkDir(".", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if !strings.HasSuffix(path, ".yaml") && !strings.HasSuffix(path, ".yml") && !strings.HasSuffix(path, ".yaml.example") {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		defer f.Close()
		dec := yamlv3.NewDecoder(f)
		for {
			var v any
			if err := dec.Decode(&v); errors.Is(err, io.EOF) {
				break
			} else if err != nil {
				t.Errorf("%s: %v", path, err)
				break
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// ---- docker compose: the cluster profile ----

// strictComposeFile is compose.yaml as compose reads it, decoded with unknown keys refused: a
// misspelt key (healtcheck, depend_on) is silently ignored by compose, so it must fail here.
type strictComposeFile struct {
	Name     string                          `yaml:"name"`
	Services map[string]strictComposeService `yaml:"services"`
	Secrets  map[string]struct {
		File string `yaml:"file"`
	} `yaml:"secrets"`
	Volumes  map[string]*struct{} `yaml:"volumes"`
	Networks map[string]struct {
		IPAM struct {
			Config []struct {
				Subnet string `yaml:"subnet"`
			} `yaml:"config"`
		} `yaml:"ipam"`
	} `yaml:"networks"`
	Extensions map[string]any `yaml:",inline"` // x-* blocks of anchors, which compose ignores
}

type strictComposeService struct {
	Image       string         `yaml:"image"`
	Build       composeBuild   `yaml:"build"`
	Command     []string       `yaml:"command"`
	Environment map[string]any `yaml:"environment"`
	Secrets     []string       `yaml:"secrets"`
	DependsOn   yamlv3.Node    `yaml:"depends_on"`
	Ports       []string       `yaml:"ports"`
	Expose      []string       `yaml:"expose"`
	Volumes     []string       `yaml:"volumes"`
	Healthcheck *struct {
		Test     []string `yaml:"test"`
		Interval string   `yaml:"interval"`
		Timeout  string   `yaml:"timeout"`
		Retries  int      `yaml:"retries"`
	} `yaml:"healthcheck"`
	Profiles        []string `yaml:"profiles"`
	ReadOnly        bool     `yaml:"read_only"`
	Tmpfs           []string `yaml:"tmpfs"`
	CapDrop         []string `yaml:"cap_drop"`
	SecurityOpt     []string `yaml:"security_opt"`
	StopGracePeriod string   `yaml:"stop_grace_period"`
	Restart         string   `yaml:"restart"`
	Scale           int      `yaml:"scale"`
}

// dependsOn returns the services this one waits for and the condition of each (a list entry
// means service_started).
func (s strictComposeService) dependsOn() (map[string]string, error) {
	out := map[string]string{}
	switch s.DependsOn.Kind {
	case 0:
	case yamlv3.SequenceNode:
		var names []string
		if err := s.DependsOn.Decode(&names); err != nil {
			return nil, err
		}
		for _, n := range names {
			out[n] = "service_started"
		}
	default:
		var m map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := s.DependsOn.Decode(&m); err != nil {
			return nil, err
		}
		for n, d := range m {
			out[n] = cmp.Or(d.Condition, "service_started")
		}
	}
	return out, nil
}

func (s strictComposeService) env(name string) string {
	if v, ok := s.Environment[name]; ok && v != nil {
		return fmt.Sprint(v)
	}
	return ""
}

// flagValue returns the value after flag in a command line ("" without it).
func flagValue(cmd []string, flag string) string {
	if i := slices.Index(cmd, flag); i >= 0 && i+1 < len(cmd) {
		return cmd[i+1]
	}
	return ""
}

func loadStrictCompose(t *testing.T) *strictComposeFile {
	t.Helper()
	data, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf strictComposeFile
	dec := yamlv3.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	for k := range cf.Extensions {
		if !strings.HasPrefix(k, "x-") {
			t.Errorf("compose.yaml: top-level key %q is not one of compose's (extensions start with x-)", k)
		}
	}
	return &cf
}

// imagePinned reports whether an image reference names a version tag or a digest.
func imagePinned(ref string) bool {
	if _, digest, ok := strings.Cut(ref, "@"); ok {
		return strings.HasPrefix(digest, "sha256:")
	}
	_, tag, ok := strings.Cut(ref[strings.LastIndex(ref, "/")+1:], ":")
	return ok && tag != "" && tag != "latest"
}

// TestComposeCluster: the cluster profile runs the server on a Redis Cluster of 3 masters and 3
// replicas (formed once by a one-shot redis-cli --cluster create), a 3-node NATS JetStream
// cluster with streams replicated 3 times, and PgBouncer in transaction pooling with migrations
// on a direct connection; every image is pinned, every dependency has a health check the
// replicas wait for, in order, and the replicas' settings are ones the server accepts.
// nginx-cluster balances over every replica
// with nginx.conf's rules, and Prometheus scrapes them all.
func TestComposeCluster(t *testing.T) {
	cf := loadStrictCompose(t)
	known := knownSettings(t)
	var subnet netip.Prefix
	if n, ok := cf.Networks["default"]; ok && len(n.IPAM.Config) > 0 {
		subnet, _ = netip.ParsePrefix(n.IPAM.Config[0].Subnet)
	}

	cluster := map[string]strictComposeService{}
	deps := map[string]map[string]string{}
	for name, s := range cf.Services {
		d, err := s.dependsOn()
		if err != nil {
			t.Errorf("%s: depends_on: %v", name, err)
		}
		deps[name] = d
		if slices.Contains(s.Profiles, "cluster") {
			cluster[name] = s
		}
	}
	if len(cluster) == 0 {
		t.Fatal("no service has the cluster profile")
	}
	var servers, redisNodes, natsNodes, inits []string
	for name, s := range cluster {
		cmd := strings.Join(s.Command, " ")
		switch {
		case s.Build.Dockerfile != "" && len(s.Command) == 0:
			servers = append(servers, name)
		case strings.HasPrefix(s.Image, "redis:") && strings.Contains(cmd, "--cluster-enabled yes"):
			redisNodes = append(redisNodes, name)
		case strings.HasPrefix(s.Image, "nats:"):
			natsNodes = append(natsNodes, name)
		case strings.Contains(cmd, "--cluster create"):
			inits = append(inits, name)
		}
		if s.Image != "" && !imagePinned(s.Image) {
			t.Errorf("%s: image %q is not pinned to a version tag or a digest", name, s.Image)
		}
		// Compose substitutes $NAME in the file from the caller's environment: a shell variable
		// in a command must be written $$NAME.
		for _, arg := range s.Command {
			if strings.Contains(strings.ReplaceAll(arg, "$$", ""), "$") {
				t.Errorf("%s: command %q has a single $, which compose would substitute: write $$", name, arg)
			}
		}
	}
	for _, l := range [][]string{servers, redisNodes, natsNodes, inits} {
		sort.Strings(l)
	}
	if len(servers) != 1 {
		t.Fatalf("the cluster profile's server services (built from the Dockerfile, no command): %v, want one, scaled", servers)
	}
	if len(redisNodes) != 6 {
		t.Errorf("Redis Cluster nodes (redis-server --cluster-enabled yes): %v, want 6 (3 masters, 3 replicas)", redisNodes)
	}
	if len(natsNodes) != 3 {
		t.Errorf("NATS cluster nodes: %v, want 3", natsNodes)
	}
	if len(inits) != 1 {
		t.Fatalf("services that form the Redis Cluster (redis-cli --cluster create): %v, want one", inits)
	}

	// Health checks: the replicas wait for healthy dependencies and for the one-shots to have
	// succeeded, so every long-running dependency has a check and every one-shot exits.
	oneShot := func(name string) bool { return cf.Services[name].Restart == "no" }
	for name, s := range cluster {
		if slices.Contains(servers, name) || strings.HasPrefix(s.Image, "nginx:") || oneShot(name) {
			continue
		}
		if s.Healthcheck == nil || len(s.Healthcheck.Test) == 0 {
			t.Errorf("%s has no healthcheck", name)
		}
	}
	// depends_on: targets that exist, conditions they can meet, no cycle, and nothing of the
	// single-node profile but PostgreSQL and the provider.
	for name := range cluster {
		for dep, cond := range deps[name] {
			target, ok := cf.Services[dep]
			switch {
			case !ok:
				t.Errorf("%s depends on %s, which is not a service", name, dep)
				continue
			case len(target.Profiles) > 0 && !slices.Contains(target.Profiles, "cluster"):
				t.Errorf("%s depends on %s, which is not in the cluster profile", name, dep)
			case len(target.Profiles) == 0 && dep != "postgres" && dep != "provider":
				t.Errorf("%s depends on %s, a service of the single-node deployment", name, dep)
			}
			switch cond {
			case "service_healthy":
				if target.Healthcheck == nil {
					t.Errorf("%s waits for %s to be healthy, but it has no healthcheck", name, dep)
				}
			case "service_completed_successfully":
				if !oneShot(dep) {
					t.Errorf("%s waits for %s to complete, but it restarts (restart %q)", name, dep, target.Restart)
				}
			case "service_started":
			default:
				t.Errorf("%s depends on %s with condition %q", name, dep, cond)
			}
		}
	}
	var visit func(name string, path []string)
	visit = func(name string, path []string) {
		if slices.Contains(path, name) {
			t.Fatalf("depends_on cycle: %s", strings.Join(append(path, name), " → "))
		}
		for dep := range deps[name] {
			visit(dep, append(path, name))
		}
	}
	for name := range cluster {
		visit(name, nil)
	}

	// The Redis Cluster: six alike nodes, as the single redis is set (no persistence,
	// noeviction, the same image), formed by the one-shot from every node once all are healthy.
	single := cf.Services["redis"]
	for _, name := range redisNodes {
		s := cluster[name]
		if s.Image != single.Image {
			t.Errorf("%s: image %q, want the single redis's %q", name, s.Image, single.Image)
		}
		cmd := strings.Join(s.Command, " ") + " "
		// Without full coverage required, one master failing over leaves the others serving.
		for _, want := range []string{"--maxmemory-policy noeviction", "--appendonly no", "--save  ", "--cluster-node-timeout ", "--cluster-require-full-coverage no"} {
			if !strings.Contains(cmd, want) {
				t.Errorf("%s: command %q lacks %q", name, cmd, strings.TrimSpace(want))
			}
		}
		if len(s.Ports) > 0 {
			t.Errorf("%s publishes ports", name)
		}
	}
	initName := inits[0]
	init := cluster[initName]
	script := strings.Join(init.Command, " ")
	for _, want := range []string{"--cluster-replicas 1", "--cluster-yes"} {
		if !strings.Contains(script, want) {
			t.Errorf("%s: %q lacks %s", initName, script, want)
		}
	}
	for _, n := range redisNodes {
		if !regexp.MustCompile(`\b` + regexp.QuoteMeta(n) + `\b`).MatchString(script) {
			t.Errorf("%s does not name the node %s", initName, n)
		}
		if deps[initName][n] != "service_healthy" {
			t.Errorf("%s does not wait for %s to be healthy", initName, n)
		}
	}
	if init.Image != single.Image {
		t.Errorf("%s: image %q, want %q (its redis-cli)", initName, init.Image, single.Image)
	}
	if !oneShot(initName) {
		t.Errorf("%s: restart %q, want \"no\" (a one-shot)", initName, init.Restart)
	}

	// The NATS cluster: JetStream on every node, one cluster name, a name and a store of its
	// own each, routes to every node, and a health check that passes only once JetStream's meta
	// group is formed.
	singleNATS := cf.Services["nats"]
	routes := map[string]bool{}
	names, clusterNames, stores := map[string]bool{}, map[string]bool{}, map[string]bool{}
	for _, name := range natsNodes {
		s := cluster[name]
		if s.Image != singleNATS.Image {
			t.Errorf("%s: image %q, want the single nats's %q", name, s.Image, singleNATS.Image)
		}
		if !slices.Contains(s.Command, "-js") {
			t.Errorf("%s runs without -js", name)
		}
		names[flagValue(s.Command, "--server_name")] = true
		clusterNames[flagValue(s.Command, "--cluster_name")] = true
		u, err := url.Parse(flagValue(s.Command, "--cluster"))
		if err != nil || u.Port() == "" {
			t.Errorf("%s: --cluster %q is not a route URL", name, flagValue(s.Command, "--cluster"))
			continue
		}
		routes[name+":"+u.Port()] = true
		store := flagValue(s.Command, "-sd")
		for _, v := range s.Volumes {
			if src, dst, _ := strings.Cut(v, ":"); dst == store {
				if _, ok := cf.Volumes[src]; !ok {
					t.Errorf("%s: volume %s is not declared", name, src)
				}
				stores[src] = true
			}
		}
		if hc := s.Healthcheck; hc == nil || !strings.Contains(strings.Join(hc.Test, " "), "/healthz") || strings.Contains(strings.Join(hc.Test, " "), "js-enabled-only") {
			t.Errorf("%s: the healthcheck must ask /healthz (without js-enabled-only, which passes before the cluster has formed)", name)
		}
	}
	if len(names) != len(natsNodes) || names[""] {
		t.Errorf("NATS nodes need a --server_name each, all different: %v", names)
	}
	if len(clusterNames) != 1 || clusterNames[""] {
		t.Errorf("NATS nodes need one --cluster_name: %v", clusterNames)
	}
	if len(stores) != len(natsNodes) {
		t.Errorf("NATS nodes need a store volume each at their -sd: %v", stores)
	}
	for _, name := range natsNodes {
		var got []string
		for _, r := range strings.Split(flagValue(cluster[name].Command, "--routes"), ",") {
			if u, err := url.Parse(strings.TrimSpace(r)); err == nil {
				got = append(got, u.Host)
			}
		}
		for r := range routes {
			if !slices.Contains(got, r) {
				t.Errorf("%s: --routes does not reach %s", name, r)
			}
		}
	}

	// PgBouncer: transaction pooling in front of the PostgreSQL service.
	pgb, ok := cluster["pgbouncer"]
	if !ok {
		t.Fatal("no pgbouncer service in the cluster profile")
	}
	if pgb.env("POOL_MODE") != "transaction" {
		t.Errorf("pgbouncer: POOL_MODE=%q, want transaction", pgb.env("POOL_MODE"))
	}
	if pgb.env("DB_HOST") != "postgres" || deps["pgbouncer"]["postgres"] != "service_healthy" {
		t.Errorf("pgbouncer: DB_HOST=%q; it must pool the postgres service and wait for it to be healthy", pgb.env("DB_HOST"))
	}
	pool, _ := strconv.Atoi(pgb.env("MAX_DB_CONNECTIONS"))
	maxConns, _ := strconv.Atoi(flagValue(cf.Services["postgres"].Command, "-c")[len("max_connections="):])
	if pool <= 0 || pool >= maxConns/2 {
		t.Errorf("pgbouncer: MAX_DB_CONNECTIONS=%q: want a bound well under PostgreSQL's max_connections (%d), which also serves migrations and the default profile", pgb.env("MAX_DB_CONNECTIONS"), maxConns)
	}

	// The replicas.
	name := servers[0]
	s := cluster[name]
	if s.Scale < 3 {
		t.Errorf("%s: scale %d, want 3 or more replicas", name, s.Scale)
	}
	if filepath.Clean(filepath.Join(s.Build.Context, s.Build.Dockerfile)) != filepath.Clean("../Dockerfile") {
		t.Errorf("%s is built from %s/%s, want ../Dockerfile", name, s.Build.Context, s.Build.Dockerfile)
	}
	if s.env("ONSALE_ENV") != "production" {
		t.Errorf("%s: ONSALE_ENV = %q, want production", name, s.env("ONSALE_ENV"))
	}
	if got := s.env("ONSALE_TRUSTED_PROXIES"); got != subnet.String() {
		t.Errorf("%s: ONSALE_TRUSTED_PROXIES = %q, want the compose network's range %s", name, got, subnet)
	}
	if !s.ReadOnly || len(s.Ports) > 0 {
		t.Errorf("%s: read_only %v, ports %v: want a read-only root and no published port (nginx-cluster publishes)", name, s.ReadOnly, s.Ports)
	}
	env := map[string]envValue{}
	for k := range s.Environment {
		env[k] = envValue{value: s.env(k), source: name}
	}
	drain := durationSetting(t, env, "ONSALE_DRAIN_DELAY", defaultDrainDelay)
	shutdown := durationSetting(t, env, "ONSALE_SHUTDOWN_TIMEOUT", defaultShutdownTimeout)
	if grace, err := time.ParseDuration(s.StopGracePeriod); err != nil || grace < drain+shutdown {
		t.Errorf("%s: stop_grace_period %q must exceed the drain delay + shutdown timeout (%s)", name, s.StopGracePeriod, drain+shutdown)
	}

	// Redis: seeds that are nodes of the cluster, reached once it is formed.
	redisURL, err := url.Parse(s.env("ONSALE_REDIS_URL"))
	if err != nil || redisURL.Scheme != "redis+cluster" {
		t.Errorf("%s: ONSALE_REDIS_URL = %q, want redis+cluster://seed,seed,...", name, s.env("ONSALE_REDIS_URL"))
	} else {
		seeds := strings.Split(redisURL.Host, ",")
		if len(seeds) < 2 {
			t.Errorf("%s: ONSALE_REDIS_URL names %d seed: give several, so a start does not hang on one node", name, len(seeds))
		}
		for _, seed := range seeds {
			host, port, _ := strings.Cut(seed, ":")
			if !slices.Contains(redisNodes, host) || port != "6379" {
				t.Errorf("%s: ONSALE_REDIS_URL seed %q is not a Redis Cluster node", name, seed)
			}
		}
	}
	if deps[name][initName] != "service_completed_successfully" {
		t.Errorf("%s does not wait for %s to have formed the cluster", name, initName)
	}
	// NATS: every node, each healthy first, and a replica of each stream on each.
	var natsHosts []string
	for _, u := range strings.Split(s.env("ONSALE_NATS_URL"), ",") {
		pu, err := url.Parse(strings.TrimSpace(u))
		if err != nil || pu.Scheme != "nats" || pu.Port() != "4222" {
			t.Errorf("%s: ONSALE_NATS_URL entry %q is not nats://host:4222", name, u)
			continue
		}
		natsHosts = append(natsHosts, pu.Hostname())
	}
	sort.Strings(natsHosts)
	if !slices.Equal(natsHosts, natsNodes) {
		t.Errorf("%s: ONSALE_NATS_URL names %v, want every NATS node %v", name, natsHosts, natsNodes)
	}
	for _, n := range natsNodes {
		if deps[name][n] != "service_healthy" {
			t.Errorf("%s does not wait for %s to be healthy", name, n)
		}
	}
	if got := s.env("ONSALE_NATS_REPLICAS"); got != strconv.Itoa(len(natsNodes)) {
		t.Errorf("%s: ONSALE_NATS_REPLICAS = %q, want %d (one replica of each stream on each node)", name, got, len(natsNodes))
	}
	// PostgreSQL: queries through PgBouncer, migrations direct, one database, made first.
	dbURL, err1 := url.Parse(s.env("ONSALE_DATABASE_URL"))
	migrateURL, err2 := url.Parse(s.env("ONSALE_MIGRATE_DATABASE_URL"))
	if err1 != nil || err2 != nil {
		t.Fatalf("%s: unreadable database URLs: %v %v", name, err1, err2)
	}
	if dbURL.Host != "pgbouncer:"+pgb.env("LISTEN_PORT") {
		t.Errorf("%s: ONSALE_DATABASE_URL goes to %s, want PgBouncer (pgbouncer:%s)", name, dbURL.Host, pgb.env("LISTEN_PORT"))
	}
	if migrateURL.Host != "postgres:5432" {
		t.Errorf("%s: ONSALE_MIGRATE_DATABASE_URL goes to %s, want PostgreSQL itself (postgres:5432): the migrations' advisory lock needs a session", name, migrateURL.Host)
	}
	if dbURL.Path != migrateURL.Path || dbURL.User.Username() != migrateURL.User.Username() {
		t.Errorf("%s: queries go to %s as %s, migrations to %s as %s: want one database and role", name, dbURL.Path, dbURL.User.Username(), migrateURL.Path, migrateURL.User.Username())
	}
	dbName := strings.TrimPrefix(dbURL.Path, "/")
	if dbName == cf.Services["postgres"].env("POSTGRES_DB") {
		t.Errorf("%s uses the single-node deployment's database %s: its holds live in another Redis, so the two would oversell", name, dbName)
	}
	made := false
	for dep, cond := range deps[name] {
		if cond == "service_completed_successfully" && strings.Contains(strings.Join(cf.Services[dep].Command, " "), "CREATE DATABASE "+dbName) {
			made = true
		}
	}
	if !made {
		t.Errorf("%s: nothing it waits for creates the database %s", name, dbName)
	}
	for _, dep := range []string{"pgbouncer", "postgres"} {
		if deps[name][dep] != "service_healthy" {
			t.Errorf("%s does not wait for %s to be healthy", name, dep)
		}
	}
	switch mode := s.env("ONSALE_DB_QUERY_EXEC_MODE"); mode {
	case "cache_describe", "describe_exec", "exec", "simple_protocol":
	default:
		t.Errorf("%s: ONSALE_DB_QUERY_EXEC_MODE = %q: behind transaction pooling a named prepared statement outlives its transaction; want cache_describe, describe_exec, exec or simple_protocol", name, mode)
	}

	// Every ONSALE_ setting is the server's, and the server accepts them all.
	for v := range s.Environment {
		if strings.HasPrefix(v, "ONSALE_") && !known[v] {
			t.Errorf("%s: %s is not a setting of the server", name, v)
		}
	}
	for _, v := range requiredInProduction {
		if s.env(v) == "" {
			t.Errorf("%s: %s is not set", name, v)
		}
	}
	serverAccepts(t, name, env, "")

	// nginx-cluster: nginx.conf's rules over every replica, on a port of its own.
	ng, ok := cluster["nginx-cluster"]
	if !ok {
		t.Fatal("no nginx-cluster service in the cluster profile")
	}
	if !slices.Contains(ng.Volumes, "./nginx/cluster.conf:/etc/nginx/nginx.conf:ro") {
		t.Errorf("nginx-cluster does not mount ./nginx/cluster.conf as its nginx.conf: %v", ng.Volumes)
	}
	if ng.Image != cf.Services["nginx"].Image {
		t.Errorf("nginx-cluster: image %q, want nginx's %q", ng.Image, cf.Services["nginx"].Image)
	}
	if _, ok := deps["nginx-cluster"][name]; !ok {
		t.Errorf("nginx-cluster does not depend on %s", name)
	}
	taken := map[string]bool{}
	for _, other := range []string{"nginx", "nginx-split"} {
		for _, p := range cf.Services[other].Ports {
			taken[hostPort(p)] = true
		}
	}
	if len(ng.Ports) != 1 || taken[hostPort(ng.Ports[0])] {
		t.Errorf("nginx-cluster publishes %v: one port, not nginx's or nginx-split's (%v)", ng.Ports, taken)
	}
	conf := readNginxConf(t, "cluster.conf")
	for up, servers := range nginxUpstreams(t, "cluster.conf", conf) {
		if !slices.Equal(servers, []string{name + ":8080"}) {
			t.Errorf("cluster.conf: upstream %s sends to %v, want %s:8080 (every container of it, by DNS)", up, servers, name)
		}
	}
	checkNginxProxying(t, "cluster.conf", conf)
	upstream := regexp.MustCompile(`(?s)upstream\s+\w+\s*\{.*?\}`)
	norm := func(c string) string { return strings.Join(strings.Fields(upstream.ReplaceAllString(c, "")), " ") }
	if norm(conf) != norm(readNginxConf(t, "nginx.conf")) {
		t.Error("cluster.conf differs from nginx.conf outside its upstream: keep the proxying rules in step")
	}

	// Prometheus finds every replica on its debug port.
	if want := name + ":6060"; !slices.Contains(scrapeJobs(t)["onsale"].dnsTargets, want) {
		t.Errorf("prometheus.yml does not find %s's containers (%s)", name, want)
	}
}

// ---- custom metrics for the autoscaler (deploy/k8s/prometheus-adapter) ----

// adapterConfig is Prometheus Adapter's configuration file, the part these manifests use.
type adapterConfig struct {
	Rules []struct {
		SeriesQuery   string `yaml:"seriesQuery"`
		SeriesFilters []struct {
			Is    string `yaml:"is"`
			IsNot string `yaml:"isNot"`
		} `yaml:"seriesFilters"`
		Resources struct {
			Overrides map[string]struct {
				Group    string `yaml:"group"`
				Resource string `yaml:"resource"`
			} `yaml:"overrides"`
			Template string `yaml:"template"`
		} `yaml:"resources"`
		Name struct {
			Matches string `yaml:"matches"`
			As      string `yaml:"as"`
		} `yaml:"name"`
		MetricsQuery string `yaml:"metricsQuery"`
	} `yaml:"rules"`
}

// adapterLabels are the labels the adapter's queries use besides the server's own: the pod's
// namespace and name, which the Kubernetes scrape adds and by which the adapter finds a pod.
var adapterLabels = set("namespace", "pod")

// registeredMetrics returns the series names the server's instruments give on /metrics, read
// from the instrument registrations in internal/ (meter.Int64Counter("onsale.x.y", ...) and the
// like) and named as OpenTelemetry's Prometheus exporter names them: dots become underscores, a
// unit of seconds adds _seconds, a counter _total, a histogram _bucket, _sum and _count.
func registeredMetrics(t *testing.T) map[string]bool {
	t.Helper()
	call := regexp.MustCompile(`\.(Int64|Float64)(Counter|UpDownCounter|Histogram|Gauge|ObservableCounter|ObservableUpDownCounter|ObservableGauge)\(\s*"([a-z0-9_.]+)"`)
	out := map[string]bool{}
	err := filepath.WalkDir("../internal", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		src := string(data)
		locs := call.FindAllStringSubmatchIndex(src, -1)
		for i, loc := range locs {
			kind, name := src[loc[4]:loc[5]], strings.ReplaceAll(src[loc[6]:loc[7]], ".", "_")
			// The options of this call run up to the next registration (or a few lines).
			end := min(len(src), loc[1]+400)
			if i+1 < len(locs) {
				end = min(end, locs[i+1][0])
			}
			if strings.Contains(src[loc[1]:end], `metric.WithUnit("s")`) && !strings.HasSuffix(name, "_seconds") {
				name += "_seconds"
			}
			switch kind {
			case "Counter", "ObservableCounter":
				out[name+"_total"] = true
			case "Histogram":
				out[name+"_bucket"], out[name+"_sum"], out[name+"_count"] = true, true, true
			default:
				out[name] = true
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"onsale_http_requests_total", "http_server_request_duration_seconds_bucket", "onsale_payment_queue_pending"} {
		if !out[want] {
			t.Fatalf("the registrations scan of internal/ did not find %s (found %v); have the instruments moved?", want, out)
		}
	}
	return out
}

// adapterQuery turns an adapter query template into PromQL, the way the adapter fills it in
// when the HPA asks for a metric of some pods.
func adapterQuery(tmpl, series string) string {
	return strings.NewReplacer(
		"<<.Series>>", series,
		"<<.LabelMatchers>>", `namespace="shop",pod=~"onsale-a|onsale-b"`,
		"<<.GroupBy>>", "pod",
	).Replace(tmpl)
}

// TestCustomMetricsAutoscaler: the HPA scales on requests in flight per pod and on payment
// processing time per pod besides CPU, through Prometheus Adapter rules whose queries use series
// the server registers (and exports: TestInFlightGauge, TestProcessingDurationMetric), with
// targets that act before the server sheds or the provider times out; it scales up fast and down
// slowly.
func TestCustomMetricsAutoscaler(t *testing.T) {
	adapter := loadManifestFiles(t, manifestFiles(t, "k8s/prometheus-adapter"))
	if len(adapter.configMaps) != 1 || len(allObjects(adapter)) != 1 {
		t.Fatalf("deploy/k8s/prometheus-adapter: want one ConfigMap (the adapter's config.yaml), found %d objects", len(allObjects(adapter)))
	}
	raw, ok := adapter.configMaps[0].Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml, the file the adapter reads", adapter.configMaps[0].Name)
	}
	var cfg adapterConfig
	dec := yamlv3.NewDecoder(strings.NewReader(raw))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil {
		t.Fatalf("config.yaml is not a Prometheus Adapter configuration: %v", err)
	}
	registered := registeredMetrics(t)
	labelsOK := func(where string, labelNames []string) {
		for _, l := range labelNames {
			if !knownLabels[l] && !adapterLabels[l] {
				t.Errorf("%s: label %s is not one the server's metrics (or the Kubernetes scrape) give", where, l)
			}
		}
	}
	exposed := map[string]string{} // custom metric name → the server series its rule selects
	for i, r := range cfg.Rules {
		where := fmt.Sprintf("rule %d", i+1)
		metrics, labelNames, err := queryNames(r.SeriesQuery)
		if err != nil || len(metrics) != 1 {
			t.Errorf("%s: seriesQuery %q: want a selector of one metric (%v)", where, r.SeriesQuery, err)
			continue
		}
		series := metrics[0]
		if !registered[series] || !exportedMetrics[series] {
			t.Errorf("%s: %s is not a series the server exports (registered %v, listed %v)", where, series, registered[series], exportedMetrics[series])
		}
		labelsOK(where, labelNames)
		if !regexp.MustCompile(`namespace\s*!=\s*""`).MatchString(r.SeriesQuery) || !regexp.MustCompile(`pod\s*!=\s*""`).MatchString(r.SeriesQuery) {
			t.Errorf("%s: seriesQuery %q must ask for series with namespace and pod labels, or the adapter cannot tell pods apart", where, r.SeriesQuery)
		}
		ov := r.Resources.Overrides
		if ov["namespace"].Resource != "namespace" || ov["pod"].Resource != "pod" {
			t.Errorf("%s: resources.overrides %v: want namespace → namespace and pod → pod (the HPA asks per pod)", where, ov)
		}
		re, err := regexp.Compile(r.Name.Matches)
		if err != nil || !re.MatchString(series) {
			t.Errorf("%s: name.matches %q does not match %s", where, r.Name.Matches, series)
			continue
		}
		name := series
		if r.Name.As != "" {
			name = re.ReplaceAllString(series, r.Name.As)
		} else if re.NumSubexp() > 0 {
			name = re.ReplaceAllString(series, "$1")
		}
		if _, dup := exposed[name]; dup {
			t.Errorf("%s: two rules expose %s", where, name)
		}
		exposed[name] = series
		if !strings.Contains(r.MetricsQuery, "<<.LabelMatchers>>") || !regexp.MustCompile(`by\s*\(\s*<<\.GroupBy>>\s*\)`).MatchString(r.MetricsQuery) {
			t.Errorf("%s: metricsQuery %q must filter by <<.LabelMatchers>> and group by (<<.GroupBy>>), or every pod gets the whole deployment's value", where, r.MetricsQuery)
		}
		q := adapterQuery(r.MetricsQuery, series)
		qm, ql, err := queryNames(q)
		if err != nil {
			t.Errorf("%s: metricsQuery %q: %v", where, q, err)
			continue
		}
		for _, m := range qm {
			if !registered[m] || !exportedMetrics[m] {
				t.Errorf("%s: metricsQuery uses %s, which the server does not export", where, m)
			}
		}
		labelsOK(where, ql)
	}

	m := loadManifests(t)
	d, c := m.theDeployment(t)
	env := containerEnv(t, m, c)
	server := serverAccepts(t, "Deployment "+d.Name, env, containerModules(t, c))
	if len(m.hpas) != 1 {
		t.Fatalf("want one HorizontalPodAutoscaler, found %d", len(m.hpas))
	}
	h := m.hpas[0]
	signals := map[string]resource.Quantity{} // the server series behind each Pods metric → target
	cpu := false
	for _, mt := range h.Spec.Metrics {
		switch mt.Type {
		case autoscalingv2.ResourceMetricSourceType:
			cpu = cpu || (mt.Resource != nil && mt.Resource.Name == corev1.ResourceCPU)
		case autoscalingv2.PodsMetricSourceType:
			name := mt.Pods.Metric.Name
			series, ok := exposed[name]
			if !ok {
				t.Errorf("the HPA scales on %s, which no adapter rule exposes (%v)", name, exposed)
				continue
			}
			if mt.Pods.Metric.Selector != nil {
				t.Errorf("%s: a selector the adapter's rule does not expect", name)
			}
			if mt.Pods.Target.Type != autoscalingv2.AverageValueMetricType || mt.Pods.Target.AverageValue == nil || mt.Pods.Target.AverageValue.Sign() <= 0 {
				t.Errorf("%s: target %+v, want a positive AverageValue (Pods metrics are averaged over the pods)", name, mt.Pods.Target)
				continue
			}
			signals[series] = *mt.Pods.Target.AverageValue
		default:
			t.Errorf("the HPA has a metric of type %s", mt.Type)
		}
	}
	if !cpu {
		t.Error("the HPA no longer scales on CPU")
	}
	inFlight, ok := signals["onsale_http_in_flight"]
	if !ok {
		t.Error("the HPA does not scale on requests in flight per pod (onsale_http_in_flight)")
	} else if limit := server.HTTP.MaxInFlight; limit > 0 && inFlight.Value() > int64(limit/4) {
		t.Errorf("in-flight target %s is over a quarter of the shedding limit (ONSALE_HTTP_MAX_IN_FLIGHT=%d): pods would shed before new ones are asked for", inFlight.String(), limit)
	}
	processing, ok := signals["onsale_payment_processing_duration_seconds_count"]
	if !ok {
		t.Error("the HPA does not scale on payment processing time per pod (onsale_payment_processing_duration_seconds)")
	} else if secs := processing.AsApproximateFloat64(); secs >= server.Payment.ProviderTO.Seconds()/2 {
		t.Errorf("payment processing target %ss is not well under the provider timeout (%s): attempts would time out before the HPA acts", processing.String(), server.Payment.ProviderTO)
	}

	// Fast up, slow down.
	b := h.Spec.Behavior
	if b == nil || b.ScaleUp == nil || b.ScaleDown == nil {
		t.Fatal("the HPA has no scaleUp and scaleDown behavior: the defaults wait 5 minutes before every scale-down but also limit scale-up to 4 pods or 100% per 15 s; say what is meant")
	}
	window := func(w *int32) int32 {
		if w == nil {
			return -1 // unset: the defaults, 0 up and 300 down, are not what these manifests say
		}
		return *w
	}
	if w := window(b.ScaleUp.StabilizationWindowSeconds); w < 0 || w > 30 {
		t.Errorf("scaleUp stabilizationWindowSeconds %d: want 0 to 30 s, a crowd does not wait", w)
	}
	fastUp := false
	for _, p := range b.ScaleUp.Policies {
		fastUp = fastUp || (p.PeriodSeconds <= 60 && ((p.Type == autoscalingv2.PercentScalingPolicy && p.Value >= 100) || (p.Type == autoscalingv2.PodsScalingPolicy && p.Value >= 4)))
	}
	if !fastUp || (b.ScaleUp.SelectPolicy != nil && *b.ScaleUp.SelectPolicy != autoscalingv2.MaxChangePolicySelect) {
		t.Errorf("scaleUp %+v: want a policy of at least doubling (or 4 pods) a minute, and the largest policy to apply", b.ScaleUp)
	}
	if w := window(b.ScaleDown.StabilizationWindowSeconds); w < 300 {
		t.Errorf("scaleDown stabilizationWindowSeconds %d: want 300 s or more, a sale comes in waves", w)
	}
	if len(b.ScaleDown.Policies) == 0 {
		t.Error("scaleDown has no policy: the default removes any number of pods at once")
	}
	for _, p := range b.ScaleDown.Policies {
		if p.PeriodSeconds < 60 || (p.Type == autoscalingv2.PodsScalingPolicy && p.Value > 2) || (p.Type == autoscalingv2.PercentScalingPolicy && p.Value > 20) {
			t.Errorf("scaleDown policy %+v: want at most 2 pods or 20%% per minute or longer", p)
		}
	}
}
