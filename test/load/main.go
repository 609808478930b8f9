// Command load drives one or several running onsale servers through the benchmark scenarios
// (flash-sale, holds, browse, checkout, confirm, login, streams, waiting-room), checks their invariants and
// performance targets, and reports throughput and latency percentiles as ratios to a baseline
// measured in the same run: a trivial JSON handler served by the tool itself and driven with the
// same client settings. "load --help" lists the scenarios, "load <scenario> --help" its flags.
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

// scenario is one of the tool's measurements.
type scenario struct {
	name     string
	about    string            // one line for the help
	flags    []string          // the flags it reads beside the common ones
	defaults map[string]string // flag defaults that differ from the common ones
	run      func(ctx context.Context, e *env) (*Result, error)
}

// commonFlags are read by every scenario (or by several: the help says which).
var commonFlags = []string{"target", "route", "metrics", "organizer", "password", "connections", "timeout", "source-ips", "prep-workers",
	"provider", "database-url", "baseline-duration", "json", "plot", "fail-on-target", "quiet", "price-cents"}

// scenarios lists the scenarios in the order the help shows them.
func scenarios() []scenario {
	return []scenario{
		{name: "flash-sale", run: runFlashSale,
			about:    "50,000 buyers race for 1,000 tickets, the winners check out: never oversold, all answered within 5 s",
			flags:    []string{"buyers", "tickets", "answer-within", "confirm-timeout", "watch"},
			defaults: map[string]string{"connections": "1000"}},
		{name: "holds", run: runHolds,
			about:    "2,000 customers hold and release on one large ticket type: hold throughput and p99",
			flags:    []string{"duration", "rate", "customers", "capacity", "holds-per-customer"},
			defaults: map[string]string{"connections": "1000", "customers": "2000"}},
		{name: "browse", run: runBrowse,
			about:    "cached availability reads: read throughput against the baseline, cache hit ratio",
			flags:    []string{"duration", "rate"},
			defaults: map[string]string{"connections": "1000"}},
		{name: "checkout", run: runCheckout,
			about:    "1,000 orders/s on holds made ahead, followed on their event streams: creation and confirmation p99",
			flags:    []string{"rate", "duration", "holds-per-customer", "streams-per-customer", "max-streams", "latency-ms", "confirm-timeout"},
			defaults: map[string]string{"connections": "1000", "rate": "1000"}},
		{name: "confirm", run: runConfirm,
			about:    "10,000 orders queued behind a paused provider, then released: confirmations/s on one ticket type",
			flags:    []string{"orders", "holds-per-customer", "confirm-timeout"},
			defaults: map[string]string{"connections": "1000"}},
		{name: "refunds", run: runRefunds,
			about:    "an event of 10,000 confirmed orders cancelled: time until all are refunded, each once, checkout p99 on another event beside it",
			flags:    []string{"orders", "rate", "duration", "confirm-timeout"},
			defaults: map[string]string{"connections": "200", "rate": "100", "duration": "20s"}},
		{name: "login", run: runLogin,
			about:    "a login storm at the servers' real argon2id cost: logins/s against the raw hash rate, hold p99 beside it",
			flags:    []string{"duration", "rate", "customers", "light-workers", "argon2-memory-kib", "argon2-time", "argon2-threads", "argon2-seconds"},
			defaults: map[string]string{"connections": "200", "customers": "200", "rate": "200", "duration": "10s"}},
		{name: "streams", run: runStreams,
			about:    "19,000 order event streams held open on one server: none dropped, memory per stream",
			flags:    []string{"streams", "hold-for", "holds-per-customer", "streams-per-customer", "rate"},
			defaults: map[string]string{"connections": "1000"}},
		{name: "waiting-room", run: runWaitingRoom,
			about:    "100,000 customers join a waiting room at once and are admitted at a set rate: strictly in order, at the rate, no hold without a pass",
			flags:    []string{"customers", "tickets", "admission-rate", "opens-in", "streams"},
			defaults: map[string]string{"connections": "1000", "customers": "100000", "streams": "2000"}},
	}
}

func findScenario(name string) (scenario, bool) {
	for _, s := range scenarios() {
		if s.name == name {
			return s, true
		}
	}
	return scenario{}, false
}

// Options are the command line's settings.
type Options struct {
	Targets      []string
	Routes       []Route  // --route: the processes of a module's paths, in the order given
	Metrics      []string // where each target, then each route, serves /metrics, in that order; empty: the targets and routes
	Connections  int
	Duration     time.Duration
	Rate         float64
	Organizer    string
	Password     string
	JSONFile     string
	PlotFile     string
	Provider     string
	DatabaseURL  string
	SourceIPs    []net.IP // --source-ips as a list (empty: off, or auto)
	SourceAuto   bool     // --source-ips auto: loopback addresses when the targets are on loopback
	Timeout      time.Duration
	PrepWorkers  int
	BaselineDur  time.Duration
	FailOnTarget bool
	Quiet        bool
	PriceCents   int

	Buyers        int
	Tickets       int
	AnswerWithin  time.Duration
	ConfirmWait   time.Duration
	Watch         bool
	Customers     int
	Capacity      int
	HoldsPerCust  int
	StreamsPerCus int
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
	AdmissionRate int
	OpensIn       time.Duration
}

type stringList []string

func (s *stringList) String() string     { return strings.Join(*s, ",") }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

// newFlagSet defines every flag, with sc's defaults where they differ from the common ones.
func newFlagSet(o *Options, sc scenario) (*flag.FlagSet, *stringList, *stringList, *string) {
	fs := flag.NewFlagSet("load "+sc.name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // parseArgs reports errors and prints the help itself
	fs.Usage = func() {}
	targets, routes := &stringList{}, &stringList{}
	sourceIPs := new(string)
	fs.Var(targets, "target", "base `URL` of a server under test, e.g. http://127.0.0.1:8080 (repeatable; requests go round-robin)")
	fs.Var(routes, "route", "`MODULE=URL`: the requests of a module's paths (auth, inventory or payment, split as in deploy/nginx/split.conf) go to URL, a process running it, instead of the targets; repeatable, several URLs of one module take turns. For a split deployment without a load balancer that routes by path")
	fs.IntVar(&o.Connections, "connections", 1000, "concurrent workers, and keep-alive connections per target")
	fs.DurationVar(&o.Duration, "duration", 30*time.Second, "how long the measured phase runs")
	fs.Float64Var(&o.Rate, "rate", 0, "open loop: requests per second at a constant arrival rate (0: closed loop, workers as fast as they can)")
	fs.StringVar(&o.Organizer, "organizer", "", "`email:password` of the organizer account (server: ONSALE_BOOTSTRAP_ORGANIZER)")
	fs.StringVar(&o.Password, "password", "load-test-password", "password of the customer accounts the tool registers")
	fs.StringVar(&o.JSONFile, "json", "", "write the result as JSON to this file")
	fs.StringVar(&o.PlotFile, "plot", "", "write a PNG of latency (p50, p99) and throughput over the run to this file")
	fs.StringVar(&o.Provider, "provider", "", "simulated provider API base, e.g. http://127.0.0.1:6060/provider: ledger checks and the pause switch (flash-sale, checkout, confirm, streams)")
	fs.StringVar(&o.DatabaseURL, "database-url", "", "PostgreSQL of the servers: also check the invariants in the database (flash-sale, confirm)")
	fs.StringVar(sourceIPs, "source-ips", "auto", "local `addresses` to send from, so that the servers' per-address limits see a crowd: auto ("+loopbackFirst+"-"+loopbackLast+" when every target is on loopback, else the system's choice), off, or a comma-separated list of addresses and ranges (127.0.0.2-127.0.0.99,127.0.1.1); each customer's requests leave from one of them")
	fs.DurationVar(&o.Timeout, "timeout", 15*time.Second, "deadline of one request")
	fs.IntVar(&o.PrepWorkers, "prep-workers", 32, "account registrations and logins in flight while preparing customers (per target)")
	fs.DurationVar(&o.BaselineDur, "baseline-duration", 0, "length of the baseline run (0: min(duration, 5s))")
	fs.BoolVar(&o.FailOnTarget, "fail-on-target", false, "exit non-zero also when a performance target is missed")
	fs.BoolVar(&o.Quiet, "quiet", false, "no progress line")
	fs.IntVar(&o.PriceCents, "price-cents", 4200, "the price of the run's tickets: a simulated provider started with ONSALE_SIMULATED_PENDING_AMOUNT leaves the charges of that amount pending")
	fs.Var((*stringList)(&o.Metrics), "metrics", "base URL where a target serves /metrics when not on its API port (the server's ONSALE_DEBUG_ADDR, e.g. http://127.0.0.1:6060; repeatable, in --target order, then in --route order)")

	fs.IntVar(&o.Buyers, "buyers", 50000, "buyers released at once")
	fs.IntVar(&o.Tickets, "tickets", 1000, "tickets on sale")
	fs.DurationVar(&o.AnswerWithin, "answer-within", 5*time.Second, "every buyer must get an answer to the hold within this time of the release")
	fs.DurationVar(&o.ConfirmWait, "confirm-timeout", 2*time.Minute, "how long orders may take to be confirmed")
	fs.BoolVar(&o.Watch, "watch", false, "the winners follow their order on its event stream, opened right after checkout, instead of polling it: the time from the confirmation to its event on the open stream is measured")
	fs.IntVar(&o.Customers, "customers", 0, "customer accounts to prepare")
	fs.IntVar(&o.Capacity, "capacity", 10000000, "capacity of the ticket type (the API allows at most 10,000,000)")
	fs.IntVar(&o.HoldsPerCust, "holds-per-customer", 4, "live holds one customer may have on the run's ticket type: at most the servers' ONSALE_MAX_HOLDS_PER_TICKET_TYPE (default 4) and ONSALE_MAX_HOLDS_PER_CUSTOMER (live holds across all ticket types, default 8); the tool prepares enough customers to stay within it")
	fs.IntVar(&o.StreamsPerCus, "streams-per-customer", 8, "order event streams one customer may keep open on one server (the servers' limit, 8 by default); the tool prepares enough customers to stay within it")
	fs.IntVar(&o.Orders, "orders", 10000, "orders queued behind the paused provider")
	fs.Float64Var(&o.LatencyMS, "latency-ms", 0, "the provider latency the server runs with (ONSALE_SIMULATED_LATENCY; read from --provider when 0, else 50)")
	fs.IntVar(&o.Argon2MemKiB, "argon2-memory-kib", 19456, "the server's ONSALE_ARGON2_MEMORY_KIB")
	fs.IntVar(&o.Argon2Time, "argon2-time", 2, "the server's ONSALE_ARGON2_TIME")
	fs.IntVar(&o.Argon2Threads, "argon2-threads", 1, "the server's ONSALE_ARGON2_THREADS")
	fs.DurationVar(&o.Argon2For, "argon2-seconds", 3*time.Second, "how long the raw argon2id hash rate is measured")
	fs.IntVar(&o.LightWorkers, "light-workers", 50, "workers (and customers) of the light hold load")
	fs.IntVar(&o.MaxStreams, "max-streams", 4000, "order event streams open at once (more orders wait for a slot; their confirmation time is then the server's)")
	fs.IntVar(&o.Streams, "streams", 19000, "concurrent order event streams")
	fs.IntVar(&o.AdmissionRate, "admission-rate", 60000, "the waiting room's admission rate, customers a minute")
	fs.DurationVar(&o.OpensIn, "opens-in", 2*time.Second, "the waiting room opens this long after it is turned on: customers who join before are drawn at random at the opening")
	fs.DurationVar(&o.HoldFor, "hold-for", 60*time.Second, "how long the streams are held open")
	for name, v := range sc.defaults {
		f := fs.Lookup(name)
		if err := f.Value.Set(v); err != nil {
			panic(fmt.Sprintf("scenario %s: default --%s=%s: %v", sc.name, name, v, err)) // a mistake in the table above
		}
		f.DefValue = v
	}
	return fs, targets, routes, sourceIPs
}

// printUsage writes the tool's help: how to call it and one line per scenario.
func printUsage(w io.Writer) {
	fmt.Fprint(w, `usage: load <scenario> --target URL --organizer EMAIL:PASSWORD [flags]
       load <scenario> --help     the scenario's flags

Drives one or several running onsale servers through a scenario and reports throughput and
latency percentiles as ratios to a baseline measured in the same run (the tool serving
{"ok":true} to itself with the same client settings). docs/benchmarks.md has the commands.

scenarios:
`)
	for _, s := range scenarios() {
		fmt.Fprintf(w, "  %-10s  %s\n", s.name, s.about)
	}
}

// printScenarioUsage writes a scenario's help: what it measures, its own flags and the common
// ones, with the scenario's defaults.
func printScenarioUsage(w io.Writer, sc scenario, fs *flag.FlagSet) {
	fmt.Fprintf(w, "usage: load %s --target URL --organizer EMAIL:PASSWORD [flags]\n\n%s: %s\n", sc.name, sc.name, sc.about)
	for _, part := range []struct {
		title string
		names []string
	}{{"flags of " + sc.name, sc.flags}, {"common flags", commonFlags}} {
		fmt.Fprintf(w, "\n%s:\n", part.title)
		sub := flag.NewFlagSet(sc.name, flag.ContinueOnError)
		sub.SetOutput(w)
		for _, name := range part.names {
			f := fs.Lookup(name)
			sub.Var(f.Value, f.Name, f.Usage)
			sub.Lookup(name).DefValue = f.DefValue
		}
		sub.PrintDefaults()
	}
}

func isHelp(arg string) bool {
	return arg == "-h" || arg == "--help" || arg == "-help" || arg == "help"
}

// parseArgs reads "<scenario> [flags]". A request for help prints it on stdout and returns
// flag.ErrHelp; a flag another scenario reads but this one does not is accepted with a warning on
// stderr.
func parseArgs(args []string, stdout, stderr io.Writer) (string, *Options, error) {
	if len(args) == 0 {
		return "", nil, errors.New("no scenario given (load --help lists them)")
	}
	if isHelp(args[0]) {
		if len(args) > 1 {
			if sc, ok := findScenario(args[1]); ok {
				fs, _, _, _ := newFlagSet(&Options{}, sc)
				printScenarioUsage(stdout, sc, fs)
				return "", nil, flag.ErrHelp
			}
		}
		printUsage(stdout)
		return "", nil, flag.ErrHelp
	}
	sc, ok := findScenario(args[0])
	if !ok {
		if strings.HasPrefix(args[0], "-") {
			return "", nil, fmt.Errorf("no scenario given before %s (load --help lists them)", args[0])
		}
		return "", nil, fmt.Errorf("unknown scenario %q (load --help lists them)", args[0])
	}
	o := &Options{}
	fs, targets, routes, sourceIPs := newFlagSet(o, sc)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			printScenarioUsage(stdout, sc, fs)
			return "", nil, err
		}
		return "", nil, fmt.Errorf("%w (load %s --help lists its flags)", err, sc.name)
	}
	if fs.NArg() > 0 {
		return "", nil, fmt.Errorf("unexpected arguments: %v", fs.Args())
	}
	fs.Visit(func(f *flag.Flag) {
		if !slices.Contains(commonFlags, f.Name) && !slices.Contains(sc.flags, f.Name) {
			fmt.Fprintf(stderr, "load: --%s has no effect on %s\n", f.Name, sc.name)
		}
	})
	o.Targets = []string(*targets)
	for i, t := range o.Targets {
		o.Targets[i] = strings.TrimRight(t, "/")
	}
	o.Provider = strings.TrimRight(o.Provider, "/")
	var err error
	if o.Routes, err = parseRoutes(*routes); err != nil {
		return "", nil, err
	}
	if o.SourceIPs, o.SourceAuto, err = parseSources(*sourceIPs); err != nil {
		return "", nil, err
	}
	return sc.name, o, o.validate(sc)
}

func (o *Options) validate(sc scenario) error {
	var errs []error
	if len(o.Targets) == 0 {
		errs = append(errs, errors.New("at least one --target is required"))
	}
	if len(o.Metrics) > 0 && len(o.Metrics) != len(o.Targets)+len(o.Routes) {
		errs = append(errs, errors.New("--metrics: give one per --target and then one per --route, in the same order, or none"))
	}
	if o.Connections < 1 {
		errs = append(errs, errors.New("--connections must be 1 or more"))
	}
	if o.Duration <= 0 && slices.Contains(sc.flags, "duration") {
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
	if o.StreamsPerCus < 1 {
		errs = append(errs, errors.New("--streams-per-customer must be 1 or more"))
	}
	if len(o.Password) < 8 {
		errs = append(errs, errors.New("--password must have 8 characters or more"))
	}
	if o.Organizer == "" {
		errs = append(errs, errors.New("--organizer email:password is required (start the servers with ONSALE_BOOTSTRAP_ORGANIZER)"))
	} else if !strings.Contains(o.Organizer, ":") {
		errs = append(errs, errors.New("--organizer wants email:password"))
	}
	if o.PriceCents < 0 || o.PriceCents > 100000000 {
		errs = append(errs, errors.New("--price-cents must be from 0 to 100000000"))
	}
	if o.Capacity < 1 || o.Capacity > 10000000 {
		errs = append(errs, errors.New("--capacity must be from 1 to 10000000 (the API's limit)"))
	}
	switch sc.name {
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
	case "waiting-room":
		if o.Customers < 2 || o.Tickets < 1 || o.Tickets > 10000000 {
			errs = append(errs, errors.New("--customers must be 2 or more and --tickets from 1 to 10000000"))
		}
		if o.AdmissionRate < 1 || o.AdmissionRate > 1000000 {
			errs = append(errs, errors.New("--admission-rate must be from 1 to 1000000 a minute"))
		}
		if o.Streams < 0 || o.Streams > o.Customers {
			errs = append(errs, errors.New("--streams must be from 0 to --customers"))
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

// run is the command without the process globals: 0 when every invariant held (or help was
// asked for), 1 when one failed or the run could not complete, 2 on a usage error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		printUsage(stderr)
		return 2
	}
	scenario, o, err := parseArgs(args, stdout, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintf(stderr, "load: %v\n", err)
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
	sc, _ := findScenario(scenario)
	res, err := sc.run(ctx, e)
	if res != nil {
		res.noteSources(e)
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
