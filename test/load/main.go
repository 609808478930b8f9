// Command load drives one or several running onsale servers through the scenarios of the
// benchmark issue (flash-sale, holds, browse, checkout, confirm, login, streams) and reports
// throughput and latency percentiles as ratios to a baseline measured in the same run: a trivial
// JSON handler served by the tool itself and driven with the same client settings.
//
//	go run ./test/load <scenario> --target URL [--target URL ...] [flags]
//
// The servers should run with cheap password hashing for every scenario but login
// (ONSALE_ARGON2_MEMORY_KIB=1024 ONSALE_ARGON2_TIME=1), otherwise preparing thousands of
// customer accounts takes minutes. See docs/benchmarks.md for the exact commands.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"
)

// scenarios maps each scenario to its runner.
var scenarios = map[string]func(ctx context.Context, e *env) (*Result, error){
	"flash-sale": runFlashSale,
	"holds":      runHolds,
	"browse":     runBrowse,
	"checkout":   runCheckout,
	"confirm":    runConfirm,
	"login":      runLogin,
	"streams":    runStreams,
}

func scenarioNames() []string {
	names := make([]string, 0, len(scenarios))
	for n := range scenarios {
		names = append(names, n)
	}
	slices.Sort(names)
	return names
}

// Options are the command line's settings.
type Options struct {
	Targets      []string
	Metrics      []string // where each target serves /metrics, in Targets order; empty: the targets
	Connections  int
	Duration     time.Duration
	Rate         float64
	Organizer    string
	Password     string
	JSONFile     string
	PlotFile     string
	Provider     string
	DatabaseURL  string
	SourceIPs    []net.IP
	Timeout      time.Duration
	PrepWorkers  int
	BaselineDur  time.Duration
	FailOnTarget bool
	Quiet        bool

	Buyers        int
	Tickets       int
	AnswerWithin  time.Duration
	ConfirmWait   time.Duration
	Customers     int
	Capacity      int
	HoldsPerCust  int
	Orders        int
	LatencyMS     float64
	Argon2MemKiB  int
	Argon2Time    int
	Argon2Threads int
	Argon2For     time.Duration
	LightWorkers  int
	Streams       int
	MaxStreams    int
	HoldFor       time.Duration
	LightRate     float64
}

// defaults per scenario for the flags that differ; applied when the flag was not given.
var scenarioDefaults = map[string]map[string]string{
	"flash-sale": {"connections": "1000"},
	"holds":      {"connections": "1000", "customers": "2000"},
	"browse":     {"connections": "1000"},
	"checkout":   {"connections": "1000", "rate": "1000"},
	"confirm":    {"connections": "1000"},
	"login":      {"connections": "200", "customers": "200", "rate": "200", "duration": "10s"},
	"streams":    {"connections": "1000"},
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func newFlagSet(o *Options, stderr io.Writer) (*flag.FlagSet, *stringList, *string) {
	fs := flag.NewFlagSet("load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	targets := &stringList{}
	sourceIPs := new(string)
	fs.Var(targets, "target", "base URL of a server under test, e.g. http://127.0.0.1:8080 (repeatable; requests go round-robin)")
	fs.IntVar(&o.Connections, "connections", 1000, "concurrent workers, and keep-alive connections per target")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long the measured phase runs")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: requests per second at a constant arrival rate (0: closed loop, workers as fast as they can)")
	fs.StringVar(&o.Organizer, "organizer", "", "email:password of the organizer account (server: ONSALE_BOOTSTRAP_ORGANIZER)")
	fs.StringVar(&o.Password, "password", "load-test-password", "password of the customer accounts the tool registers")
	fs.StringVar(&o.JSONFile, "json", "", "write the result as JSON to this file")
	fs.StringVar(&o.PlotFile, "plot", "", "write a PNG of the p50/p99 latency per second to this file")
	fs.StringVar(&o.Provider, "provider", "", "simulated provider API base, e.g. http://127.0.0.1:6060/provider (ledger and pause switch)")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "PostgreSQL of the servers: also check the invariants in the database")
	fs.StringVar(sourceIPs, "source-ips", "", "comma-separated local addresses to bind outgoing connections to, round-robin (e.g. 127.0.0.2,127.0.0.3)")
	fs.DurationVar(&o.Timeout, "timeout", 15*time.Second, "deadline of one request")
	fs.IntVar(&o.PrepWorkers, "prep-workers", 32, "account registrations and logins in flight while preparing customers (per target)")
	fs.DurationVar(&o.BaselineDur, "baseline-duration", 0, "length of the baseline run (0: min(duration, 5s))")
	fs.BoolVar(&o.FailOnTarget, "fail-on-target", false, "exit non-zero also when a performance target is missed")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress line")
	fs.Var((*stringList)(&o.Metrics), "metrics", "base URL where a target serves /metrics when not on its API port (the server's ONSALE_DEBUG_ADDR, e.g. http://127.0.0.1:6060; repeatable, in --target order)")

	fs.IntVar(&o.Buyers, "buyers", 50000, "flash-sale: buyers released at once")
	fs.IntVar(&o.Tickets, "tickets", 1000, "flash-sale: tickets on sale")
	fs.DurationVar(&o.AnswerWithin, "answer-within", 5*time.Second, "flash-sale: every buyer must get an answer to the hold within this time of the release")
	fs.DurationVar(&o.ConfirmWait, "confirm-timeout", 2*time.Minute, "how long orders may take to be confirmed")
	fs.IntVar(&o.Customers, "customers", 0, "customer accounts to prepare (holds: 2000, login: 200; others derive it)")
	fs.IntVar(&o.Capacity, "capacity", 10000000, "holds: capacity of the ticket type (the API allows at most 10,000,000)")
	fs.IntVar(&o.HoldsPerCust, "holds-per-customer", 4, "live holds one customer may have (the server's ONSALE_MAX_HOLDS_PER_CUSTOMER, default 4)")
	fs.IntVar(&o.Orders, "orders", 10000, "confirm: orders queued behind the paused provider")
	fs.Float64Var(&o.LatencyMS, "latency-ms", 0, "checkout: the provider latency the server runs with (ONSALE_SIMULATED_LATENCY; read from --provider when 0, else 50)")
	fs.IntVar(&o.Argon2MemKiB, "argon2-memory-kib", 19456, "login: the server's ONSALE_ARGON2_MEMORY_KIB")
	fs.IntVar(&o.Argon2Time, "argon2-time", 2, "login: the server's ONSALE_ARGON2_TIME")
	fs.IntVar(&o.Argon2Threads, "argon2-threads", 1, "login: the server's ONSALE_ARGON2_THREADS")
	fs.DurationVar(&o.Argon2For, "argon2-seconds", 3*time.Second, "login: how long the raw argon2id hash rate is measured")
	fs.IntVar(&o.LightWorkers, "light-workers", 50, "login: workers (and customers) of the light hold load")
	fs.IntVar(&o.MaxStreams, "max-streams", 4000, "checkout: order event streams open at once (more orders wait for a slot; their confirmation time is then the server's)")
	fs.IntVar(&o.Streams, "streams", 19000, "streams: concurrent order event streams")
	fs.DurationVar(&o.HoldFor, "hold-for", 60*time.Second, "streams: how long the streams are held open")
	return fs, targets, sourceIPs
}

// parseArgs reads "<scenario> [flags]".
func parseArgs(args []string, stderr io.Writer) (string, *Options, error) {
	o := &Options{}
	fs, targets, sourceIPs := newFlagSet(o, stderr)
	usage := func() {
		fmt.Fprintf(stderr, "usage: load <scenario> --target URL [flags]\nscenarios: %s\nflags:\n", strings.Join(scenarioNames(), ", "))
		fs.PrintDefaults()
	}
	fs.Usage = usage
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		usage()
		return "", nil, errors.New("no scenario given")
	}
	scenario := args[0]
	if _, ok := scenarios[scenario]; !ok {
		usage()
		return "", nil, fmt.Errorf("unknown scenario %q", scenario)
	}
	if err := fs.Parse(args[1:]); err != nil {
		return "", nil, err
	}
	if fs.NArg() > 0 {
		return "", nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	for name, v := range scenarioDefaults[scenario] {
		if !set[name] {
			if err := fs.Set(name, v); err != nil {
				return "", nil, err
			}
		}
	}
	o.Targets = []string(*targets)
	for i, t := range o.Targets {
		o.Targets[i] = strings.TrimRight(t, "/")
	}
	o.Provider = strings.TrimRight(o.Provider, "/")
	if *sourceIPs != "" {
		for _, s := range strings.Split(*sourceIPs, ",") {
			ip := net.ParseIP(strings.TrimSpace(s))
			if ip == nil {
				return "", nil, fmt.Errorf("--source-ips: %q is not an IP address", s)
			}
			o.SourceIPs = append(o.SourceIPs, ip)
		}
	}
	return scenario, o, o.validate(scenario)
}

func (o *Options) validate(scenario string) error {
	var errs []error
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("at least one --target is required"))
	}
	if len(o.Metrics) > 0 && len(o.Metrics) != len(o.Targets) {
		errs = append(errs, errors.New("--metrics: give one per --target, in the same order, or none"))
	}
	if o.Connections < 1 {
		errs = append(errs, errors.New("--connections must be 1 or more"))
	}
	if o.Duration <= 0 && scenario != "flash-sale" && scenario != "confirm" {
		errs = append(errs, errors.New("--duration must be positive"))
	}
	if o.Rate < 0 {
		errs = append(errs, errors.New("--rate must be 0 (closed loop) or positive"))
	}
	if o.MaxStreams < 1 {
		errs = append(errs, errors.New("--max-streams must be 1 or more"))
	}
	if o.HoldsPerCust < 1 {
		errs = append(errs, errors.New("--holds-per-customer must be 1 or more"))
	}
	if len(o.Password) < 8 {
		errs = append(errs, errors.New("--password must have 8 characters or more"))
	}
	if o.Organizer == "" {
		errs = append(errs, errors.New("--organizer email:password is required (start the servers with ONSALE_BOOTSTRAP_ORGANIZER)"))
	} else if !strings.Contains(o.Organizer, ":") {
		errs = append(errs, errors.New("--organizer wants email:password"))
	}
	if o.Capacity < 1 || o.Capacity > 10000000 {
		errs = append(errs, errors.New("--capacity must be from 1 to 10000000 (the API's limit)"))
	}
	switch scenario {
	case "flash-sale":
		if o.Buyers < 1 || o.Tickets < 1 || o.Tickets > 10000000 {
			errs = append(errs, errors.New("--buyers must be 1 or more and --tickets from 1 to 10000000"))
		}
	case "checkout":
		if o.Rate <= 0 {
			errs = append(errs, errors.New("checkout is an open-loop scenario: --rate must be positive"))
		}
	case "confirm":
		if o.Provider == "" {
			errs = append(errs, errors.New("confirm needs --provider to pause and resume the payment provider"))
		}
		if o.Orders < 1 || o.Orders > 1000000 {
			errs = append(errs, errors.New("--orders must be from 1 to 1000000"))
		}
	case "login":
		if o.Rate <= 0 {
			errs = append(errs, errors.New("login: --rate (the light hold load) must be positive"))
		}
	case "streams":
		if o.Streams < 1 || o.Streams > 1000000 {
			errs = append(errs, errors.New("--streams must be from 1 to 1000000"))
		}
		if o.HoldFor <= 0 {
			errs = append(errs, errors.New("--hold-for must be positive"))
		}
	}
	return errors.Join(errs...)
}

// baselineDuration is how long the baseline runs.
func (o *Options) baselineDuration() time.Duration {
	if o.BaselineDur > 0 {
		return o.BaselineDur
	}
	d := min(o.Duration, 5*time.Second)
	if d <= 0 {
		d = 5 * time.Second
	}
	return d
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	os.Exit(code)
}

// run is the command without the process globals: 0 when every invariant held, 1 when one
// failed or the run could not complete, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	scenario, o, err := parseArgs(args, stderr)
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintf(stderr, "load: %v\n", err)
		}
		return 2
	}
	res, err := execute(ctx, scenario, o, stdout, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "load: %s: %v\n", scenario, err)
		return 1
	}
	if res.Failed(o.FailOnTarget) {
		return 1
	}
	return 0
}

// execute runs one scenario and writes its reports; the returned error says the run could not
// complete (a failed invariant is in the result, not an error).
func execute(ctx context.Context, scenario string, o *Options, stdout, stderr io.Writer) (*Result, error) {
	if limit, err := raiseFileLimit(); err == nil && !o.Quiet {
		fmt.Fprintf(stderr, "load: open-file limit %d\n", limit)
	}
	e, err := newEnv(o, stdout, stderr)
	if err != nil {
		return nil, err
	}
	defer e.close()
	res, err := scenarios[scenario](ctx, e)
	if res != nil {
		res.finish(e)
		res.PrintTable(stdout)
		if o.JSONFile != "" {
			if werr := res.WriteJSON(o.JSONFile); werr != nil {
				err = errors.Join(err, werr)
			}
		}
		if o.PlotFile != "" {
			if werr := res.WritePlot(o.PlotFile); werr != nil {
				err = errors.Join(err, werr)
			}
		}
	}
	return res, err
}
