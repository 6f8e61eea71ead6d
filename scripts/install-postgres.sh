#!/usr/bin/env bash
# Installs Debian's PostgreSQL server for the tests that run Ferry's record store on it, if it
# is not there yet, and the system user `ferry-pg` the tests run it as (initdb and postgres
# refuse to run as root). The tests start and stop their own clusters in temporary
# directories (coordinator/src/testkit.rs); nothing here starts a server. Needs root (or
# sudo) and Debian's package archive.
set -euo pipefail
if ! ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1; then
    # shellcheck source=lib/cross-env.sh
    . "$(dirname "$0")/lib/cross-env.sh"
    export DEBIAN_FRONTEND=noninteractive
    apt_update >/dev/null
    # The server binaries only: no cluster is created or started by the package.
    as_root apt-get install -y -qq --no-install-recommends postgresql-15 >/dev/null
fi
if [ "$(id -u)" = 0 ] && ! id -u ferry-pg >/dev/null 2>&1; then
    useradd --system --no-create-home --shell /usr/sbin/nologin ferry-pg
fi
ls /usr/lib/postgresql/*/bin/postgres
