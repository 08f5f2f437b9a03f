#!/usr/bin/env bash
# Contract fuzzing of the Switchyard HTTP API with schemathesis (property-based, OpenAPI 3.1).
#
#   run.sh [BASE_URL] [-- extra schemathesis args...]
#
# BASE_URL (arg 1, else $BASE_URL, else http://127.0.0.1:8080) is where the API listens;
# the schema is read from $SCHEMA_URL (default $BASE_URL/openapi.json). The server must
# already be running; the run only sends traffic to BASE_URL.
#
# Environment (all optional):
#   CONTRACT_VENV        venv for schemathesis        (default target/contract-venv, relative to cwd)
#   CONTRACT_REPORT_DIR  reports, wiped on each run   (default target/contract-report)
#   CONTRACT_PYTHON      interpreter for the venv     (default python3; schemathesis 4.32 needs >= 3.11)
#   MAX_EXAMPLES         test cases per operation and phase, and stateful scenarios (default 200)
#   SEED                 Hypothesis seed              (default 42)
#   WORKERS              concurrent workers           (default 1: with 2, a Hypothesis race can
#                        silently cut an operation's fuzzing short; 1 was only ~10% slower here)
#   REQUEST_TIMEOUT      seconds per request          (default 10)
#   MAX_TIME             overall time budget, seconds (default unset: run to completion)
#   PHASES               default examples,coverage,fuzzing,stateful
#   CHECKS               comma-separated check list   (default: see CHECKS below)
#   POSITIVE_OK          statuses a schema-valid request may get (positive_data_acceptance)
#
# Exit status: 0 when schemathesis passed and the summary found no failure, else non-zero.
set -euo pipefail

SCHEMATHESIS_VERSION=4.32.5
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

BASE_URL="${BASE_URL:-http://127.0.0.1:8080}"
if [[ $# -gt 0 && "$1" != "--" ]]; then BASE_URL="$1"; shift; fi
if [[ $# -gt 0 && "$1" == "--" ]]; then shift; fi
EXTRA_ARGS=("$@")
BASE_URL="${BASE_URL%/}"
SCHEMA_URL="${SCHEMA_URL:-$BASE_URL/openapi.json}"

CONTRACT_VENV="${CONTRACT_VENV:-target/contract-venv}"
REPORT_DIR="${CONTRACT_REPORT_DIR:-target/contract-report}"
PYTHON="${CONTRACT_PYTHON:-python3}"
MAX_EXAMPLES="${MAX_EXAMPLES:-200}"
SEED="${SEED:-42}"
WORKERS="${WORKERS:-1}"
REQUEST_TIMEOUT="${REQUEST_TIMEOUT:-10}"
PHASES="${PHASES:-examples,coverage,fuzzing,stateful}"
# Checks on (everything else off; see the notes beside this script):
#   not_a_server_error            no 5xx
#   status_code_conformance       status documented for the operation
#   content_type_conformance      content type documented for that status
#   response_headers_conformance  documented response headers (e.g. required Location on 201)
#   response_schema_conformance   body matches the documented schema
#   negative_data_rejection       schema-invalid input gets 400/404/405/409/415/422/...
#   positive_data_acceptance      schema-valid input gets 2xx/404/409/422 (422 added: semantic errors)
#   missing_required_header       a dropped required header gets 400/415/422/...
#   unsupported_method            undocumented methods get 405 with an Allow header
#   allow_header_conformance      an Allow header lists exactly the documented methods
#   ensure_resource_availability  a resource a link points at (POST 201 -> GET) exists
#   use_after_free                a deleted resource stays gone
#   problem_json_errors           (hooks.py) every 4xx/5xx is urn:switchyard:problem problem+json
#   ignored_auth                  an operation that needs a session refuses a request without
#                                 one (or with a bad one) with 401
# Off: object_level_authorization (one caller per run; the e2e tests check that customers
# see only their own orders).
CHECKS="${CHECKS:-ignored_auth,not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,positive_data_acceptance,missing_required_header,unsupported_method,allow_header_conformance,ensure_resource_availability,use_after_free,problem_json_errors}"
POSITIVE_OK="${POSITIVE_OK:-2xx,3xx,401,403,404,409,422,429,5xx}"

# ---- schemathesis in its own venv, pinned; reinstalled only when missing or another version
st="$CONTRACT_VENV/bin/schemathesis"
if [[ -x "$st" ]] && [[ "$("$st" --version 2>/dev/null)" == *"version $SCHEMATHESIS_VERSION" ]]; then
  echo "run.sh: schemathesis $SCHEMATHESIS_VERSION already in $CONTRACT_VENV"
else
  if ! "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "run.sh: $PYTHON is missing or older than 3.11 (schemathesis $SCHEMATHESIS_VERSION needs >= 3.11); set CONTRACT_PYTHON" >&2
    exit 2
  fi
  echo "run.sh: installing schemathesis $SCHEMATHESIS_VERSION into $CONTRACT_VENV"
  t0=$SECONDS
  rm -rf "$CONTRACT_VENV"
  "$PYTHON" -m venv "$CONTRACT_VENV"
  # The dependencies as resolved when this script was written (2026-12-01), so that a fresh
  # machine gets the same Hypothesis and jsonschema_rs as the machine that validated it.
  constraints="$(mktemp)"
  cat > "$constraints" <<'PINS'
anyio==4.16.0
certifi==2026.10.19.post1
charset-normalizer==3.5.3
click==8.5.1
graphql-core==3.3.2
harfile==0.6.0
hypothesis==6.170.17
hypothesis-graphql==0.13.5
idna==3.20
iniconfig==2.3.1
jsonschema_rs==0.60.3
markdown-it-py==4.3.0
MarkupSafe==3.0.4
mdurl==0.1.2
packaging==26.4
pluggy==1.7.0
Pygments==2.21.0
pyrate-limiter==4.5.1
pytest==9.2.0
PyYAML==6.0.4
requests==2.34.2
rich==15.0.0
sortedcontainers==2.4.0
typing_extensions==4.16.0
urllib3==2.8.0
Werkzeug==3.1.9
PINS
  "$CONTRACT_VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    -c "$constraints" "schemathesis==$SCHEMATHESIS_VERSION"
  rm -f "$constraints"
  echo "run.sh: installed in $((SECONDS - t0))s"
fi

CONTRACT_VENV="$(cd "$CONTRACT_VENV" && pwd)"
st="$CONTRACT_VENV/bin/schemathesis"

# ---- reports and per-run configuration
mkdir -p "$REPORT_DIR"
REPORT_DIR="$(cd "$REPORT_DIR" && pwd)"
case "$REPORT_DIR" in
  / | "$PWD" | "$HOME" | "$HERE") echo "run.sh: refusing to wipe $REPORT_DIR; set CONTRACT_REPORT_DIR" >&2; exit 2 ;;
esac
rm -rf "${REPORT_DIR:?}"
mkdir -p "$REPORT_DIR"
toml_list() { local IFS=,; local out=() s; for s in $1; do out+=("\"$s\""); done; (IFS=,; echo "${out[*]}"); }
cat > "$REPORT_DIR/schemathesis.toml" <<EOF
# Written by run.sh for this run.
[cache]
# No state carried over from earlier runs (replayed crashes, learned inputs): runs depend
# only on the seed and the server.
enabled = false

[checks.positive_data_acceptance]
# Defaults lack 422; the API answers 422 to schema-valid but semantically invalid input
# (blank names, unknown cursors, an Idempotency-Key reused with another body).
expected-statuses = [$(toml_list "$POSITIVE_OK")]
EOF

args=(
  run "$SCHEMA_URL"
  --wait-for-schema 30
  --phases "$PHASES"
  --checks "$CHECKS"
  --max-examples "$MAX_EXAMPLES"
  --seed "$SEED"
  --generation-database none
  --workers "$WORKERS"
  --request-timeout "$REQUEST_TIMEOUT"
  --continue-on-failure
  --output-sanitize false
  --report junit,ndjson,json
  --report-dir "$REPORT_DIR"
  --report-junit-path "$REPORT_DIR/junit.xml"
  --report-ndjson-path "$REPORT_DIR/events.ndjson"
  --report-json-path "$REPORT_DIR/report.json"
)
# A bare origin keeps the schema's own base path (`servers: [{url: /api}]`); a URL with a path
# replaces it.
if [[ "$BASE_URL" =~ ^https?://[^/]+$ ]]; then args+=(--origin "$BASE_URL"); else args+=(--url "$BASE_URL"); fi
[[ -n "${MAX_TIME:-}" ]] && args+=(--max-time "$MAX_TIME")
[[ "${CI:-}" == "true" || ! -t 1 ]] && args=(--no-color "${args[@]}")

echo "run.sh: schemathesis --config-file $REPORT_DIR/schemathesis.toml ${args[*]} ${EXTRA_ARGS[*]:-}"
t0=$SECONDS
set +e
# Hooks are loaded from SCHEMATHESIS_HOOKS (4.x has no --hooks option). Run from the report
# dir so that nothing (.hypothesis/) lands in the caller's tree.
(cd "$REPORT_DIR" && SCHEMATHESIS_HOOKS="$HERE/hooks.py" "$st" \
  --config-file "$REPORT_DIR/schemathesis.toml" "${args[@]}" "${EXTRA_ARGS[@]}") 2>&1 | tee "$REPORT_DIR/output.txt"
st_rc=${PIPESTATUS[0]}
set -e
echo "run.sh: schemathesis exited $st_rc after $((SECONDS - t0))s"

set +e
"$CONTRACT_VENV/bin/python" "$HERE/summarise.py" \
  --ndjson "$REPORT_DIR/events.ndjson" --json "$REPORT_DIR/report.json" --st-exit-code "$st_rc" --max-examples "$MAX_EXAMPLES" \
  | tee "$REPORT_DIR/summary.txt"
summary_rc=${PIPESTATUS[0]}
set -e
if [[ $st_rc -ne 0 || $summary_rc -ne 0 ]]; then exit 1; fi
