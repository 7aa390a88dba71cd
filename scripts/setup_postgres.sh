#!/usr/bin/env bash
# Debian's postgresql package: the server binaries (initdb, pg_ctl, postgres) that the test
# session starts a throwaway PostgreSQL from (tests/postgres.py), so the label store, MLflow and
# Optuna are tested on PostgreSQL as well as SQLite. apt starts no server; neither does this.
# Idempotent: does nothing when the binaries are there. Needs root (apt-get).
set -euo pipefail
found=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
if [ -n "$found" ] && [ -x "$(dirname "$found")/pg_ctl" ]; then
    echo "setup_postgres: PostgreSQL already installed ($("$found" --version))"
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1 || [ "$(id -u)" -ne 0 ]; then
    echo "setup_postgres: installing PostgreSQL needs root and apt-get" \
         "(apt-get install --no-install-recommends postgresql)" >&2
    exit 1
fi
echo "setup_postgres: installing Debian's postgresql (apt-get)"
export DEBIAN_FRONTEND=noninteractive
apt-get install -y -qq --no-install-recommends postgresql >/dev/null 2>&1 || {
    apt-get update -qq
    apt-get install -y -qq --no-install-recommends postgresql >/dev/null
}
found=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
echo "setup_postgres: installed $("$found" --version)"
