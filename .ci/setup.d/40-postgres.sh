# PostgreSQL for the attestor service's storage, API and crash tests (issue 6).
# Sourced by .ci/run (bash, set -euo pipefail, as root, after apt-get update).
# Installs Debian's PostgreSQL, starts the cluster directly with pg_ctlcluster
# (CI has no systemd), creates a login role and a database, and exports
# CLOISTER_TEST_DATABASE_URL. Each test makes its own schema inside that
# database, so tests run in parallel and leave nothing behind. Idempotent.
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends postgresql postgresql-client >/dev/null

PG_VERSION="$(ls /usr/lib/postgresql | sort -V | tail -n1)"
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" { found = 1 } END { exit !found }'; then
    pg_createcluster "$PG_VERSION" main >/dev/null
fi
# Parallel tests each hold a small pool; the default 100 connections is tight.
pg_conftool "$PG_VERSION" main set max_connections 400
if ! pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" && $4 == "online" { up = 1 } END { exit !up }'; then
    pg_ctlcluster "$PG_VERSION" main start
fi
PG_PORT="$(pg_lsclusters -h | awk -v v="$PG_VERSION" '$1 == v && $2 == "main" { print $3 }')"

pg_psql() { runuser -u postgres -- psql -p "$PG_PORT" -v ON_ERROR_STOP=1 -qtA "$@"; }
for _ in $(seq 1 30); do pg_psql -c 'SELECT 1' >/dev/null 2>&1 && break; sleep 1; done
if [ "$(pg_psql -c "SELECT 1 FROM pg_roles WHERE rolname = 'cloister'")" != "1" ]; then
    pg_psql -c "CREATE ROLE cloister LOGIN PASSWORD 'cloister'"
fi
if [ "$(pg_psql -c "SELECT 1 FROM pg_database WHERE datname = 'cloister_test'")" != "1" ]; then
    pg_psql -c "CREATE DATABASE cloister_test OWNER cloister"
fi
export CLOISTER_TEST_DATABASE_URL="postgres://cloister:cloister@127.0.0.1:${PG_PORT}/cloister_test"
echo "postgres $PG_VERSION on port $PG_PORT: CLOISTER_TEST_DATABASE_URL=$CLOISTER_TEST_DATABASE_URL"
