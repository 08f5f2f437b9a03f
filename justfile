# Thin recipes over cargo. `just` lists them.

default:
    @just --list

# Serve the API on the embedded SQLite default (data under ./data).
run:
    cargo run --release

# Every test, on SQLite, PostgreSQL and MariaDB (servers skipped loudly if unreachable).
test:
    cargo test --workspace

# One module's tests, e.g. `just test-module inventory`.
test-module module:
    cargo test -p {{module}}

# Create and register a module: `just new-module loyalty` (see README, "Adding a module").
new-module name:
    cargo xtask new-module {{name}}

# Fuzz the HTTP API against its OpenAPI document (schemathesis, on SQLite and PostgreSQL).
fuzz-api *engines:
    bash tests/contract/run.sh {{engines}}

# Write the OpenAPI document to apps/switchyard/openapi.json (a test checks it is current).
openapi:
    cargo run --quiet -p switchyard -- openapi > apps/switchyard/openapi.json

# Formatting and lints as CI runs them.
lint:
    cargo fmt --all --check
    cargo clippy --workspace --all-targets -- -D warnings

# Format the workspace.
fmt:
    cargo fmt --all

# What CI runs.
ci:
    bash .ci/run
