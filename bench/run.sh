#!/usr/bin/env bash
# bench/run.sh: the fan-out benchmark of mod_h2chat (shm store, and Redis
# store with a redis-server of its own) against its peers (the seed Node.js
# server and nginx+nchan), all on loopback, one server at a time, with
# bench/h2c-fanout as the load client. See bench/README.md.
#
#   bench/run.sh                 full run: ladder N=1000,5000,10000 (K=5), the
#                                sustained-rate search at N=5000, h2load POST
#                                throughput, a perf profile of Apache; writes
#                                bench/results.jsonl, bench/RESULTS.md, bench/p99.svg
#   SMOKE=1 bench/run.sh         tiny full pass (N=50) in well under a minute;
#   LADDER=50 bench/run.sh       writes to build/bench/smoke/ instead of bench/
#
# Environment (defaults for the full run / the smoke run):
#   LADDER      subscriber counts, one server start per N   "1000 5000 10000" / "50"
#   LADDER_REPS passes over the ladder (report: best p99)  2 / 1
#   K           messages per ladder run                     5
#   RATE        publish rate of the ladder runs (msg/s)     10
#   SUSTAIN_N   subscribers of the sustained-rate search    5000 / max(LADDER)
#   RATES       rates tried, in order, until one fails      "5 10 20 50 100 200" / "10 20"
#   KCAP        messages per rate step: min(10 x rate, KCAP) 1000 / 10
#   SUSTAIN_TRIES attempts per rate before it counts as failed 2 / 1
#   P99_MAX_MS  p99 bound for "keeps up"                    1000
#   H2LOAD_N    h2load requests (-c 10 -m 10)               20000 / 2000
#   H2LOAD_REPS h2load runs per server (report: the median) 3 / 1
#   SERVERS     which servers      "h2chat-direct h2chat h2chat-redis seed nchan"
#               (h2chat-direct: the same Apache with H2ChatDirect /msgs, the
#               h2c connections served by the module's own HTTP/2 loop;
#               h2chat-redis: the same Apache with H2ChatStore redis and a
#               redis-server started and stopped with it; seed and nchan are
#               skipped, with a note, when PEERS is missing)
#   PHASES      which parts            "ladder sustained h2load profile"
#   APPEND=1    add to OUT/results.jsonl instead of starting it over
#   PROFILE     perf profile of Apache (1000 subscribers)   1 / 0
#   OUT         where results.jsonl, RESULTS.md, p99.svg go  bench / build/bench/smoke
#   PAUSE       seconds between runs (sockets, TIME_WAIT)   2 / 0.2
#   QUIET_WAIT  seconds to wait, before each run, for other 60 / 0
#               processes to drop below QUIET_MAX % of a core (15);
#               QUIET_BUDGET (3600) bounds the waiting of the whole run
#   BENCH_NICE  nice value of the script, servers, client   0
#   COALESCE    off: mod_h2chat with H2ChatCoalesce off     auto
#   LATENCY     off: mod_h2chat with H2ChatLatencyHistogram Off  on
#   DIRECT_REQUESTS none: H2ChatDirectRequests none (h2c loop)  httpd
#               (-DBENCH_COALESCE_OFF; default: the module's auto)
#   PORT        Apache h2c+HTTP/1.1 port                    18201
#   SEED_PORT   seed peer h2c port                          18202
#   REDIS_PORT  redis-server of h2chat-redis (loopback)     18204
#   PEERS       the peers' directory     ../shared/peers or /work/shared/peers
#   CHECK=1     exit 1 when a run of the smoke failed        0 / 1 (SMOKE=1)
# nchan's ports are fixed by its config: 18102 (h2c), 18103 (HTTP/1.1).
#
# Limits kept: every run holds at most 12,000 streams (each held h2 stream
# costs Apache two threads; threads are capped near 32,000 system-wide), every
# step has a timeout, and every server is stopped by its PID, also on failure
# or Ctrl-C (trap).
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
cmdline="$0${*:+ $*}"
for v in SMOKE LADDER K RATE SUSTAIN_N RATES KCAP P99_MAX_MS H2LOAD_N SERVERS PHASES APPEND PROFILE OUT H2LOAD_REPS LADDER_REPS SUSTAIN_TRIES BENCH_NICE QUIET_WAIT QUIET_BUDGET CHECK COALESCE LATENCY DIRECT_REQUESTS; do
    [ -n "${!v:-}" ] && cmdline="$v='${!v}' $cmdline"
done

SMOKE=${SMOKE:-0}
[ "$SMOKE" = 1 ] && LADDER=${LADDER:-50}
LADDER=${LADDER:-"1000 5000 10000"}
maxn=0
for n in $LADDER; do
    if ! [[ "$n" =~ ^[0-9]+$ ]] || [ "$n" -lt 1 ]; then echo "bad LADDER entry: $n" >&2; exit 2; fi
    [ "$n" -gt "$maxn" ] && maxn=$n
done
small=0
if [ "$SMOKE" = 1 ] || [ "$maxn" -lt 1000 ]; then small=1; fi
if [ $small = 1 ]; then
    SUSTAIN_N=${SUSTAIN_N:-$maxn}; RATES=${RATES:-"10 20"}; KCAP=${KCAP:-10}
    H2LOAD_N=${H2LOAD_N:-2000}; PROFILE=${PROFILE:-0}; OUT=${OUT:-build/bench/smoke}
    H2LOAD_REPS=${H2LOAD_REPS:-1}; LADDER_REPS=${LADDER_REPS:-1}; SUSTAIN_TRIES=${SUSTAIN_TRIES:-1}
    PAUSE=${PAUSE:-0.2}; QUIET_WAIT=${QUIET_WAIT:-0}; CHECK=${CHECK:-1}
else
    SUSTAIN_N=${SUSTAIN_N:-5000}; RATES=${RATES:-"5 10 20 50 100 200"}; KCAP=${KCAP:-1000}
    H2LOAD_N=${H2LOAD_N:-20000}; PROFILE=${PROFILE:-1}; OUT=${OUT:-bench}
    H2LOAD_REPS=${H2LOAD_REPS:-3}; LADDER_REPS=${LADDER_REPS:-2}; SUSTAIN_TRIES=${SUSTAIN_TRIES:-2}
    PAUSE=${PAUSE:-2}; QUIET_WAIT=${QUIET_WAIT:-60}; CHECK=${CHECK:-0}
fi
K=${K:-5}
RATE=${RATE:-10}
P99_MAX_MS=${P99_MAX_MS:-1000}
QUIET_MAX=${QUIET_MAX:-15}
quiet_budget=${QUIET_BUDGET:-3600}
SERVERS=${SERVERS:-"h2chat-direct h2chat h2chat-redis seed nchan"}
for name in $SERVERS; do
    case $name in h2chat | h2chat-redis | h2chat-direct | seed | nchan) ;;
    *) echo "unknown server in SERVERS: $name (h2chat h2chat-redis h2chat-direct seed nchan)" >&2; exit 2 ;;
    esac
done
# The peers live outside the repository (a fresh clone has none of them):
# without them the run measures mod_h2chat alone and says so.
if [ -z "${PEERS:-}" ]; then
    PEERS=/work/shared/peers
    [ -d "$root/../shared/peers" ] && PEERS=$(cd "$root/../shared/peers" && pwd)
fi
skipped=""
for name in $SERVERS; do
    case $name in
    seed) [ -f "$PEERS/seed-node/server.mjs" ] && command -v node > /dev/null ||
        skipped="$skipped seed" ;;
    nchan) [ -f "$PEERS/nchan/nginx.conf" ] && command -v nginx > /dev/null ||
        skipped="$skipped nchan" ;;
    esac
done
if [ -n "$skipped" ]; then
    kept=""
    for name in $SERVERS; do [[ " $skipped " == *" $name "* ]] || kept="$kept $name"; done
    SERVERS=${kept# }
    skipped=${skipped# }
    echo "peers skipped: $skipped (no $PEERS, or node/nginx missing); running: $SERVERS" >&2
fi
PHASES=${PHASES:-"ladder sustained h2load profile"}
phase_on() { [[ " $PHASES " == *" $1 "* ]]; }
phase_on ladder || LADDER_REPS=0
phase_on sustained && sustain_servers=$SERVERS || sustain_servers=""
phase_on h2load && h2load_servers=$SERVERS || h2load_servers=""
phase_on profile || PROFILE=0
PORT=${PORT:-18201}
SEED_PORT=${SEED_PORT:-18202}
REDIS_PORT=${REDIS_PORT:-18204}
NCHAN_PORT=18102
HARD_MAX_N=12000
for n in $maxn $SUSTAIN_N; do
    if [ "$n" -gt $HARD_MAX_N ]; then
        echo "refusing N=$n: above $HARD_MAX_N held streams (thread limit of this machine)" >&2
        exit 2
    fi
done

run="$root/build/bench/run"
mkdir -p "$run" "$OUT"
OUT=$(cd "$OUT" && pwd)
results="$OUT/results.jsonl"
[ "${APPEND:-0}" = 1 ] || : > "$results"
fanout="$root/bench/h2c-fanout"
record() { /usr/bin/python3 "$root/bench/report.py" record "$@" >> "$results"; }
log() { printf '[%s] %s\n' "$(date +%H:%M:%S)" "$*" >&2; }

ulimit -n "$(ulimit -Hn)"
# BENCH_NICE=-10: the servers and the client (all started from here) get
# precedence over other work on a shared machine; 0 leaves priorities alone.
BENCH_NICE=${BENCH_NICE:-0}
if [ "$BENCH_NICE" != 0 ]; then renice -n "$BENCH_NICE" -p $$ > /dev/null; fi
hz=$(getconf CLK_TCK)

# --- build ------------------------------------------------------------------
log "building the client"
cc -O2 -Wall -Wextra -Werror -o "$fanout" bench/h2c-fanout.c -lnghttp2 -lssl -lcrypto -lm
if [[ " $SERVERS " == *" h2chat-redis "* ]] && [ ! -x /usr/bin/redis-server ]; then
    echo "h2chat-redis needs /usr/bin/redis-server (tools/deps.sh bench installs it)" >&2
    exit 2
fi
if [ ! -f .libs/mod_h2chat.so ]; then
    log "building the module"
    timeout 600 make -f Makefile.apxs
fi

# --- process helpers -----------------------------------------------------------
tree_pids() { # PID... and all their descendants
    local p c
    for p in "$@"; do
        echo "$p"
        for c in $(cat /proc/"$p"/task/*/children 2>/dev/null); do tree_pids "$c"; done
    done
}
# The tree_* helpers sum over the trees of all their arguments: a server is
# its master (cur_pid) and, for h2chat-redis, its redis-server (redis_pid).
tree_pss() { # sum of Pss (KiB) over the trees
    local s=0 p v
    for p in $(tree_pids "$@"); do
        v=$(awk '/^Pss:/ {print $2; exit}' /proc/"$p"/smaps_rollup 2>/dev/null || true)
        s=$((s + ${v:-0}))
    done
    echo $s
}
tree_threads() {
    local s=0 p v
    for p in $(tree_pids "$@"); do
        v=$(awk '/^Threads:/ {print $2}' /proc/"$p"/status 2>/dev/null || true)
        s=$((s + ${v:-0}))
    done
    echo $s
}
tree_ctxsw() { # voluntary and involuntary context switches over every thread
    local p
    for p in $(tree_pids "$@"); do
        cat /proc/"$p"/task/*/status 2>/dev/null
    done | awk '/^voluntary_ctxt_switches/ {v+=$2} /^nonvoluntary_ctxt_switches/ {n+=$2}
                END {printf "%d %d\n", v, n}'
}
cpu_busy_ticks() { # all CPUs: user nice system steal (irq and softirq time is not
    # charged to any task: loopback TCP is mostly softirq, of the servers and the client)
    awk '/^cpu / {print $2 + $3 + $4 + $9}' /proc/stat
}
sched_ns() { # CPU time (ns, schedstat) of PID's threads that exist now
    cat /proc/"$1"/task/*/schedstat 2> /dev/null | awk '{s += $1} END {printf "%d\n", s}'
}
tree_cpu_ticks() { # utime + stime of the trees (all threads, also exited ones)
    local s=0 p v
    for p in $(tree_pids "$@"); do
        v=$(awk '{print $14 + $15}' /proc/"$p"/stat 2>/dev/null || true)
        s=$((s + ${v:-0}))
    done
    echo $s
}
other_load() { # % of one core used over ~1 s by everything but the current server
    local b0 b1 s0=0 s1=0 t0 t1
    t0=$(date +%s%N); b0=$(cpu_busy_ticks)
    [ -n "$cur_pid" ] && s0=$(tree_cpu_ticks "$cur_pid" ${redis_pid:+"$redis_pid"})
    sleep 1
    t1=$(date +%s%N); b1=$(cpu_busy_ticks)
    [ -n "$cur_pid" ] && s1=$(tree_cpu_ticks "$cur_pid" ${redis_pid:+"$redis_pid"})
    echo $(((b1 - b0 - (s1 - s0)) * 100 * 1000000000 / hz / (t1 - t0)))
}
# Other work on this machine (a test suite, a fuzzer) takes the cores the
# servers need: wait (bounded) until it is gone; each record keeps the CPU
# that others used during the run.
wait_quiet() {
    local l=0 t0=$SECONDS next=0
    [ "$QUIET_WAIT" -gt 0 ] && [ "$quiet_budget" -gt 0 ] || return 0
    while :; do
        l=$(other_load)
        [ "$l" -le "$QUIET_MAX" ] && break
        if [ $((SECONDS - t0)) -ge "$QUIET_WAIT" ] || [ $((SECONDS - t0)) -ge "$quiet_budget" ]; then
            log "  still $l% of a core used by others after $((SECONDS - t0)) s: measuring anyway"
            break
        fi
        if [ $((SECONDS - t0)) -ge $next ]; then
            log "  other processes use $l% of a core: waiting (up to ${QUIET_WAIT} s)"
            next=$((next + 60))
        fi
    done
    quiet_budget=$((quiet_budget - (SECONDS - t0)))
}
thread_room() { # N: room for N more threads under pid_max - 3000, waiting up to 300 s
    local i max
    max=$(($(cat /proc/sys/kernel/pid_max) - 3000))
    [ -r /sys/fs/cgroup/pids.max ] && [ "$(cat /sys/fs/cgroup/pids.max)" != max ] &&
        max=$(($(cat /sys/fs/cgroup/pids.max) - 3000))
    for ((i = 0; i <= 300; i += 5)); do
        [ $(($(system_threads) + $1)) -le "$max" ] && return 0
        sleep 5
    done
    return 1
}
system_threads() { ls -d /proc/[0-9]*/task/[0-9]* 2>/dev/null | wc -l; }
port_busy() { [ "$(ss -Htln "sport = :$1" | wc -l)" -gt 0 ]; }
wait_port() { # PORT SECONDS
    local i
    for ((i = 0; i < $2 * 10; i++)); do
        if timeout 1 bash -c "exec 3<>/dev/tcp/127.0.0.1/$1" 2>/dev/null; then return 0; fi
        sleep 0.1
    done
    return 1
}

cur_pid=""   # the server now running (its master), stopped on exit
redis_pid="" # the redis-server of h2chat-redis, stopped with it (and on exit)
module_sha="" # sha256 (12 hex) of the mod_h2chat.so the running Apache loaded
cur_name=""
redis_starts=0
stop_redis() {
    [ -n "$redis_pid" ] || return 0
    local p=$redis_pid i
    redis_pid=""
    kill -TERM "$p" 2>/dev/null || true # no persistence configured: exits at once
    for ((i = 0; i < 100; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
        log "redis-server (pid $p) did not stop within 10 s: SIGKILL"
        kill -KILL "$p" 2>/dev/null || true
    fi
    wait "$p" 2>/dev/null || true
    for ((i = 0; i < 100; i++)); do
        port_busy "$REDIS_PORT" || break
        sleep 0.1
    done
}
starting_pid() { # a daemon whose start was cut short (Ctrl-C) before cur_pid was set
    local f p
    case $cur_name in
    h2chat | h2chat-redis | h2chat-direct) f=$run/apache/httpd.pid ;;
    nchan) f=$run/nchan/nginx.pid ;;
    *) return 0 ;;
    esac
    p=$(cat "$f" 2> /dev/null) || return 0
    # only ours: the pid files are removed before each start
    [[ "$p" =~ ^[0-9]+$ ]] && tr '\0' ' ' < /proc/"$p"/cmdline 2> /dev/null | grep -qF "$run" &&
        echo "$p"
    return 0
}
stop_server() {
    [ -n "$cur_pid" ] || cur_pid=$(starting_pid)
    [ -n "$cur_pid" ] || { stop_redis; cur_name=""; return 0; }
    local p=$cur_pid i
    cur_pid=""
    kill -TERM "$p" 2>/dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$p" 2>/dev/null || break
        sleep 0.1
    done
    if kill -0 "$p" 2>/dev/null; then
        log "$cur_name (pid $p) did not stop within 60 s: SIGKILL to its process tree"
        # shellcheck disable=SC2046
        kill -KILL $(tree_pids "$p") 2>/dev/null || true
        sleep 1
    fi
    # nginx/apache children go with their master; wait until the ports are free
    for ((i = 0; i < 100; i++)); do
        port_busy "$(server_port "$cur_name")" || break
        sleep 0.1
    done
    stop_redis # after Apache: its children hold connections to it
    cur_name=""
}
on_exit() {
    local rc=$?
    stop_server
    [ $rc = 0 ] || log "bench/run.sh: exit status $rc (servers stopped)"
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP

is_h2chat() { [ "$1" = h2chat ] || [ "$1" = h2chat-redis ] || [ "$1" = h2chat-direct ]; }
mod_tag() { is_h2chat "$1" && echo "$module_sha" || echo "-"; }
server_port() {
    case $1 in h2chat | h2chat-redis | h2chat-direct) echo "$PORT" ;; seed) echo "$SEED_PORT" ;;
    nchan) echo "$NCHAN_PORT" ;; esac
}
server_label() {
    case $1 in h2chat) echo mod_h2chat ;; h2chat-redis) echo mod_h2chat-redis ;; h2chat-direct) echo mod_h2chat-direct ;;
    seed) echo seed-node ;; nchan) echo nchan ;; esac
}
status_field() { # NAME: a field of Apache's server-status?auto
    curl -s -m 2 "http://127.0.0.1:$PORT/server-status?auto" | awk -v k="$1:" '$1 == k {print $2}'
}

# Apache's sizing follows the largest N of this run (see bench/httpd.conf.in).
size_n=$maxn
[ "$SUSTAIN_N" -gt "$size_n" ] && size_n=$SUSTAIN_N
[ "$PROFILE" = 1 ] && [ 1000 -gt "$size_n" ] && size_n=1000
children=$(( (size_n + 2499) / 2500 ))
[ $children -lt 2 ] && children=2
threads=$(( (size_n * 12 / 10 + children - 1) / children + 32 ))
maxworkers=$((children * threads))
maxsubs=$((size_n * 11 / 10 + 10))

start_h2chat() { # [-DBENCH_REDIS | -DBENCH_DIRECT]
    local r="$run/apache" i key="-" ch=$children th=$threads
    # H2ChatDirect: held streams take no MPM thread and no h2 worker; the
    # MPM keeps a small pool for what else comes (the publisher, status)
    [ "${1:-}" = -DBENCH_DIRECT ] && ch=2 && th=64
    [ "${COALESCE:-auto}" = off ] && set -- "$@" -DBENCH_COALESCE_OFF
    [ "${LATENCY:-on}" = off ] && set -- "$@" -DBENCH_LATENCY_OFF
    [ "${DIRECT_REQUESTS:-httpd}" = none ] && set -- "$@" -DBENCH_DIRECT_NONE
    mkdir -p "$r/htdocs"
    printf 'hello, h2load\n' > "$r/htdocs/tiny.txt"
    # a fresh stream key per start (the redis-server is fresh too): ids and
    # history start over, as with a fresh shared-memory segment
    [ "${1:-}" = -DBENCH_REDIS ] && key="h2chat-bench-$$-$redis_starts"
    bench/httpd-conf.sh "$r" "$PORT" "$ch" "$th" "$maxsubs" "${SPREAD:-auto}" "$REDIS_PORT" "$key" \
        > "$r/httpd.conf"
    # www-data must reach the module and the document root
    chmod o+rx "$root" "$root/.libs" "$root/build" "$root/build/bench" "$run" "$r" "$r/htdocs"
    chmod o+r "$root/.libs/mod_h2chat.so" "$r/htdocs/tiny.txt"
    rm -f "$r/httpd.pid"
    # which build of the module this server loads (the repository may be rebuilt meanwhile)
    module_sha=$(sha256sum "$root/.libs/mod_h2chat.so" | cut -c1-12)
    timeout 30 /usr/sbin/apache2 "$@" -t -f "$r/httpd.conf" 2>/dev/null || return 1
    timeout 60 /usr/sbin/apache2 "$@" -f "$r/httpd.conf" -k start || return 1
    for ((i = 0; i < 100; i++)); do [ -s "$r/httpd.pid" ] && break; sleep 0.1; done
    [ -s "$r/httpd.pid" ] || return 1
    cur_pid=$(cat "$r/httpd.pid")
    # all children up with all their threads
    for ((i = 0; i < 300; i++)); do
        [ "$(tree_threads "$cur_pid")" -ge $((ch * th)) ] && break
        sleep 0.1
    done
}
redis_ping() { # the redis-server on REDIS_PORT answers (redis-cli: Debian's redis-tools)
    [ "$(timeout 2 redis-cli -h 127.0.0.1 -p "$REDIS_PORT" ping 2> /dev/null)" = PONG ]
}
start_redis() {
    local r="$run/redis" i
    mkdir -p "$r"
    rm -f "$r/dump.rdb"
    redis_starts=$((redis_starts + 1))
    # no persistence: an empty Redis per server start, like a fresh segment.
    # Its own session (setsid execs it: $! is redis-server), as Apache and
    # nginx daemonize: a Ctrl-C reaches the script, whose trap stops Apache
    # first and Redis after it, not redis-server before its clients.
    setsid /usr/bin/redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save '' --appendonly no \
        --dir "$r" --daemonize no --loglevel warning --logfile "$r/redis.log" \
        < /dev/null > /dev/null 2>&1 &
    redis_pid=$!
    for ((i = 0; i < 100; i++)); do
        redis_ping && return 0
        kill -0 "$redis_pid" 2> /dev/null || break
        sleep 0.1
    done
    log "redis-server did not answer on $REDIS_PORT (see $r/redis.log)"
    stop_redis
    return 1
}
start_h2chat-direct() {
    start_h2chat -DBENCH_DIRECT
}
start_h2chat-redis() {
    local i
    start_redis || return 1
    start_h2chat -DBENCH_REDIS || return 1
    # the reader thread is connected and following the stream
    for ((i = 0; i < 100; i++)); do
        [ "$(status_field H2ChatRedis)" = up ] && return 0
        sleep 0.1
    done
    log "mod_h2chat does not report H2ChatRedis: up within 10 s"
    return 1
}
start_seed() {
    node "$PEERS/seed-node/server.mjs" "$SEED_PORT" \
        > "$run/seed.log" 2>&1 &
    cur_pid=$!
}
start_nchan() {
    local r="$run/nchan" i
    mkdir -p "$r/tmp" "$r/logs"
    rm -f "$r/nginx.pid"
    timeout 30 nginx -p "$r" -c "$PEERS/nchan/nginx.conf" \
        -e "$r/error.log"
    for ((i = 0; i < 100; i++)); do [ -s "$r/nginx.pid" ] && break; sleep 0.1; done
    cur_pid=$(cat "$r/nginx.pid")
}
start_server() { # NAME
    local port
    port=$(server_port "$1")
    if port_busy "$port"; then
        log "port $port is busy: not starting $1"
        return 1
    fi
    if [ "$1" = h2chat-redis ] && port_busy "$REDIS_PORT"; then
        log "port $REDIS_PORT is busy: not starting $1"
        return 1
    fi
    cur_name=$1
    if ! "start_$1"; then
        log "$1 did not start"
        stop_server
        return 1
    fi
    if ! wait_port "$port" 30; then
        log "$1 did not listen on $port within 30 s"
        stop_server
        return 1
    fi
    sleep "$PAUSE"
}

client_args() { # NAME -> the subscriber/publisher options for that server
    case $1 in
    h2chat | h2chat-redis | h2chat-direct) echo "--url http://127.0.0.1:$PORT/msgs --proto h2c" ;;
    seed) echo "--url http://127.0.0.1:$SEED_PORT/msgs --proto h2c" ;;
    nchan) echo "--url http://127.0.0.1:$NCHAN_PORT/msgs --proto h2c --sse" ;;
    esac
}

# One client run against the running server; appends a record. Prints the
# client's exit status.
run_client() { # NAME PHASE N K RATE
    local name=$1 phase=$2 n=$3 k=$4 rate=$5 t pss nthreads cs0 cs1 rc=0 cmd b0 b1 s0 s1 w0 w1
    local rpss r0 redis_opt="" extra=()
    t=$((60 + n / 100 + (k + rate - 1) / rate * 2))
    wait_quiet
    # Apache adds an h2 worker thread per held stream (its MPM threads exist
    # already); leave the rest of the machine a few thousand threads.
    if is_h2chat "$name" && ! thread_room "$n"; then
        log "  not enough threads left on this machine for N=$n: run skipped"
        record --server "$(server_label "$name")" --phase "$phase" --rc 98 --cmd "skipped: threads" \
            --set "n=$n" --set "rate=$rate" < /dev/null
        echo 98
        return
    fi
    # h2chat-redis: redis-server is part of the server; every figure (the
    # client's --pid sampling too) covers both trees, and its own part is
    # recorded beside them (redis_*)
    if [ -n "$redis_pid" ]; then
        redis_opt=" --pid $redis_pid"
        rpss=$(tree_pss "$redis_pid")
        r0=$(sched_ns "$redis_pid")
    fi
    pss=$(tree_pss "$cur_pid" ${redis_pid:+"$redis_pid"})
    nthreads=$(tree_threads "$cur_pid" ${redis_pid:+"$redis_pid"})
    cs0=$(tree_ctxsw "$cur_pid" ${redis_pid:+"$redis_pid"})
    # shellcheck disable=SC2046
    cmd="bench/h2c-fanout $(client_args "$name") -n $n -k $k --rate $rate --pid $cur_pid$redis_opt --timeout $t --drain 15 --json-only"
    b0=$(cpu_busy_ticks); s0=$(tree_cpu_ticks "$cur_pid" ${redis_pid:+"$redis_pid"}); w0=$(date +%s%N)
    # shellcheck disable=SC2086
    timeout -k 5 $((t + 30)) $cmd > "$run/client.json" 2> "$run/client.err" || rc=$?
    b1=$(cpu_busy_ticks); s1=$(tree_cpu_ticks "$cur_pid" ${redis_pid:+"$redis_pid"}); w1=$(date +%s%N)
    cs1=$(tree_ctxsw "$cur_pid" ${redis_pid:+"$redis_pid"})
    if [ -n "$redis_pid" ]; then
        extra=(--set "redis_pss_kib_idle=$rpss" --set "redis_pss_kib_end=$(tree_pss "$redis_pid")"
            --set "redis_sched_s_run=$(($(sched_ns "$redis_pid") - r0))/1000000000")
    fi
    grep -v '^\[' "$run/client.err" >&2 || true
    record --server "$(server_label "$name")" --phase "$phase" --rc "$rc" --cmd "$cmd" \
        "${extra[@]}" \
        --set "pss_kib_idle=$pss" --set "threads_idle=$nthreads" \
        --set "ctxsw_before=$cs0" --set "ctxsw_after=$cs1" \
        --set "apache_children=$children" --set "apache_threads_per_child=$threads" \
        --set "wall_s=$(((w1 - w0) / 1000000))e-3" --set "sys_busy_s=$((b1 - b0))/$hz" \
        --set "server_cpu_s_run=$((s1 - s0))/$hz" --set "module=$(mod_tag "$name")" \
        < "$run/client.json"
    echo "$rc"
}
summary() { # last record, one line
    tail -1 "$results" | /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); c = d.get("client") or {}
print("  %s %s N=%s K=%s rate=%s: rc=%s delivered %s/%s p50 %s p99 %s max %s ms" % (
    d["server"], d["phase"], c.get("n"), c.get("k"), c.get("rate"), d["rc"],
    c.get("delivered"), c.get("expected"), c.get("lat_p50_ms"), c.get("lat_p99_ms"),
    c.get("lat_max_ms")))' >&2
}
keeps_up() { # last record: everything delivered, no failure, p99 within bound
    tail -1 "$results" | /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.stdin.read()); c = d.get("client") or {}
ok = (d["rc"] == 0 and c.get("lost") == 0 and c.get("failed") == 0
      and 0 <= c.get("lat_p99_ms", -1) <= float(sys.argv[1]))
sys.exit(0 if ok else 1)' "$P99_MAX_MS"
}

h2load_run() { # NAME PHASE URL [h2load options...]
    local name=$1 phase=$2 url=$3 rc=0 cmd s0 s1 r0=0 extra=()
    shift 3
    cmd="h2load -n $H2LOAD_N -c 10 -m 10$(printf ' %q' "$@") $url"
    # the server's CPU over the run (with its redis-server, and that apart)
    s0=$(tree_cpu_ticks "$cur_pid" ${redis_pid:+"$redis_pid"})
    [ -n "$redis_pid" ] && r0=$(sched_ns "$redis_pid")
    # shellcheck disable=SC2086
    timeout -k 5 180 h2load -n "$H2LOAD_N" -c 10 -m 10 "$@" "$url" > "$run/h2load.out" 2>&1 || rc=$?
    s1=$(tree_cpu_ticks "$cur_pid" ${redis_pid:+"$redis_pid"})
    [ -n "$redis_pid" ] && extra=(--set "redis_sched_s_run=$(($(sched_ns "$redis_pid") - r0))/1000000000")
    record --server "$(server_label "$name")" --phase "$phase" --rc "$rc" --cmd "$cmd" \
        --set "module=$(mod_tag "$name")" --set "server_cpu_s_run=$((s1 - s0))/$hz" \
        "${extra[@]}" --h2load < "$run/h2load.out"
    tail -1 "$results" | /usr/bin/python3 -c '
import json, sys
d = json.loads(sys.stdin.read())
print("  %s %s: rc=%s %s req/s, %s succeeded, %s failed, %s 2xx" % (d["server"], d["phase"],
    d["rc"], d.get("req_per_s"), d.get("succeeded"), d.get("failed"), d.get("status_2xx")))' >&2
}

# --- meta -------------------------------------------------------------------
/usr/bin/python3 bench/report.py meta --cmd "$cmdline" --set "ladder=$LADDER" --set "k=$K" \
    --set "rate=$RATE" --set "sustain_n=$SUSTAIN_N" --set "rates=$RATES" --set "kcap=$KCAP" \
    --set "p99_max_ms=$P99_MAX_MS" --set "h2load_n=$H2LOAD_N" --set "h2load_reps=$H2LOAD_REPS" \
    --set "ladder_reps=$LADDER_REPS" --set "sustain_tries=$SUSTAIN_TRIES" \
    --set "apache_children=$children" --set "apache_threads_per_child=$threads" \
    --set "apache_max_subscribers=$maxsubs" --set "system_threads_at_start=$(system_threads)" \
    --set "nice=$(ps -o ni= -p $$ | tr -d ' ')" \
    --set "git_head=$(git -C "$root" rev-parse --short HEAD 2> /dev/null || echo -)" \
    --set "module_sha_start=$(sha256sum .libs/mod_h2chat.so | cut -c1-12)" \
    --set "servers=$SERVERS" --set "skipped=$skipped" --set "peers=$PEERS" \
    >> "$results"
log "results: $results; Apache sized for $size_n held streams: $children children x $threads threads"

# --- 1. the ladder: one fresh server per N -------------------------------------
for ((rep = 1; rep <= LADDER_REPS; rep++)); do
    for name in $SERVERS; do
        for n in $LADDER; do
            log "ladder: $(server_label "$name") N=$n K=$K (pass $rep/$LADDER_REPS)"
            start_server "$name" || { record --server "$(server_label "$name")" --phase ladder \
                --rc 99 --cmd "start $name" --set "n=$n" < /dev/null; continue; }
            run_client "$name" ladder "$n" "$K" "$RATE" > /dev/null
            summary
            stop_server
            sleep "$PAUSE"
        done
    done
done

# --- 2. sustained rate at SUSTAIN_N ------------------------------------------------
# A rate counts as kept up with when one of SUSTAIN_TRIES attempts (each on a
# fresh server) passes: a failure can come from other work on the machine.
for name in $sustain_servers; do
    for rate in $RATES; do
        k=$((rate * 10))
        [ "$k" -gt "$KCAP" ] && k=$KCAP
        ok=0
        for ((try = 1; try <= SUSTAIN_TRIES; try++)); do
            log "sustained: $(server_label "$name") N=$SUSTAIN_N rate=$rate/s K=$k (attempt $try/$SUSTAIN_TRIES)"
            start_server "$name" || { record --server "$(server_label "$name")" --phase sustained \
                --rc 99 --cmd "start $name" --set "n=$SUSTAIN_N" --set "rate=$rate" < /dev/null; break; }
            run_client "$name" sustained "$SUSTAIN_N" "$k" "$rate" > /dev/null
            summary
            stop_server
            sleep "$PAUSE"
            if keeps_up; then ok=1; break; fi
        done
        [ $ok = 1 ] || { log "  $(server_label "$name") does not keep up at $rate/s: search ends"; break; }
    done
done

# --- 3. POST throughput (and Apache's static file) -------------------------------
body="$run/body.json"
printf '{"user":"bench","text":"hello from h2load"}' > "$body"
for name in $h2load_servers; do
    log "h2load: $(server_label "$name")"
    start_server "$name" || continue
    wait_quiet
    for ((rep = 1; rep <= H2LOAD_REPS; rep++)); do
        h2load_run "$name" post "http://127.0.0.1:$(server_port "$name")/msgs" \
            -d "$body" -H 'Content-Type: application/json'
        if [ "$name" = h2chat ]; then
            h2load_run "$name" static "http://127.0.0.1:$PORT/tiny.txt"
        fi
    done
    stop_server
    sleep "$PAUSE"
done

# --- 4. where Apache's time goes (1000 subscribers, perf) -----------------------------
# Two passes (perf stat, then perf record), each on a fresh Apache with 1000
# subscribers and 100 messages at 20/s. The window runs from "all 1000
# subscribers connected" (server-status) to the client's end, so it holds the
# whole publishing (5 s), the client's 3 s settle before it and the last
# deliveries after it. perf works system-wide (-a): attaching to each of
# Apache's ~13,000 threads would take an event (and a ring buffer) per thread.
# perf record starts early with its events off (-D -1), as it first reads
# every thread of the machine, and is switched on through its control fifo.
# The samples of the Apache tree are picked by pid afterwards (report.py
# perfagg); perf stat counts the whole machine (client too), so Apache's own
# CPU and context switches over the window come from /proc.
if [ "$PROFILE" = 1 ] && [[ " $SERVERS " == *" h2chat "* ]] && command -v perf > /dev/null; then
    log "profile: mod_h2chat, 1000 subscribers, 100 messages at 20/s, perf stat + perf record"
    prof="$OUT/profile"
    rm -rf "$prof"
    mkdir -p "$prof"
    for mode in stat record; do
        start_server h2chat || break
        wait_quiet
        perf_pid=""
        if [ $mode = record ]; then
            rm -f "$run/perf.ctl" "$run/perf.ack" "$run/perf.data"
            mkfifo "$run/perf.ctl" "$run/perf.ack"
            exec 5<> "$run/perf.ctl" 6<> "$run/perf.ack"
            timeout -k 5 300 perf record -q -a -g -F 499 -D -1 \
                --control "fifo:$run/perf.ctl,$run/perf.ack" -o "$run/perf.data" -- sleep 240 \
                2> "$run/perf.err" &
            perf_pid=$!
        fi
        pcmd="bench/h2c-fanout $(client_args h2chat) -n 1000 -k 100 --rate 20 --settle 3 --pid $cur_pid --timeout 120 --drain 15 --json-only"
        # shellcheck disable=SC2086
        timeout -k 5 150 $pcmd > "$run/client.json" 2> "$run/client.err" &
        cpid=$!
        for ((i = 0; i < 1200; i++)); do # until the 1000 are in (at most ~60 s)
            [ "$(status_field H2ChatSubscribers)" -ge 1000 ] 2> /dev/null && break
            sleep 0.05
        done
        # the window: from all subscribers connected (the client settles 3 s)
        # to the client's end (every message delivered)
        pids=$(tree_pids "$cur_pid" | tr '\n' ',' | sed 's/,$//')
        cs0=$(tree_ctxsw "$cur_pid"); s0=$(tree_cpu_ticks "$cur_pid"); b0=$(cpu_busy_ticks)
        if [ $mode = record ]; then
            tq=$(date +%s%N)
            echo enable >&5
            read -r -t 60 -u 6 _ || log "  perf record did not acknowledge 'enable'"
            log "  perf record on after $((($(date +%s%N) - tq) / 1000000)) ms"
        else
            timeout -k 5 200 perf stat -a -e task-clock,context-switches,cpu-migrations,page-faults \
                -- sleep 180 2> "$prof/perf-stat.txt" &
            perf_pid=$!
        fi
        t0=$(date +%s%N)
        wait $cpid || true
        t1=$(date +%s%N)
        if [ $mode = record ]; then
            echo disable >&5
            read -r -t 10 -u 6 _ || true
        fi
        cs1=$(tree_ctxsw "$cur_pid"); s1=$(tree_cpu_ticks "$cur_pid"); b1=$(cpu_busy_ticks)
        if [ -n "$perf_pid" ]; then
            kill -INT "$perf_pid" 2> /dev/null || true
            wait "$perf_pid" || true
            [ $mode = record ] && exec 5>&- 6>&-
        fi
        record --server mod_h2chat --phase "profile-$mode" --rc 0 --cmd "$pcmd" \
            --set "ctxsw_before=$cs0" --set "ctxsw_after=$cs1" \
            --set "window_s=$(((t1 - t0) / 1000000))e-3" \
            --set "server_cpu_s_window=$((s1 - s0))/$hz" --set "sys_busy_s_window=$((b1 - b0))/$hz" \
            --set "server_pids=$pids" --set "module=$module_sha" < "$run/client.json"
        summary
        stop_server
        sleep "$PAUSE"
        [ $mode = record ] && echo "$pids" > "$run/perf.pids"
    done
    if [ -s "$run/perf.data" ] && [ -s "$run/perf.pids" ]; then
        set +o pipefail # head ends the report early
        timeout 300 perf report -i "$run/perf.data" --stdio --no-children --sort comm -g none \
            2> /dev/null | grep -v '^#' | grep -v '^$' | head -8 > "$prof/perf-comm.txt" || true
        set -o pipefail
        timeout 600 perf script -i "$run/perf.data" -F pid,ip,sym,dso 2> /dev/null |
            /usr/bin/python3 bench/report.py perfagg --pids "$(cat "$run/perf.pids")" --out "$prof" ||
            log "  perf script / perfagg failed"
    fi
fi

# --- report -------------------------------------------------------------------
log "writing $OUT/RESULTS.md"
/usr/bin/python3 bench/report.py report --in "$results" --out "$OUT/RESULTS.md" \
    --svg "$OUT/p99.svg" --notes "$root/bench/where-the-time-goes.md" \
    --profile "$OUT/profile"
log "done: $OUT/RESULTS.md"
[ -z "$skipped" ] || log "peers skipped: $skipped (no $PEERS): only $SERVERS measured"
# the smoke's verdict (CI): every server started and delivered everything
if [ "$CHECK" = 1 ]; then
    /usr/bin/python3 bench/report.py check --in "$results"
fi
