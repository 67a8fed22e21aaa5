#!/usr/bin/env bash
# bench/scale.sh: mod_h2chat's H2ChatDirect loop at 20,000 - 100,000 held
# subscribers against nginx+nchan (and the seed where it survives), and the
# restarts at that scale. One server at a time, loopback only, every server
# stopped by its PID (also on failure or Ctrl-C), every step bounded in time.
# The load comes from bench/fanout-multi.py: several h2c-fanout processes,
# each from its own 127.0.0.x source address (20,000 open files per process
# and ~28,000 ports per address pair on this machine). See bench/README.md.
#
#   bench/scale.sh                 all phases, full size (about 45 minutes)
#   SHORT=1 bench/scale.sh         the same phases at 2,000 subscribers and a
#                                  1-minute soak (t/test_scale.py runs it)
# PORT (18301): Apache's port; RUNDIR: where the servers run
# (build/bench/scale-run); BENCH_NICE: nice value (e.g. -10).
#
# Phases (PHASES, default "ladder restart kill soak"):
#   ladder   N in SCALE_LADDER (20000 50000 100000): each server fresh, K
#            messages at RATE/s; h2chat-direct, nchan; the seed at N <= SEED_MAX
#   restart  RESTART_N (50000) subscribers resuming (Last-Event-ID) while
#            messages flow; `apache2 -k graceful` RESTART_AT s into the
#            messages; once with H2ChatReconnectSpread auto (as built), once
#            with off (all reconnect at once)
#   kill     KILL_N (50000) over KILL_N/12500 children; kill -9 of the child
#            with the most connections; its clients resume on the others
#   soak     SOAK_N (100000) held for SOAK_S (600) s with H2ChatHeartbeat 10;
#            the Apache tree's Pss sampled every SOAK_EVERY (30) s
# Output: OUT (bench/scale) /scale.jsonl (one line per run), logs, Pss samples.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
SHORT=${SHORT:-0}
if [ "$SHORT" = 1 ]; then
    SCALE_LADDER=${SCALE_LADDER:-2000}; RESTART_N=${RESTART_N:-2000}; KILL_N=${KILL_N:-2000}
    SOAK_N=${SOAK_N:-2000}; SOAK_S=${SOAK_S:-60}; SOAK_EVERY=${SOAK_EVERY:-10}
    OUT=${OUT:-build/bench/scale-short}; SERVERS=${SERVERS:-h2chat-direct}
    KILL_CHILDREN=${KILL_CHILDREN:-3}
else
    SCALE_LADDER=${SCALE_LADDER:-"20000 50000 100000"}; RESTART_N=${RESTART_N:-50000}
    KILL_N=${KILL_N:-50000}; SOAK_N=${SOAK_N:-100000}; SOAK_S=${SOAK_S:-600}
    SOAK_EVERY=${SOAK_EVERY:-30}; OUT=${OUT:-bench/scale}
    SERVERS=${SERVERS:-"h2chat-direct nchan seed"}
fi
PHASES=${PHASES:-"ladder restart kill soak"}
K=${K:-20}
RATE=${RATE:-10}
SEED_MAX=${SEED_MAX:-20000}
# The restarts run at 2 messages a second: 10/s to 50,000 is 500,000
# deliveries a second, which alone keeps both cores busy (3-4 µs each),
# and a saturated server accepts nothing quickly, spread or not.
RESTART_RATE=${RESTART_RATE:-2}
RESTART_K=${RESTART_K:-60}    # 30 s of messages at 2/s
RESTART_AT=${RESTART_AT:-10}  # seconds into the messages
RESTART_SPREADS=${RESTART_SPREADS:-"auto off"} # H2ChatReconnectSpread values compared
PER_CHILD=${PER_CHILD:-12500} # subscribers per Apache child / nginx worker
PORT=${PORT:-18301}
NCHAN_PORT=${NCHAN_PORT:-18312}
SEED_PORT=${SEED_PORT:-18313}
PEERS=${PEERS:-}
for d in "$root/../shared/peers" /work/shared/peers; do
    [ -z "$PEERS" ] && [ -d "$d" ] && PEERS=$d
done
BENCH_NICE=${BENCH_NICE:-0}
[ "$BENCH_NICE" != 0 ] && renice -n "$BENCH_NICE" -p $$ > /dev/null

run=${RUNDIR:-$root/build/bench/scale-run}
mkdir -p "$OUT" "$run"
run=$(cd "$run" && pwd)
results=$OUT/scale.jsonl
cur_pid=""
cur_name=""
log() { echo "[scale $(date +%H:%M:%S)] $*" >&2; }

# -- the client ---------------------------------------------------------------
if [ ! -x bench/h2c-fanout ] || [ bench/h2c-fanout.c -nt bench/h2c-fanout ]; then
    cc -O2 -Wall -Wextra -Werror -o bench/h2c-fanout bench/h2c-fanout.c -lnghttp2 -lssl -lcrypto -lm
fi
[ -f .libs/mod_h2chat.so ] || make -f Makefile.apxs > /dev/null

# -- servers ------------------------------------------------------------------
tree_pids() { # PID and its descendants
    local p=$1 c
    echo "$p"
    for c in $(pgrep -P "$p" 2> /dev/null); do tree_pids "$c"; done
}
tree_pss_kib() { # sum of Pss over the tree
    local p t=0 v
    for p in $(tree_pids "$1"); do
        v=$(awk '$1 == "Pss:" {print $2}' /proc/"$p"/smaps_rollup 2> /dev/null || echo 0)
        t=$((t + ${v:-0}))
    done
    echo $t
}
port_busy() { ss -Hltn "sport = :$1" 2> /dev/null | grep -q .; }
status_field() { # NAME: a field of Apache's server-status?auto
    curl -s -m 5 "http://127.0.0.1:$PORT/server-status?auto" | awk -v k="$1:" '$1 == k {print $2}'
}
reach() { # DIR...: every directory from / down to each DIR searchable by others
    local d
    for d in "$@"; do
        while [ "$d" != / ] && [ -n "$d" ]; do
            chmod o+x "$d"
            d=$(dirname "$d")
        done
    done
}
children_for() { # N -> processes: one per PER_CHILD subscribers, at least 2
    local c=$((($1 + PER_CHILD - 1) / PER_CHILD))
    [ $c -lt 2 ] && c=2
    echo $c
}

start_h2chat() { # N CHILDREN [apache2 -D...]
    local n=$1 ch=$2 r="$run/apache" i
    shift 2
    mkdir -p "$r/htdocs"
    bench/httpd-conf.sh "$r" "$PORT" "$ch" 64 "$((n * 11 / 10 + 100))" "${SPREAD:-auto}" 0 - \
        > "$r/httpd.conf"
    # www-data must reach the module and the server root
    reach "$root/.libs" "$r/htdocs"
    chmod o+r "$root/.libs/mod_h2chat.so"
    rm -f "$r/httpd.pid" "$r/error.log"
    timeout 30 /usr/sbin/apache2 -DBENCH_DIRECT "$@" -t -f "$r/httpd.conf" 2> /dev/null || return 1
    timeout 60 /usr/sbin/apache2 -DBENCH_DIRECT "$@" -f "$r/httpd.conf" -k start || return 1
    for ((i = 0; i < 100; i++)); do [ -s "$r/httpd.pid" ] && break; sleep 0.1; done
    [ -s "$r/httpd.pid" ] || return 1
    cur_pid=$(cat "$r/httpd.pid")
    cur_name=h2chat-direct
    apache_args=(-DBENCH_DIRECT "$@" -f "$r/httpd.conf")
    # every child up, with its loop (a row in server-status)
    for ((i = 0; i < 300; i++)); do
        [ "$(status_field H2ChatDirectPerChild | tr ',' '\n' | grep -c =)" -ge "$ch" ] && return 0
        sleep 0.1
    done
    log "not all $ch children of Apache came up"
    return 1
}
start_nchan() { # N
    local r="$run/nchan" w i
    w=$(children_for "$1")
    mkdir -p "$r/tmp"
    sed -e "s|@WORKERS@|$w|g" -e "s|@CONNS@|19000|g" -e "s|@PORT@|$NCHAN_PORT|g" \
        bench/nchan-scale.conf.in > "$r/nginx.conf"
    rm -f "$r/nginx.pid"
    timeout 30 nginx -p "$r" -c "$r/nginx.conf" -e "$r/error.log" || return 1
    for ((i = 0; i < 100; i++)); do [ -s "$r/nginx.pid" ] && break; sleep 0.1; done
    cur_pid=$(cat "$r/nginx.pid")
    cur_name=nchan
}
start_seed() {
    node "$PEERS/seed-node/server.mjs" "$SEED_PORT" > "$run/seed.log" 2>&1 &
    cur_pid=$!
    cur_name=seed
}
stop_server() {
    [ -n "$cur_pid" ] || return 0
    local p=$cur_pid i
    cur_pid=""
    kill -TERM "$p" 2> /dev/null || true
    for ((i = 0; i < 600; i++)); do
        kill -0 "$p" 2> /dev/null || break
        sleep 0.1
    done
    if kill -0 "$p" 2> /dev/null; then
        log "$cur_name (pid $p) did not stop within 60 s: SIGKILL to its tree"
        # shellcheck disable=SC2046
        kill -KILL $(tree_pids "$p") 2> /dev/null || true
    fi
    wait "$p" 2> /dev/null || true
    cur_name=""
    sleep 2 # sockets of the last run go (TIME_WAIT is the client's)
}
client_pid=""
on_exit() {
    local rc=$?
    [ -n "$client_pid" ] && kill -TERM "$client_pid" 2> /dev/null && wait "$client_pid" 2> /dev/null
    stop_server
    [ $rc = 0 ] || log "bench/scale.sh: exit status $rc (servers stopped)"
}
trap on_exit EXIT
trap 'exit 130' INT TERM HUP

url_of() {
    case $1 in
    h2chat-direct) echo "--url http://127.0.0.1:$PORT/msgs" ;;
    nchan) echo "--url http://127.0.0.1:$NCHAN_PORT/msgs --sse" ;;
    seed) echo "--url http://127.0.0.1:$SEED_PORT/msgs" ;;
    esac
}

# record NAME PHASE JSONFILE [key=value ...]: one line of scale.jsonl
record() {
    local name=$1 phase=$2 f=$3
    shift 3
    python3 - "$name" "$phase" "$f" "$results" "$@" << 'EOF'
import json, sys, time
name, phase, f, out = sys.argv[1:5]
try:
    rec = json.loads(open(f).read().strip().splitlines()[-1])
except (OSError, ValueError, IndexError):
    rec = {'error': 'no client result'}
rec.update({'server': name, 'phase': phase, 'when': time.strftime('%Y-%m-%dT%H:%M:%S')})
for kv in sys.argv[5:]:
    k, v = kv.split('=', 1)
    try:
        rec[k] = json.loads(v)
    except ValueError:
        rec[k] = v
# memory per held subscriber: the tree's Pss with all held, less idle
if rec.get('server_pss_kib_idle') and rec.get('server_pss_kib_connected', -1) > 0 and rec.get('ready'):
    rec['pss_kib_per_sub'] = round((rec['server_pss_kib_connected'] - rec['server_pss_kib_idle'])
                                   / rec['ready'], 2)
open(out, 'a').write(json.dumps(rec) + '\n')
print(f"{name} {phase} n={rec.get('n')} ready={rec.get('ready')} lost={rec.get('lost')} "
      f"dups={rec.get('dups')} p99={rec.get('lat_p99_ms')} ms "
      f"pss={rec.get('server_pss_kib_connected')} KiB ({rec.get('pss_kib_per_sub')}/sub) "
      f"back_s={rec.get('back_s')}",
      file=sys.stderr)
EOF
}

# client N K TIMEOUT OUTFILE [more fanout-multi options]: in the background
client() {
    local n=$1 k=$2 t=$3 f=$4
    shift 4
    # shellcheck disable=SC2046
    python3 bench/fanout-multi.py $(url_of "$cur_name") --proto h2c -n "$n" -k "$k" \
        --rate "$RATE" --pid "$cur_pid" --timeout "$t" --connect-rate 4000 --max-pending 1000 \
        "$@" > "$f" 2> "$f.log" &
    client_pid=$!
}
client_wait() {
    local rc=0
    wait "$client_pid" || rc=$?
    client_pid=""
    return $rc
}
# waits until the publisher's first message is committed (Apache)
wait_published() {
    local i
    for ((i = 0; i < 6000; i++)); do
        [ "$(status_field H2ChatPublished)" -gt 0 ] 2> /dev/null && return 0
        kill -0 "$client_pid" 2> /dev/null || return 1
        sleep 0.1
    done
    return 1
}

phase_ladder() {
    local n name f idle
    for n in $SCALE_LADDER; do
        for name in $SERVERS; do
            case $name in
            h2chat-direct) start_h2chat "$n" "$(children_for "$n")" || { log "Apache did not start"; stop_server; continue; } ;;
            nchan) [ -n "$PEERS" ] && command -v nginx > /dev/null || continue
                start_nchan "$n" || { stop_server; continue; } ;;
            seed) [ -n "$PEERS" ] && [ "$n" -le "$SEED_MAX" ] || continue
                start_seed ;;
            esac
            sleep 1
            f=$run/ladder-$name-$n.json
            idle=$(tree_pss_kib "$cur_pid")
            log "ladder: $name, $n subscribers"
            client "$n" "$K" $((120 + n / 500)) "$f"
            client_wait || true
            record "$name" ladder "$f" "procs_server=$(tree_pids "$cur_pid" | wc -l)" \
                "server_pss_kib_idle=$idle"
            stop_server
        done
    done
}

# restart SPREAD (auto|off|SECONDS): graceful restart while RESTART_N resume
run_restart() {
    local spread=$1 f=$run/restart-$1.json
    SPREAD=$spread start_h2chat "$RESTART_N" "$(children_for "$RESTART_N")" || { stop_server; return 1; }
    log "restart: $RESTART_N subscribers, H2ChatReconnectSpread $spread"
    RATE=$RESTART_RATE client "$RESTART_N" "$RESTART_K" $((200 + RESTART_N / 250)) "$f" --resume \
        --server-sample-ms 250
    wait_published || { log "no message published"; client_wait || true; stop_server; return 1; }
    sleep "$RESTART_AT"
    /usr/sbin/apache2 "${apache_args[@]}" -k graceful
    client_wait || true
    record h2chat-direct restart "$f" "spread=\"$spread\"" \
        "refused_cap=$(status_field H2ChatRefusedCap || echo null)"
    stop_server
}

phase_restart() {
    local sp
    for sp in $RESTART_SPREADS; do
        run_restart "$sp" || true
    done
}

phase_kill() {
    local f=$run/kill.json ch t0 victim most=0 row pid n back=-1 i subs per after=""
    ch=${KILL_CHILDREN:-$(children_for "$KILL_N")}
    start_h2chat "$KILL_N" "$ch" || { stop_server; return 1; }
    log "kill: $KILL_N subscribers over $ch children"
    RATE=$RESTART_RATE client "$KILL_N" "$RESTART_K" $((200 + KILL_N / 250)) "$f" --resume \
        --server-sample-ms 250
    wait_published || { client_wait || true; stop_server; return 1; }
    sleep "$RESTART_AT"
    for row in $(status_field H2ChatDirectPerChild | tr ',' ' '); do
        pid=${row%=*} n=${row#*=}
        [ "$n" -gt "$most" ] && most=$n victim=$pid
    done
    t0=$(date +%s.%N)
    kill -KILL "$victim"
    # counts right again: the dead child's row is gone (its streams no
    # longer counted) and every subscriber is held once more (the
    # publisher's own connection is not a subscriber)
    for ((i = 0; i < 1200; i++)); do
        per=$(status_field H2ChatSubscribersPerChild)
        subs=$(status_field H2ChatSubscribers)
        if [ -n "$per" ] && ! echo ",$per" | grep -q ",$victim=" && [ "${subs:-0}" -eq "$KILL_N" ]; then
            back=$(awk -v a="$t0" -v b="$(date +%s.%N)" 'BEGIN {printf "%.2f", b - a}')
            break
        fi
        sleep 0.25
    done
    after=$(status_field H2ChatDirectPerChild)
    client_wait || true
    record h2chat-direct kill "$f" "killed_held=$most" "children=$ch" "counts_right_s=$back" \
        "per_child_after=\"$after\""
    stop_server
}

phase_soak() {
    local f=$run/soak.json samples=$OUT/soak-pss.tsv t0 i
    start_h2chat "$SOAK_N" "$(children_for "$SOAK_N")" -DBENCH_HEARTBEAT || { stop_server; return 1; }
    log "soak: $SOAK_N subscribers for $SOAK_S s (H2ChatHeartbeat 10)"
    # one message a second for the whole soak
    RATE=1 client "$SOAK_N" "$SOAK_S" $((SOAK_S + 300 + SOAK_N / 250)) "$f"
    wait_published || { client_wait || true; stop_server; return 1; }
    t0=$(date +%s)
    printf 's\tpss_kib\tsubscribers\n' > "$samples"
    while kill -0 "$client_pid" 2> /dev/null; do
        printf '%s\t%s\t%s\n' $(($(date +%s) - t0)) "$(tree_pss_kib "$cur_pid")" \
            "$(status_field H2ChatSubscribers)" >> "$samples"
        for ((i = 0; i < SOAK_EVERY && i >= 0; i++)); do
            kill -0 "$client_pid" 2> /dev/null || break
            sleep 1
        done
    done
    client_wait || true
    record h2chat-direct soak "$f" "$(python3 - "$samples" << 'EOF'
import sys
rows = [l.split('\t') for l in open(sys.argv[1]).read().splitlines()[1:]]
rows = [(int(s), int(p), int(n or 0)) for s, p, n in rows if p.isdigit()]
# from the first sample after a minute (connections settled) to the last
# taken while every subscriber was still held
base = next((r for r in rows if r[0] >= 60), rows[0] if rows else None)
held = [r for r in rows if r[2] >= (base[2] if base else 0)]
last = held[-1] if held else None
g = (last[1] - base[1]) / base[1] * 100 if base and last and base[1] else None
print(f"pss_growth_pct={g if g is None else round(g, 3)}")
EOF
)" "pss_samples=\"$samples\""
    stop_server
}

: > /dev/null
log "phases: $PHASES; servers: $SERVERS; out: $results"
for ph in $PHASES; do
    "phase_$ph"
done
log "done: $results"
