package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func envMap(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

// envList is m as os.Environ would list it, for run.
func envList(m map[string]string) []string {
	var out []string
	for k, v := range m {
		out = append(out, k+"="+v)
	}
	return out
}

func TestLoadConfigDefaults(t *testing.T) {
	t.Parallel()
	cfg, err := loadConfig(envMap(nil), "", "")
	if err != nil {
		t.Fatalf("defaults refused: %v", err)
	}
	if cfg.Env != "development" || !cfg.Embedded() || cfg.HTTP.Addr != ":8080" ||
		cfg.DrainDelay != 5*time.Second || cfg.ShutdownTimeout != 25*time.Second || cfg.DBMaxConns != 16 {
		t.Fatalf("unexpected defaults: %+v", cfg)
	}
}

func TestLoadConfigProductionNeedsExternalServices(t *testing.T) {
	t.Parallel()
	urls := map[string]string{
		"ONSALE_REDIS_URL":    "redis://redis:6379/0",
		"ONSALE_DATABASE_URL": "postgres://onsale:onsale@postgres:5432/onsale",
		"ONSALE_NATS_URL":     "nats://nats:4222",
	}

	_, err := loadConfig(envMap(map[string]string{"ONSALE_ENV": "production"}), "", "")
	if err == nil {
		t.Fatal("production without external services accepted")
	}
	msg := err.Error()
	for name := range urls {
		if !strings.Contains(msg, name) {
			t.Errorf("error does not name %s:\n%s", name, msg)
		}
	}
	// It says why, not just what.
	if !strings.Contains(msg, "load balancer") || !strings.Contains(msg, "sell the same tickets") {
		t.Errorf("error does not say why the services are needed:\n%s", msg)
	}

	// Each one missing on its own is named, and only it.
	for missing := range urls {
		env := map[string]string{"ONSALE_ENV": "production"}
		for k, v := range urls {
			if k != missing {
				env[k] = v
			}
		}
		_, err := loadConfig(envMap(env), "", "")
		if err == nil {
			t.Fatalf("production without %s accepted", missing)
		}
		for name := range urls {
			if got := strings.Contains(err.Error(), name); got != (name == missing) {
				t.Errorf("without %s, error names %s = %v:\n%s", missing, name, got, err)
			}
		}
	}

	// With all three, none of them is complained about (other production requirements may remain).
	env := map[string]string{"ONSALE_ENV": "production"}
	for k, v := range urls {
		env[k] = v
	}
	if _, err := loadConfig(envMap(env), "", ""); err != nil {
		for name := range urls {
			if strings.Contains(err.Error(), name) {
				t.Errorf("production with every URL set still complains about %s:\n%s", name, err)
			}
		}
	}
}

func TestLoadConfigBadValuesNameTheVariable(t *testing.T) {
	t.Parallel()
	cases := []struct {
		env, value string
		want       []string
		hidden     string
	}{
		{"ONSALE_DRAIN_DELAY", "soon", []string{`ONSALE_DRAIN_DELAY="soon"`, "duration"}, ""},
		{"ONSALE_HTTP_READ_TIMEOUT", "5", []string{"ONSALE_HTTP_READ_TIMEOUT", "duration"}, ""},
		{"ONSALE_SHUTDOWN_TIMEOUT", "-1s", []string{"ONSALE_SHUTDOWN_TIMEOUT"}, ""},
		{"ONSALE_DB_MAX_CONNS", "lots", []string{"ONSALE_DB_MAX_CONNS", "whole number"}, ""},
		{"ONSALE_DB_MAX_CONNS", "0", []string{"ONSALE_DB_MAX_CONNS", "2 to 1000"}, ""},
		{"ONSALE_HTTP_BODY_LIMIT", "1k", []string{"ONSALE_HTTP_BODY_LIMIT", "whole number"}, ""},
		{"ONSALE_HTTP_BODY_LIMIT", "10", []string{"ONSALE_HTTP_BODY_LIMIT", "1024"}, ""},
		{"ONSALE_TRACE_SAMPLE_RATIO", "2", []string{"ONSALE_TRACE_SAMPLE_RATIO", "0 to 1"}, ""},
		{"ONSALE_ACCESS_LOG", "sometimes", []string{"ONSALE_ACCESS_LOG", "true or false"}, ""},
		{"ONSALE_HTTP_ADDR", "8080", []string{"ONSALE_HTTP_ADDR", "host:port"}, ""},
		{"ONSALE_ENV", "staging", []string{"ONSALE_ENV", "development or production"}, ""},
		{"ONSALE_LOG_LEVEL", "loud", []string{"ONSALE_LOG_LEVEL"}, ""},
		{"ONSALE_TRUSTED_PROXIES", "10.0.0.0/8,everyone", []string{"ONSALE_TRUSTED_PROXIES", "CIDR"}, ""},
		{"ONSALE_REDIS_URL", "localhost:6379", []string{"ONSALE_REDIS_URL", "redis://"}, ""},
		{"ONSALE_DATABASE_URL", "mysql://onsale:hunter2@db/onsale", []string{"ONSALE_DATABASE_URL", "postgres://"}, "hunter2"},
		{"ONSALE_NATS_URL", "http://nats:4222", []string{"ONSALE_NATS_URL", "nats://"}, ""},
		// A cluster's list: every server is checked, and none repeated (one may carry a password).
		{"ONSALE_NATS_URL", "nats://u:Pw4Nats@n1:4222,http://n2:4222", []string{"ONSALE_NATS_URL", "nats://"}, "Pw4Nats"},
		{"ONSALE_MIGRATE_DATABASE_URL", "mysql://onsale:hunter3@db/onsale", []string{"ONSALE_MIGRATE_DATABASE_URL", "postgres://"}, "hunter3"},
		{"ONSALE_DATABASE_READ_URL", "redis://onsale:hunter4@db/onsale", []string{"ONSALE_DATABASE_READ_URL", "postgres://"}, "hunter4"},
		{"ONSALE_MIGRATE_DATABASE_URL", "postgres://db/onsale", []string{"ONSALE_MIGRATE_DATABASE_URL", "ONSALE_DATABASE_URL, which is not set"}, ""},
		{"ONSALE_DB_QUERY_EXEC_MODE", "prepared", []string{"ONSALE_DB_QUERY_EXEC_MODE", "cache_describe"}, ""},
		{"ONSALE_OTLP_ENDPOINT", "collector:4318", []string{"ONSALE_OTLP_ENDPOINT", "http"}, ""},
		{"ONSALE_WEBHOOK_ALLOW_NETWORKS", "127.0.0.0/8,localhost", []string{"ONSALE_WEBHOOK_ALLOW_NETWORKS", "CIDR"}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.env+"="+tc.value, func(t *testing.T) {
			t.Parallel()
			cfg, err := loadConfig(envMap(map[string]string{tc.env: tc.value}), "", "")
			if err == nil {
				t.Fatalf("accepted; config %+v", cfg)
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error does not contain %q:\n%v", w, err)
				}
			}
			if tc.hidden != "" && strings.Contains(err.Error(), tc.hidden) {
				t.Errorf("error repeats a secret:\n%v", err)
			}
		})
	}
}

func TestLoadConfigShutdownMustOutlastDrain(t *testing.T) {
	t.Parallel()
	for _, pair := range [][2]string{{"10s", "10s"}, {"10s", "9s"}, {"30s", "25s"}} { // drain, shutdown; the last relies on the 25s default
		env := map[string]string{"ONSALE_DRAIN_DELAY": pair[0], "ONSALE_SHUTDOWN_TIMEOUT": pair[1]}
		if pair[1] == "25s" {
			delete(env, "ONSALE_SHUTDOWN_TIMEOUT")
		}
		_, err := loadConfig(envMap(env), "", "")
		if err == nil || !strings.Contains(err.Error(), "ONSALE_SHUTDOWN_TIMEOUT") || !strings.Contains(err.Error(), "ONSALE_DRAIN_DELAY") {
			t.Errorf("drain %s, shutdown %s: err = %v; want it to name both variables", pair[0], pair[1], err)
		}
	}
	cfg, err := loadConfig(envMap(map[string]string{"ONSALE_DRAIN_DELAY": "10s", "ONSALE_SHUTDOWN_TIMEOUT": "11s"}), "", "")
	if err != nil || cfg.DrainDelay != 10*time.Second || cfg.ShutdownTimeout != 11*time.Second {
		t.Fatalf("drain 10s, shutdown 11s: %v", err)
	}
	if _, err := loadConfig(envMap(map[string]string{"ONSALE_DRAIN_DELAY": "0s"}), "", ""); err != nil {
		t.Fatalf("no drain delay refused: %v", err)
	}
}

func TestLoadConfigReportsEveryBadValue(t *testing.T) {
	t.Parallel()
	_, err := loadConfig(envMap(map[string]string{
		"ONSALE_DRAIN_DELAY":  "soon",
		"ONSALE_DB_MAX_CONNS": "many",
		"ONSALE_REDIS_URL":    "nope",
		"ONSALE_LOG_FORMAT":   "xml",
	}), "", "")
	if err == nil {
		t.Fatal("accepted")
	}
	for _, name := range []string{"ONSALE_DRAIN_DELAY", "ONSALE_DB_MAX_CONNS"} {
		if !strings.Contains(err.Error(), name) {
			t.Errorf("error does not name %s:\n%v", name, err)
		}
	}
}

func TestLoadConfigFileThenEnv(t *testing.T) {
	t.Parallel()
	file := filepath.Join(t.TempDir(), "onsale.yaml")
	if err := os.WriteFile(file, []byte("drain_delay: 1s\ndb_max_conns: 8\nhttp_addr: 127.0.0.1:9000\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := loadConfig(envMap(map[string]string{"ONSALE_DRAIN_DELAY": "2s"}), file, "")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DrainDelay != 2*time.Second || cfg.DBMaxConns != 8 || cfg.HTTP.Addr != "127.0.0.1:9000" {
		t.Fatalf("file then env: %+v", cfg)
	}
	if err := os.WriteFile(file, []byte("drian_delay: 1s\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := loadConfig(envMap(nil), file, ""); err == nil || !strings.Contains(err.Error(), "drian_delay") {
		t.Fatalf("misspelt key: err = %v", err)
	}
}

func TestRunPrintConfig(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	env := envList(map[string]string{
		"ONSALE_DATABASE_URL": "postgres://onsale:s3cr3t-pw@db.internal:5432/onsale?sslmode=disable",
		"ONSALE_REDIS_URL":    "redis://:r3dis-pw@cache:6379/0",
		"ONSALE_DRAIN_DELAY":  "2s",
	})
	code := run(context.Background(), []string{"--print-config"}, env, strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	out := stdout.String()
	for _, secret := range []string{"s3cr3t-pw", "r3dis-pw"} {
		if strings.Contains(out, secret) {
			t.Fatalf("printed config shows a password:\n%s", out)
		}
	}
	for _, want := range []string{
		"ONSALE_DATABASE_URL=postgres://onsale:****@db.internal:5432/onsale?sslmode=disable\n",
		"ONSALE_REDIS_URL=redis://****@cache:6379/0\n",
		"ONSALE_DRAIN_DELAY=2s\n",
		"ONSALE_ENV=development\n",
		"ONSALE_HTTP_ADDR=:8080\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	line := regexp.MustCompile(`^ONSALE_[A-Z0-9_]+=.*$`)
	for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
		if !line.MatchString(l) {
			t.Errorf("not a NAME=value line: %q", l)
		}
	}
}

func TestRunBadConfig(t *testing.T) {
	t.Parallel()
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--print-config"},
		envList(map[string]string{"ONSALE_HTTP_WRITE_TIMEOUT": "forever"}), strings.NewReader(""), &stdout, &stderr)
	if code != 2 {
		t.Fatalf("exit code %d, want 2", code)
	}
	if !strings.Contains(stderr.String(), "ONSALE_HTTP_WRITE_TIMEOUT") {
		t.Fatalf("stderr does not name the variable:\n%s", stderr.String())
	}
	if stdout.Len() != 0 {
		t.Fatalf("printed a config despite the error:\n%s", stdout.String())
	}

	stderr.Reset()
	if code := run(context.Background(), []string{"--no-such-flag"}, nil, strings.NewReader(""), &stdout, &stderr); code != 2 {
		t.Fatalf("unknown flag: exit code %d, want 2", code)
	}
}

// TestConfigRedisClusterURL: ONSALE_REDIS_URL takes a Redis Cluster's seed list
// (redis+cluster://), which --print-config shows with its password masked; a cluster URL naming a
// database other than 0 is refused (a cluster has database 0 only), and so is a key prefix with
// braces (it would be every key's hash tag).
func TestConfigRedisClusterURL(t *testing.T) {
	t.Parallel()
	const seeds = "redis+cluster://onsale:cl5ter-pw@redis-0:7000,redis-1:7000,redis-2:7000"
	if _, err := loadConfig(envMap(map[string]string{"ONSALE_REDIS_URL": seeds}), "", ""); err != nil {
		t.Fatalf("a cluster URL refused: %v", err)
	}
	_, err := loadConfig(envMap(map[string]string{"ONSALE_REDIS_URL": "redis+cluster://:cl5ter-pw@a:7000,b:7000/2"}), "", "")
	if err == nil || !strings.Contains(err.Error(), "ONSALE_REDIS_URL") || strings.Contains(err.Error(), "cl5ter-pw") {
		t.Errorf("a cluster URL with database 2: err = %v", err)
	}
	_, err = loadConfig(envMap(map[string]string{"ONSALE_REDIS_URL": seeds, "ONSALE_REDIS_PREFIX": "{onsale}:"}), "", "")
	if err == nil || !strings.Contains(err.Error(), "ONSALE_REDIS_PREFIX") {
		t.Errorf("a prefix with a hash tag: err = %v", err)
	}
	var stdout, stderr bytes.Buffer
	code := run(context.Background(), []string{"--print-config"}, envList(map[string]string{"ONSALE_REDIS_URL": seeds}),
		strings.NewReader(""), &stdout, &stderr)
	if code != 0 {
		t.Fatalf("exit code %d; stderr:\n%s", code, stderr.String())
	}
	if out := stdout.String(); strings.Contains(out, "cl5ter-pw") ||
		!strings.Contains(out, "ONSALE_REDIS_URL=redis+cluster://onsale:****@redis-0:7000,redis-1:7000,redis-2:7000\n") {
		t.Errorf("printed config:\n%s", out)
	}
}
