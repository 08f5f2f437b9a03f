#!/usr/bin/env bash
# Fuzzes the HTTP API against its own OpenAPI document: builds the release binary, starts
# it on SQLite and then on PostgreSQL, and runs schemathesis (installed into
# target/contract-venv on first use) against each with ./schemathesis.sh: 200 examples
# per operation, stateful runs along the document's links, and these checks: no 5xx,
# every response as documented (status, content type, headers, body), schema-valid input
# accepted and schema-invalid input refused, 405 with `Allow` for undocumented methods,
# and every error a `urn:switchyard:problem:*` problem (hooks.py). Every request carries
# the session of an administrator opened with `switchyard accounts create` (hooks.py logs
# in again after a 401, so a fuzzed logout or `DELETE /api/sessions` does not end the
# run's authentication); login throttling is raised so that the fuzzed failed logins do not
# lock the run out. Exits non-zero on any failure. `just fuzz-api` runs it; CI runs it
# after the tests.
#
#   tests/contract/run.sh [sqlite|postgres]...    (default: both)
#
# PostgreSQL is the local server (127.0.0.1:5432, user postgres), as for the tests; a
# database of its own is created and dropped. Set MAX_EXAMPLES, SEED etc. as
# schemathesis.sh documents.
set -euo pipefail
cd "$(dirname "$0")/../.."
HERE=tests/contract
engines=("$@")
[ ${#engines[@]} -gt 0 ] || engines=(sqlite postgres)

echo "=== building the release binary"
cargo build --release --quiet --bin switchyard
binary=target/release/switchyard

work=$(mktemp -d)
pid=""
pg_db=""
cleanup() {
  if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
  if [ -n "$pg_db" ]; then psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null 2>&1 || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

# The administrator every fuzzed request acts as (hooks.py logs it in).
export CONTRACT_EMAIL=admin@contract.example
CONTRACT_PASSWORD="contract-$(od -An -N16 -tx1 /dev/urandom | tr -d ' \n')"
export CONTRACT_PASSWORD

# Starts the binary on $1 (a database URL), with an administrator; sets $pid and $base.
start() {
  local log="$work/server.log"
  printf '%s\n' "$CONTRACT_PASSWORD" | SWITCHYARD_DATABASE__URL="$1" SWITCHYARD_LOG__FILTER=warn \
    "$binary" accounts create --email "$CONTRACT_EMAIL" --role admin >/dev/null
  SWITCHYARD_HTTP__ADDR=127.0.0.1:0 SWITCHYARD_DATABASE__URL="$1" \
    SWITCHYARD_LOG__FORMAT=json SWITCHYARD_LOG__FILTER=warn,switchyard=info \
    SWITCHYARD_IDENTITY__MAX_FAILURES_PER_CLIENT=1000000000 \
    SWITCHYARD_IDENTITY__MAX_FAILURES_PER_EMAIL=1000000000 \
    SWITCHYARD_IDENTITY__MAX_REGISTRATIONS_PER_CLIENT=1000000000 \
    SWITCHYARD_NOTIFICATIONS__DIR="$work/mail" \
    "$binary" >"$log" 2>&1 &
  pid=$!
  for _ in $(seq 1 100); do
    local addr
    addr=$(python3 - "$log" <<'PY'
import json, sys
for line in open(sys.argv[1]):
    try:
        fields = json.loads(line).get("fields", {})
    except ValueError:
        continue
    if fields.get("message") == "serving":
        print(fields["addr"])
        break
PY
)
    if [ -n "$addr" ]; then base="http://$addr"; export CONTRACT_BASE_URL="$base"; return 0; fi
    kill -0 "$pid" 2>/dev/null || { cat "$log"; echo "the server exited" >&2; return 1; }
    sleep 0.2
  done
  cat "$log"; echo "the server did not start" >&2; return 1
}

stop() {
  kill -TERM "$pid"; wait "$pid" || { echo "the server did not stop cleanly" >&2; cat "$work/server.log"; return 1; }
  pid=""
  # A 5xx is logged in full by the server: show any, so that a failure can be read.
  if grep -q '"level":"ERROR"' "$work/server.log"; then
    echo "server errors logged:"; grep '"level":"ERROR"' "$work/server.log" | head -20
  fi
}

status=0
summary=()
for engine in "${engines[@]}"; do
  case "$engine" in
    sqlite) url="sqlite://$work/data" ;;
    postgres)
      pg_db="switchyard_contract_$$"
      url="postgres://postgres@127.0.0.1:5432/$pg_db"
      ;;
    *) echo "unknown engine $engine (sqlite or postgres)" >&2; exit 2 ;;
  esac
  echo "=== $engine: starting $binary"
  start "$url"
  # The document's example product, cheap and plentiful, so that the example order
  # (and the orders the stateful runs derive from it) is placed: 201s get checked too.
  token=$(curl -sf -X POST "$base/api/sessions" -H 'content-type: application/json' \
    -d "{\"email\":\"$CONTRACT_EMAIL\",\"password\":\"$CONTRACT_PASSWORD\"}" \
    | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])')
  curl -sf -o /dev/null -X POST "$base/api/products" -H 'content-type: application/json' \
    -H "authorization: Bearer $token" \
    -d '{"sku":"WIDGET-1","name":"Widget","price_minor":1,"currency":"EUR","stock":1000000000}'
  echo "=== $engine: fuzzing $base"
  started=$SECONDS
  if CONTRACT_REPORT_DIR="target/contract-report/$engine" bash "$HERE/schemathesis.sh" "$base"; then
    result=passed
  else
    result=FAILED
    status=1
  fi
  stop || status=1
  summary+=("$engine: $result in $((SECONDS - started)) s; $(tail -n 1 "target/contract-report/$engine/summary.txt")")
  if [ "$engine" = postgres ]; then
    psql -h 127.0.0.1 -U postgres -qc "DROP DATABASE IF EXISTS $pg_db WITH (FORCE)" >/dev/null
    pg_db=""
  fi
done
echo "=== contract"
printf '%s\n' "${summary[@]}"
exit $status
