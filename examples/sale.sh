#!/usr/bin/env bash
# A whole sale against a running onsale server, one step at a time: the organizer sets up an event,
# a new customer holds two tickets, checks out and follows the order until it is confirmed, and door
# staff admit one ticket, which a second scan then refuses.
#
# Start the server with the two accounts this script logs in as (from the repository root):
#
#   ONSALE_BOOTSTRAP_ORGANIZER='org@example.com:organizer password' \
#   ONSALE_BOOTSTRAP_STAFF='staff@example.com:staff password' \
#   go run ./cmd/server
#
# then, in another terminal:
#
#   bash examples/sale.sh
#
# It talks to ${ONSALE_URL:-http://localhost:8080} and needs curl and jq. Each run registers a new
# customer, so it can run again and again against the same server. It stops at the first answer it
# did not expect, prints that answer (a problem document) and exits 1.
set -euo pipefail

BASE=${ONSALE_URL:-http://localhost:8080}
BASE=${BASE%/}
ORGANIZER_EMAIL='org@example.com'
ORGANIZER_PASSWORD='organizer password'
STAFF_EMAIL='staff@example.com'
STAFF_PASSWORD='staff password'

HINT="" # what to check when the current step fails, if there is something to suggest
die() {
  printf '\nFAILED: %s\n' "$*" >&2
  if [ -n "$HINT" ]; then printf '%s\n' "$HINT" >&2; fi
  exit 1
}

for tool in curl jq; do
  command -v "$tool" >/dev/null || die "$tool is not installed; this script needs curl and jq"
done

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

step=0
say() { # say TEXT: a numbered heading for the next step
  step=$((step + 1))
  printf '\n%d. %s\n' "$step" "$*"
}
show() { printf '   %s\n' "$*"; } # show TEXT: a detail of the current step

TOKEN=""
BODY=""
# call METHOD PATH WANT [BODY [CURL-ARGS...]]: sends a request with $TOKEN (when set) as bearer
# token and BODY as JSON, keeps the answer in $BODY, and stops the script unless the status is WANT.
call() {
  local method=$1 path=$2 want=$3 data=${4:-} code
  shift 3
  if [ $# -gt 0 ]; then shift; fi
  local args=(-sS -X "$method" -o "$tmp/body" -w '%{http_code}' -H 'Accept: application/json')
  if [ -n "$TOKEN" ]; then args+=(-H "Authorization: Bearer $TOKEN"); fi
  if [ -n "$data" ]; then args+=(-H 'Content-Type: application/json' --data-binary "$data"); fi
  code=$(curl "${args[@]}" "$@" "$BASE$path") ||
    die "$method $BASE$path: no answer (is the server running? start it as the top of $0 shows)"
  BODY=$(cat "$tmp/body")
  show "$method $path -> $code"
  if [ "$code" != "$want" ]; then
    printf '\n%s\n' "$(jq . <<<"$BODY" 2>/dev/null || printf '%s' "$BODY")" >&2
    die "$method $path answered $code, expected $want"
  fi
}
field() { jq -r "$1" <<<"$BODY"; } # field FILTER: a value of the last answer

# login EMAIL PASSWORD: logs in and keeps the access token in $TOKEN.
login() {
  TOKEN=""
  call POST /v1/auth/login 200 "$(jq -n --arg e "$1" --arg p "$2" '{email: $e, password: $p}')"
  TOKEN=$(field .access_token)
  show "logged in as $1; the access token lasts $(field .expires_in) s"
}

hex() { od -An -N"$1" -tx1 /dev/urandom | tr -d ' \n'; } # hex N: N random bytes in hex

echo "onsale at $BASE"
curl -sS -o /dev/null "$BASE/livez" ||
  die "no server answers at $BASE; start one as the top of $0 shows, or set ONSALE_URL"

say "The organizer logs in"
HINT="Was the server started with ONSALE_BOOTSTRAP_ORGANIZER as the top of $0 shows?"
login "$ORGANIZER_EMAIL" "$ORGANIZER_PASSWORD"
HINT=""

say "The organizer creates an event a month from now"
starts_at=$(jq -nr '(now + 30 * 86400) | floor | todate')
call POST /v1/events 201 "$(jq -n --arg s "$starts_at" \
  '{name: "First Hour Live", venue: "Hall 1", starts_at: $s, description: "A show made by examples/sale.sh"}')"
EVENT=$(field .id)
show "event $EVENT: $(field .name) at $(field .venue), starting $(field .starts_at)"

say "The organizer adds a ticket type"
call POST "/v1/events/$EVENT/ticket-types" 201 \
  '{"name": "General admission", "price_cents": 2500, "currency": "EUR", "capacity": 100, "max_per_order": 4}'
TICKET_TYPE=$(field .id)
show "ticket type $TICKET_TYPE: $(field .name), $(field .capacity) at $(field .price_cents) cents $(field .currency)"

say "A customer registers"
CUSTOMER_EMAIL="buyer-$(date +%s)-$(hex 3)@example.com"
CUSTOMER_PASSWORD="buyer password $(hex 4)"
TOKEN=""
call POST /v1/auth/register 201 "$(jq -n --arg e "$CUSTOMER_EMAIL" --arg p "$CUSTOMER_PASSWORD" \
  '{email: $e, password: $p, name: "Ada Buyer"}')"
show "account $(field .id): $(field .email), role $(field .role)"

say "The customer logs in"
login "$CUSTOMER_EMAIL" "$CUSTOMER_PASSWORD"

say "The customer holds 2 tickets"
call POST /v1/holds 201 "$(jq -n --arg t "$TICKET_TYPE" '{ticket_type_id: $t, quantity: 2}')"
HOLD=$(field .id)
show "hold $HOLD: $(field .quantity) tickets at $(field .unit_price_cents) cents each, kept until $(field .expires_at)"

say "The customer checks the hold out"
IDEMPOTENCY_KEY="sale-$(date -u +%Y%m%dT%H%M%SZ)-$(hex 8)"
call POST /v1/orders 202 "$(jq -n --arg h "$HOLD" '{hold_id: $h}')" -H "Idempotency-Key: $IDEMPOTENCY_KEY"
ORDER=$(field .id)
show "order $ORDER: $(field .status), $(field .amount_cents) cents $(field .currency) (Idempotency-Key $IDEMPOTENCY_KEY)"

say "The customer follows the order until the payment is done (Server-Sent Events)"
show "GET /v1/orders/$ORDER/events"
status="" other=""
while IFS= read -r line; do
  line=${line%$'\r'}
  case $line in
    data:*)
      data=${line#data:}
      status=$(jq -r .status <<<"$data")
      show "event: version $(jq -r .version <<<"$data"), status $status$(jq -r 'if (.status_detail // "") != "" then " (" + .status_detail + ")" else "" end' <<<"$data")"
      if [ "$status" = confirmed ] || [ "$status" = failed ]; then break; fi
      ;;
    id:* | event:* | :* | retry:* | "") ;;
    *) other+="$line"$'\n' ;;
  esac
done < <(curl -sSN --max-time 60 -H "Authorization: Bearer $TOKEN" -H 'Accept: text/event-stream' \
  "$BASE/v1/orders/$ORDER/events" 2>&1 || true)
if [ "$status" != confirmed ]; then
  if [ -n "$other" ]; then printf '\n%s' "$other" >&2; fi
  die "the order's event stream ended with status '${status:-none}', expected confirmed"
fi

say "The customer fetches the order's tickets"
call GET "/v1/orders/$ORDER" 200
[ "$(field .status)" = confirmed ] || die "GET /v1/orders/$ORDER says $(field .status), expected confirmed"
[ "$(field '.tickets | length')" = 2 ] || die "the order has $(field '.tickets | length') tickets, expected 2: $BODY"
jq -r '.tickets[] | "   ticket \(.id): \(.code)"' <<<"$BODY"
CODE=$(field '.tickets[0].code')

say "Door staff log in"
HINT="Was the server started with ONSALE_BOOTSTRAP_STAFF as the top of $0 shows?"
login "$STAFF_EMAIL" "$STAFF_PASSWORD"
HINT=""

say "Staff scan the first ticket: admitted"
call POST /v1/checkins 200 "$(jq -n --arg c "$CODE" '{code: $c}')"
show "ticket $(field .ticket.id) admitted at $(field .checked_in_at)"

say "Staff scan the same ticket again: refused"
call POST /v1/checkins 409 "$(jq -n --arg c "$CODE" '{code: $c}')"
show "$(field .title): $(field '.detail // .type')"

printf '\nThe sale went through: order %s confirmed with 2 tickets, one admitted once.\n' "$ORDER"
