# Shared by scripts/up and scripts/test: makes sure Postgres and Redis are reachable and exports where they are.
#
# Postgres: reuses the server on 127.0.0.1:5432 when it accepts the role `root` without a password (trust auth);
# otherwise installs PostgreSQL from the OS packages if needed and runs a private instance in .local/postgres on
# port 55432. Redis: reuses 127.0.0.1:6379 when it answers PING; otherwise installs redis-server if needed and runs a
# private instance on port 56379. Set BOOMERANG_TEST_POSTGRES_URL / BOOMERANG_TEST_REDIS_URL to use servers of your
# own instead.

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
LOCAL="$ROOT/.local"
mkdir -p "$LOCAL"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }

as_root() {
    if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_install() {
    command -v apt-get >/dev/null || { echo "cannot install $*: no apt-get; install it yourself" >&2; exit 1; }
    say "installing $* from the OS packages"
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null
}

# tcp_open HOST PORT
tcp_open() { (exec 3<>"/dev/tcp/$1/$2") 2>/dev/null; }

postgres_ok() {
    command -v psql >/dev/null && psql "$1" -Atqc 'SELECT 1' >/dev/null 2>&1
}

ensure_postgres() {
    local url="${BOOMERANG_TEST_POSTGRES_URL:-postgres://root@127.0.0.1:5432/postgres}"
    if tcp_open 127.0.0.1 5432 && ! command -v psql >/dev/null; then apt_install postgresql-client; fi
    if postgres_ok "$url"; then
        export BOOMERANG_TEST_POSTGRES_URL="$url"
        return
    fi
    local private="postgres://root@127.0.0.1:55432/postgres"
    if postgres_ok "$private"; then
        export BOOMERANG_TEST_POSTGRES_URL="$private"
        return
    fi
    local initdb
    initdb=$(command -v initdb || ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -V | tail -n 1 || true)
    if [ -z "$initdb" ]; then
        apt_install postgresql
        initdb=$(ls /usr/lib/postgresql/*/bin/initdb | sort -V | tail -n 1)
    fi
    local bin data="$LOCAL/postgres" run=()
    bin=$(dirname "$initdb")
    # Postgres refuses to run as root: a root user runs the private instance as the `postgres` account.
    if [ "$(id -u)" -eq 0 ]; then
        id postgres >/dev/null 2>&1 || useradd --system --no-create-home postgres
        run=(runuser -u postgres --)
    fi
    if [ ! -f "$data/PG_VERSION" ]; then
        say "creating a private Postgres in $data"
        mkdir -p "$data"
        [ "$(id -u)" -eq 0 ] && chown postgres "$data"
        "${run[@]}" "$bin/initdb" -D "$data" -U root --auth=trust >/dev/null
    fi
    say "starting the private Postgres on port 55432"
    "${run[@]}" "$bin/pg_ctl" -D "$data" -l "$data/server.log" -w \
        -o "-p 55432 -k /tmp -c listen_addresses=127.0.0.1 -c fsync=on" start >/dev/null
    export BOOMERANG_TEST_POSTGRES_URL="$private"
}

redis_ok() {
    # PING over a plain socket, so no redis-cli is needed. The subshell keeps its redirections to itself.
    (
        exec 3<>"/dev/tcp/$1/$2" || exit 1
        printf 'PING\r\n' >&3
        IFS= read -r -t 2 reply <&3 || exit 1
        [[ "$reply" == +PONG* ]]
    ) 2>/dev/null
}

ensure_redis() {
    if [ -n "${BOOMERANG_TEST_REDIS_URL:-}" ]; then return; fi
    if redis_ok 127.0.0.1 6379; then
        export BOOMERANG_TEST_REDIS_URL="redis://127.0.0.1:6379"
        return
    fi
    if ! redis_ok 127.0.0.1 56379; then
        command -v redis-server >/dev/null || apt_install redis-server
        say "starting a private Redis on port 56379"
        mkdir -p "$LOCAL/redis"
        redis-server --port 56379 --bind 127.0.0.1 --daemonize yes --save '' --appendonly no \
            --dir "$LOCAL/redis" --logfile "$LOCAL/redis/server.log" --pidfile "$LOCAL/redis/redis.pid"
        for _ in $(seq 50); do redis_ok 127.0.0.1 56379 && break; sleep 0.1; done
    fi
    export BOOMERANG_TEST_REDIS_URL="redis://127.0.0.1:56379"
}
