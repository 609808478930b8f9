#!/bin/bash
# crowd.sh: the 150,000-stream run of docs/benchmarks.md. Eight server processes in external mode
# (one Redis, PostgreSQL and NATS shared), each with its own load-tool process opening and holding
# STREAMS/8 order-status streams from the loopback source addresses. Each process stays under
# the machine's 20,000 open files. Figures go to OUT (JSON per tool, ps samples every 30 s).
# The orders must stay pending for the whole hold, or their streams end with a final status: the
# simulated provider takes 80 minutes a call (a paused provider's calls time out and are retried
# until the order fails), and few workers wait on it. Access tokens live an hour: a stream is
# asked to reconnect when its token runs out (15 minutes by default), and preparing the crowd
# takes minutes.
#
#   go build -o bin/server ./cmd/server && go build -o bin/load ./test/load
#   STREAMS=150000 HOLD=10m OUT=/tmp/crowd test/load/scripts/crowd.sh
set -u
STREAMS=${STREAMS:-150000} HOLD=${HOLD:-10m} OUT=${OUT:-$(mktemp -d)} N=${N:-8}
PG=${PG:-postgres://postgres@127.0.0.1:5432} REDIS=${REDIS:-redis://127.0.0.1:6379/0} NATS=${NATS:-nats://127.0.0.1:4222}
mkdir -p "$OUT"
RUN=$(date +%s)
createdb -h 127.0.0.1 -U postgres "crowd_$RUN" || exit 1
bin/server admin gen-keys > "$OUT/jwt.json" && bin/server admin gen-keys > "$OUT/tickets.json" || exit 1
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
for i in $(seq 1 "$N"); do
  env ONSALE_HTTP_ADDR=127.0.0.1:$((8100 + i)) ONSALE_DEBUG_ADDR=127.0.0.1:$((6100 + i)) \
    'ONSALE_BOOTSTRAP_ORGANIZER=org@example.com:organizer password' ONSALE_ACCESS_LOG=false ONSALE_LOG_LEVEL=warn \
    ONSALE_ARGON2_MEMORY_KIB=1024 ONSALE_ARGON2_TIME=1 ONSALE_RATE_LIMIT_AUTH=0 ONSALE_RATE_LIMIT_HOLDS=0 \
    ONSALE_MAX_HOLDS_PER_CUSTOMER=100000 ONSALE_ACCESS_TTL=1h \
    ONSALE_SIMULATED_SLOW=80m ONSALE_PROVIDER_TIMEOUT=90m ONSALE_PAYMENT_ACK_WAIT=100m ONSALE_PAYMENT_WINDOW=2h ONSALE_PAYMENT_WORKERS=64 \
    ONSALE_ALLOW_SIMULATED_PROVIDER=true ONSALE_DB_MAX_CONNS=8 \
    ONSALE_REDIS_URL="$REDIS" ONSALE_REDIS_PREFIX="crowd$RUN:" ONSALE_DATABASE_URL="$PG/crowd_$RUN" \
    ONSALE_NATS_URL="$NATS" ONSALE_NATS_PREFIX="C$RUN" \
    ONSALE_JWT_KEYS_FILE="$OUT/jwt.json" ONSALE_TICKET_KEYS_FILE="$OUT/tickets.json" ONSALE_DATA_DIR="$OUT/data$i" \
    bin/server > "$OUT/server$i.log" 2>&1 &
  pids+=($!)
  [ "$i" = 1 ] && sleep 3 # the first one migrates the database
done
for i in $(seq 1 "$N"); do
  for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$((8100 + i))/readyz" >/dev/null && break; sleep 0.2; done
done
( while sleep 30; do date +%s; ps -C server,load,redis-server,postgres,nats-server -o pid=,rss=,pcpu=,comm= | \
    awk '{rss[$4]+=$2; cpu[$4]+=$3} END {for (c in rss) printf "%s rss_mib %.0f cpu_pct %.0f\n", c, rss[c]/1024, cpu[c]}'; done ) > "$OUT/ps.log" &
pids+=($!)
tools=()
for i in $(seq 1 "$N"); do
  bin/load streams --target "http://127.0.0.1:$((8100 + i))" --metrics "http://127.0.0.1:$((6100 + i))" \
    --provider "http://127.0.0.1:$((6100 + i))/provider" --organizer 'org@example.com:organizer password' \
    --streams $((STREAMS / N)) --hold-for "$HOLD" --holds-per-customer 4 --json "$OUT/streams$i.json" > "$OUT/load$i.out" 2>&1 &
  tools+=($!)
done
rc=0
for p in "${tools[@]}"; do wait "$p" || rc=1; done
jq -s '{opened: (map(.opened) | add), dropped: (map(.dropped) | add), open_failed: (map(.open_failed) | add),
  kib_per_stream: ((map(.rss_open_bytes - .rss_before_bytes) | add) / (map(.opened) | add) / 1024),
  goroutines_per_stream: (map(.goroutines_per_stream) | max), rss_open_mib: ((map(.rss_open_bytes) | add) / 1048576)}' "$OUT"/streams*.json | tee "$OUT/summary.json"
exit $rc
