#!/usr/bin/env bash
# Bring up what the test suite drives, on a Debian machine: PostgreSQL and Redis servers, and the
# Debian tools some tests use (postfix's smtp-sink/smtp-source, docker-compose, chromium, wrk,
# spamassassin, dovecot).
#
# It runs before every `make test`, so the common case (everything installed and running) must stay
# a handful of cheap checks. Steps:
#   1. Work out which Debian packages are missing from the binaries they ship.
#   2. If root with apt-get, install them (one `apt-get update`, no prompts, no service starts);
#      otherwise warn and carry on: the tests that need them skip with a reason.
#   3. Start PostgreSQL if it does not answer on 127.0.0.1:5432, wait, create database `test`.
#   4. Start Redis if it does not answer on 127.0.0.1:6379, wait for PONG.
set -euo pipefail

readonly PG_HOST=127.0.0.1
readonly PG_PORT=5432
readonly PG_TEST_DATABASE=test
readonly PG_TEST_ROLE=root
readonly REDIS_HOST=127.0.0.1
readonly REDIS_PORT=6379
readonly READY_TIMEOUT_SECONDS=30

say() { printf 'services: %s\n' "$*"; }
warn() { printf 'services: WARNING: %s\n' "$*" >&2; }

is_root() { [[ $(id -u) -eq 0 ]]; }
can_install() { is_root && command -v apt-get >/dev/null 2>&1; }

# Polls `$@` every half second until it succeeds or READY_TIMEOUT_SECONDS pass.
wait_until() {
    local deadline=$((SECONDS + READY_TIMEOUT_SECONDS))
    until "$@" >/dev/null 2>&1; do
        if ((SECONDS >= deadline)); then
            return 1
        fi
        sleep 0.5
    done
}

postgres_server_installed() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }
postgres_ready() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }
# `timeout` because redis-cli can sit forever on a port held by something that is not Redis.
redis_ready() { [[ $(timeout 5 redis-cli -h "$REDIS_HOST" -p "$REDIS_PORT" ping 2>/dev/null) == PONG ]]; }

# --- 1. Missing packages -------------------------------------------------------------------------

missing_packages=()
missing_reasons=()
need_package() {  # need_package <package> <reason it is needed>
    missing_packages+=("$1")
    missing_reasons+=("$1 ($2)")
}

if [[ ! -x /usr/sbin/smtp-sink || ! -x /usr/sbin/smtp-source ]]; then
    need_package postfix "smtp-sink/smtp-source for the SMTP load tests"
fi
[[ -x /usr/bin/docker-compose ]] || need_package docker-compose "docker-compose config validation"
command -v wrk >/dev/null 2>&1 || need_package wrk "the web benchmark (course bench --scenario web)"
[[ -x /usr/bin/spamassassin ]] || need_package spamassassin "the spam score test of every kind of mail"
# The bounce mailbox tests start a dovecot of their own on a free port (never the system service).
[[ -x /usr/sbin/dovecot ]] || need_package dovecot-imapd "the bounce mailbox tests (a real IMAP server)"
if [[ ! -x /usr/bin/chromium ]]; then
    need_package chromium "browser tests"
    # A Recommends of chromium we skip below; without any font, pages render as empty boxes.
    missing_packages+=(fonts-liberation)
fi
# Japanese and Chinese lessons are screenshotted in Chromium: without a CJK font they are empty boxes.
dpkg -s fonts-noto-cjk >/dev/null 2>&1 || need_package fonts-noto-cjk "CJK lessons in the browser screenshots"
postgres_server_installed || need_package postgresql "PostgreSQL tests"
command -v redis-server >/dev/null 2>&1 || need_package redis-server "Redis tests"

# --- 2. Install them ----------------------------------------------------------------------------

installed_postgres_now=false
if ((${#missing_packages[@]} > 0)); then
    if can_install; then
        say "installing ${missing_packages[*]}"
        export DEBIAN_FRONTEND=noninteractive
        if [[ " ${missing_packages[*]} " == *" postfix "* ]]; then
            # Only the smtp-sink/smtp-source binaries are wanted: no mail system, no prompt.
            echo 'postfix postfix/main_mailer_type select No configuration' | debconf-set-selections
        fi
        # Keep package scripts from starting daemons (postfix, a second PostgreSQL/Redis under
        # another name): this script starts exactly the servers the tests need, itself.
        # Docker-built machines already ship this file; leave theirs alone.
        policy_rc_d=/usr/sbin/policy-rc.d
        if [[ ! -e $policy_rc_d ]]; then
            printf '#!/bin/sh\nexit 101\n' >"$policy_rc_d"
            chmod 755 "$policy_rc_d"
            trap 'rm -f "$policy_rc_d"' EXIT
        fi
        apt-get update -qq
        # No Recommends: docker-compose recommends the whole docker.io engine.
        apt-get install -y -qq --no-install-recommends \
            -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold \
            "${missing_packages[@]}" >/dev/null
        if [[ " ${missing_packages[*]} " == *" postgresql "* ]]; then
            installed_postgres_now=true
        fi
    else
        warn "missing, and cannot install (needs root and apt-get): ${missing_reasons[*]}."
        warn "the tests that need them will be skipped."
    fi
fi

# --- 3. PostgreSQL ------------------------------------------------------------------------------

# psql as the database superuser, SQL on stdin: over the local socket as the `postgres` OS user when we are root
# (peer auth, works on a fresh cluster), else over TCP (trust auth on the CI machines).
psql_as_superuser() {
    if is_root && id postgres >/dev/null 2>&1; then
        (cd / && runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 -d postgres)
    else
        psql -X -q -v ON_ERROR_STOP=1 -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres
    fi
}

test_database_reachable() {
    psql -X -q -h "$PG_HOST" -p "$PG_PORT" -U "$PG_TEST_ROLE" -d "$PG_TEST_DATABASE" \
        -w -tAc 'select 1'
}

start_postgres() {
    local version
    # Newest installed major version; a machine normally has exactly one. (ls is fine: the
    # entries are version numbers.)
    # shellcheck disable=SC2012
    version=$(ls /etc/postgresql 2>/dev/null | sort -V | tail -n 1 || true)
    if [[ -z $version ]]; then
        warn "PostgreSQL is installed but has no cluster under /etc/postgresql; PostgreSQL tests will skip."
        return 1
    fi
    if ! is_root; then
        warn "PostgreSQL is not running and only root can start it here; PostgreSQL tests will skip."
        return 1
    fi
    if $installed_postgres_now; then
        # A cluster apt just created asks for passwords over TCP; the tests connect as root with
        # none, as the CI machines are configured. Trust loopback only, and only on this new cluster.
        local hba_file=/etc/postgresql/$version/main/pg_hba.conf
        sed -i '1i host all all 127.0.0.1/32 trust\nhost all all ::1/128 trust' "$hba_file"
        say "trusting loopback connections in $hba_file (new cluster)"
    fi
    say "starting PostgreSQL $version/main"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
}

postgres_up=false
if postgres_server_installed && command -v pg_isready >/dev/null 2>&1; then
    if postgres_ready; then
        postgres_up=true
    elif start_postgres; then
        if wait_until postgres_ready; then
            postgres_up=true
        else
            warn "PostgreSQL did not accept connections on $PG_HOST:$PG_PORT within ${READY_TIMEOUT_SECONDS}s."
        fi
    fi
fi

if $postgres_up && ! test_database_reachable >/dev/null 2>&1; then
    say "creating role $PG_TEST_ROLE and database $PG_TEST_DATABASE"
    # CREATE DATABASE cannot run inside a DO block, hence the \gexec form.
    psql_as_superuser <<SQL
SELECT 'CREATE ROLE "$PG_TEST_ROLE" LOGIN SUPERUSER'
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = '$PG_TEST_ROLE') \gexec
SELECT 'CREATE DATABASE "$PG_TEST_DATABASE" OWNER "$PG_TEST_ROLE"'
WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = '$PG_TEST_DATABASE') \gexec
SQL
    if ! test_database_reachable >/dev/null; then
        warn "role $PG_TEST_ROLE cannot connect to $PG_HOST:$PG_PORT/$PG_TEST_DATABASE without a password (check pg_hba.conf)."
    fi
fi

# --- 4. Redis -----------------------------------------------------------------------------------

redis_up=false
if command -v redis-server >/dev/null 2>&1 && command -v redis-cli >/dev/null 2>&1; then
    if redis_ready; then
        redis_up=true
    else
        if is_root; then
            redis_data_dir=/var/lib/redis
            redis_log_dir=/var/log/redis
        else
            redis_data_dir=${XDG_CACHE_HOME:-$HOME/.cache}/course-redis
            redis_log_dir=$redis_data_dir
        fi
        mkdir -p "$redis_data_dir" "$redis_log_dir"
        say "starting Redis on $REDIS_HOST:$REDIS_PORT (log: $redis_log_dir/ci.log)"
        # A throwaway broker for tests: nothing is saved to disk.
        redis-server --daemonize yes --bind 127.0.0.1 -::1 --port "$REDIS_PORT" \
            --save "" --appendonly no --dir "$redis_data_dir" --logfile "$redis_log_dir/ci.log"
        if wait_until redis_ready; then
            redis_up=true
        else
            warn "Redis did not answer PING on $REDIS_HOST:$REDIS_PORT within ${READY_TIMEOUT_SECONDS}s (see $redis_log_dir/ci.log)."
        fi
    fi
fi

# One line that says the state the tests will find.
summary=()
$postgres_up && summary+=("postgres $PG_HOST:$PG_PORT/$PG_TEST_DATABASE") || summary+=("postgres DOWN")
$redis_up && summary+=("redis $REDIS_HOST:$REDIS_PORT") || summary+=("redis DOWN")
say "ready: ${summary[*]}"
