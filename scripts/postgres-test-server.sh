#!/usr/bin/env bash
# Starts Debian's PostgreSQL cluster (15/main) and creates the role the tests use
# (optout_test, password optout_test, allowed to create databases, as each test makes its
# own, and roles, as the test of deploy/postgresql/roles.sql does). Run as root. The tests find the server through OPTOUT_TEST_POSTGRES, by default
# postgres://optout_test:optout_test@127.0.0.1:5432/postgres.
set -euo pipefail
version=$(ls /usr/lib/postgresql | sort -n | tail -1)
if ! pg_lsclusters -h | grep -q "^$version main"; then
    pg_createcluster "$version" main >/dev/null
fi
pg_ctlcluster "$version" main start 2>/dev/null || pg_ctlcluster "$version" main status >/dev/null
for _ in $(seq 100); do
    su postgres -c "pg_isready -q" && break
    sleep 0.1
done
su postgres -c "psql -qtAc \"SELECT 1 FROM pg_roles WHERE rolname = 'optout_test'\"" | grep -q 1 ||
    su postgres -c "psql -qc \"CREATE ROLE optout_test LOGIN PASSWORD 'optout_test'\""
su postgres -c "psql -qc \"ALTER ROLE optout_test CREATEDB CREATEROLE\""
