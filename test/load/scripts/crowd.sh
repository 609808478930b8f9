#!/bin/bash
# crowd.sh: the 150,000-stream run of docs/benchmarks.md. Eight server processes in external mode
# (one Redis, PostgreSQL and NATS shared), each with its own load-tool process opening and holding
# STREAMS/8 order-status streams from the loopback source addresses, RATE a second in all. Each process stays under
# the machine's 20,000 open files. A flash sale of TICKETS tickets to BUYERS buyers runs over the
# same 8 servers twice: before the crowd arrives (the baseline) and while every stream is open.
# Figures go to OUT: JSON per tool and per sale, CPU and memory per kind of process every 5 s
# (cpu.log), and summary.json.
#
# The crowd's orders must stay pending for the whole hold, or their streams end with a final
# status, while the sale's orders are charged at once. The crowd's tickets cost 42.01 and the
# servers' simulated provider leaves charges of that amount pending, as a bank transfer would:
# each is answered once and asked again only after ONSALE_PAYMENT_STALE_AFTER, so the crowd holds
# no payment worker and the sale's payments do not queue behind it. Access tokens live an hour: a
# stream is asked to reconnect when its token runs out (15 minutes by default), and preparing the
# crowd takes minutes. A card payment takes LATENCY at the provider (2 s, a payment with a 3-D
# Secure check): the winners' streams, opened right after checkout, are open before it ends. Each
# server runs with GOMEMLIMIT=MEMLIMIT, as in a container (docs/operations.md): with GOGC at 400 and
# no limit, the garbage of the heartbeats grew each heap to five times its live size. HEARTBEAT is
# the streams' keep-alive interval (ONSALE_SSE_HEARTBEAT), what the crowd costs in CPU.
#
#   go build -o bin/server ./cmd/server && go build -o bin/load ./test/load
#   STREAMS=150000 HOLD=10m OUT=/tmp/crowd test/load/scripts/crowd.sh
set -u
STREAMS=${STREAMS:-150000} HOLD=${HOLD:-10m} OUT=${OUT:-$(mktemp -d)} N=${N:-8}
BUYERS=${BUYERS:-10000} TICKETS=${TICKETS:-1000} RATE=${RATE:-2000} LATENCY=${LATENCY:-2s} MEMLIMIT=${MEMLIMIT:-512MiB} HEARTBEAT=${HEARTBEAT:-15s} CROWD_PRICE=4201
PG=${PG:-postgres://postgres@127.0.0.1:5432} REDIS=${REDIS:-redis://127.0.0.1:6379/0} NATS=${NATS:-nats://127.0.0.1:4222}
mkdir -p "$OUT"
RUN=$(date +%s)
createdb -h 127.0.0.1 -U postgres "crowd_$RUN" || exit 1
bin/server admin gen-keys > "$OUT/jwt.json" && bin/server admin gen-keys > "$OUT/tickets.json" || exit 1
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT
targets=() metrics=()
for i in $(seq 1 "$N"); do
  env GOMEMLIMIT="$MEMLIMIT" ONSALE_HTTP_ADDR=127.0.0.1:$((8100 + i)) ONSALE_DEBUG_ADDR=127.0.0.1:$((6100 + i)) \
    'ONSALE_BOOTSTRAP_ORGANIZER=org@example.com:organizer password' ONSALE_ACCESS_LOG=false ONSALE_LOG_LEVEL=warn \
    ONSALE_ARGON2_MEMORY_KIB=1024 ONSALE_ARGON2_TIME=1 ONSALE_RATE_LIMIT_AUTH=0 ONSALE_RATE_LIMIT_HOLDS=0 \
    ONSALE_MAX_HOLDS_PER_CUSTOMER=100000 ONSALE_ACCESS_TTL=1h ONSALE_SSE_HEARTBEAT=$HEARTBEAT \
    ONSALE_SIMULATED_LATENCY=$LATENCY ONSALE_SIMULATED_PENDING_AMOUNT=$CROWD_PRICE ONSALE_PAYMENT_STALE_AFTER=2h ONSALE_PAYMENT_WINDOW=2h \
    ONSALE_ALLOW_SIMULATED_PROVIDER=true ONSALE_DB_MAX_CONNS=8 \
    ONSALE_REDIS_URL="$REDIS" ONSALE_REDIS_PREFIX="crowd$RUN:" ONSALE_DATABASE_URL="$PG/crowd_$RUN" \
    ONSALE_NATS_URL="$NATS" ONSALE_NATS_PREFIX="C$RUN" \
    ONSALE_JWT_KEYS_FILE="$OUT/jwt.json" ONSALE_TICKET_KEYS_FILE="$OUT/tickets.json" ONSALE_DATA_DIR="$OUT/data$i" \
    bin/server > "$OUT/server$i.log" 2>&1 &
  pids+=($!)
  targets+=(--target "http://127.0.0.1:$((8100 + i))") metrics+=(--metrics "http://127.0.0.1:$((6100 + i))")
  [ "$i" = 1 ] && sleep 3 # the first one migrates the database
done
for i in $(seq 1 "$N"); do
  for _ in $(seq 1 150); do curl -fs "http://127.0.0.1:$((8100 + i))/readyz" >/dev/null && break; sleep 0.2; done
done

# CPU (% of one core, over the last 5 s) and resident memory of every kind of process, and the
# box's memory in use. ps's %CPU is an average over a process's life, which hides a sale of a few
# seconds; PostgreSQL's RSS counts its shared buffers once per backend.
( hz=$(getconf CLK_TCK) pg=$(getconf PAGESIZE) prev=$(mktemp) cur=$(mktemp)
  while sleep 5; do
    cat /proc/[0-9]*/stat 2>/dev/null | awk '{c = $2; gsub(/[()]/, "", c)
      if (c ~ /^(server|load|redis-server|postgres|nats-server)$/) { t[c] += $14 + $15; r[c] += $24 } }
      END { for (c in t) print c, t[c], r[c] }' | sort > "$cur"
    echo "$(date +%s) $(join "$prev" "$cur" | awk -v hz="$hz" -v pg="$pg" \
      '{ printf "%s cpu_pct %.0f rss_mib %.0f; ", $1, ($4 - $2) * 100 / hz / 5, $5 * pg / 1048576 }') box used_mib $(free -m | awk '/^Mem:/ { print $3 }')"
    cp "$cur" "$prev"
  done ) >> "$OUT/cpu.log" & # appended to, as the sales' marks are
pids+=($!)

sale() { # sale NAME: a flash sale over every server, the winners watching their order's stream
  bin/load flash-sale "${targets[@]}" "${metrics[@]}" --organizer 'org@example.com:organizer password' \
    --buyers "$BUYERS" --tickets "$TICKETS" --watch --connections 1000 --database-url "$PG/crowd_$RUN" \
    --json "$OUT/$1.json" > "$OUT/$1.out" 2>&1
}
echo "$(date +%s) sale without the crowd" >> "$OUT/cpu.log"
sale sale-alone

tools=()
for i in $(seq 1 "$N"); do
  bin/load streams --target "http://127.0.0.1:$((8100 + i))" --metrics "http://127.0.0.1:$((6100 + i))" \
    --organizer 'org@example.com:organizer password' --price-cents "$CROWD_PRICE" \
    --streams $((STREAMS / N)) --rate $((RATE / N)) --hold-for "$HOLD" --holds-per-customer 4 --json "$OUT/streams$i.json" > "$OUT/load$i.out" 2>&1 &
  tools+=($!)
done
# The sale starts once every tool has its streams open (or has given up), a minute into the hold.
for i in $(seq 1 "$N"); do
  until grep -q 'load: streams: .* open' "$OUT/load$i.out" 2>/dev/null || ! kill -0 "${tools[$((i - 1))]}" 2>/dev/null; do sleep 5; done
done
sleep 60
echo "$(date +%s) sale in the crowd" >> "$OUT/cpu.log"
sale sale-crowd

rc=0
for p in "${tools[@]}"; do wait "$p" || rc=1; done
jq -s '{opened: (map(.opened) | add), dropped: (map(.dropped) | add), open_failed: (map(.open_failed) | add),
  asked_to_reconnect: (map(.asked_to_reconnect) | add),
  kib_per_stream: ((map(.rss_open_bytes - .rss_before_bytes) | add) / (map(.opened) | add) / 1024),
  goroutines_per_stream: (map(.goroutines_per_stream) | max), rss_open_mib: ((map(.rss_open_bytes) | add) / 1048576)}' "$OUT"/streams*.json > "$OUT/crowd.json"
jq -n --slurpfile c "$OUT/crowd.json" --slurpfile a "$OUT/sale-alone.json" --slurpfile b "$OUT/sale-crowd.json" \
  '$c[0] + {sale_alone: ($a[0] | {hold_p99_ms, confirmed, oversold, answered_within_s, confirmed_to_stream_p50_ms, confirmed_to_stream_p99_ms, confirmed_before_stream_open}),
    sale_in_crowd: ($b[0] | {hold_p99_ms, confirmed, oversold, answered_within_s, confirmed_to_stream_p50_ms, confirmed_to_stream_p99_ms, confirmed_before_stream_open}),
    hold_p99_ratio: ($b[0].hold_p99_ms / $a[0].hold_p99_ms)}' | tee "$OUT/summary.json"
exit $rc
