#!/usr/bin/python3
"""bench/tls-ladder.py: N held subscribers over TLS, one TLS connection (h2
by ALPN) per subscriber, mod_h2chat against nginx+nchan and the seed in the
same run, for a ladder of N (#15, acceptance 5).

    bench/tls-ladder.py [N ...] [--servers h2chat-fast,h2chat-http2,nchan,seed]
                        [-k 20] [--rate 10] [--h2load-conns 500]
                        [--phases ladder,h2load] [--out FILE]

N defaults to 1000 5000 10000 ($LADDER overrides the default). All servers
use one self-signed RSA-2048 certificate that openssl makes in a temporary
directory, and listen on loopback only:

  h2chat-fast   Apache with this tree's module (bench/httpd.conf.in with
                -DBENCH_TLS -DBENCH_TLS_DIRECT): the SSL virtual host on
                port+10 itself has `H2ChatDirect /msgs`, so that its h2
                connections are served by the module's own loop (the TLS
                fast path). 2 children x 64 threads (--fast-threads; a child per 8,000
                subscribers above 16,000), and `AsyncRequestWorkerFactor
                max(500, 2N / 60)`: suspended connections count against it.
                First a probe holds 8 subscribers and reads server-status
                H2ChatDirectSubscribers: a build without the fast path has
                them served by mod_http2 instead, and h2chat-fast is then
                skipped with that reason (--no-fast-check runs it anyway).
  h2chat-http2  the same Apache, module and virtual host without
                H2ChatDirect: mod_http2. Each held stream takes an MPM thread
                and an h2 worker, so it is sized per N as bench/run.sh sizes
                it (a child per 2,500, 1.2 N / children + 32 threads each,
                H2MaxWorkers the same), and skipped above 12,000 or when the
                machine has no room for its threads (pid_max 32,768).
  nchan         nginx+nchan with the peers' nchan/nginx-tls.conf.in (the
                certificate filled in, and TLS 1.3 allowed as the others
                negotiate it; 127.0.0.1:18105, 2 workers) in a temporary
                prefix; subscribers send Accept: text/event-stream.
  seed          node ../shared/peers/seed-node/server.mjs PORT CERT KEY (the
                peers' README's TLS way); one process: up to 19,000.

For each N, each server in turn (started fresh, then stopped by its PID):
after a settle second, the Pss of its process tree (smaps_rollup); then
bench/fanout-multi.py (bench/h2c-fanout processes, one per 16,000
subscribers, each from its own 127.0.0.x) connects N subscribers at
--connect-rate, one TLS connection each, and publishes K messages (20) at R/s
(10) over TLS. One JSON line per (server, N):

  p50_ms, p99_ms        delivery latency, h2c-fanout's lat_p50_ms / lat_p99_ms
  mem_kib_per_sub       (Pss with the N subscribers, sampled by the client
                        once all are connected - Pss before) / ready. The
                        MPM threads that mod_http2 needs per held stream
                        are started before: their fixed cost is in
                        pss_connected_kib (the whole tree), not in this
  cpu_us_per_delivery   utime+stime of the server's process tree from
                        /proc/PID/stat over the publishing window / deliveries
                        (10 ms ticks); sched_us_per_delivery: the same from
                        schedstat (ns), for small N

Then, per server, a fresh start and h2load rounds: --h2load-conns (500)
clients at once, each one TLS connection with a full handshake (h2load sets
no session to resume, and each client connects once: -n = -c) making one
POST /msgs over h2 (--npn-list h2). A round's rate = 2xx answers / h2load's
time; conns_per_s is the median of --h2load-rounds (5) rounds after
--h2load-warmup (1) round not counted: a round lasts under a second here,
and a fresh server's first handshakes fault in its threads' stacks and
heaps (Apache's 128 threads more than nginx's 2). 500, because nginx's and Node.js's accept queues hold 511: with 1,000
at once the seed's overflowed (a single thread accepts between handshakes),
and the dropped SYNs waited 1 s for their retransmission, which measures the
queue, not TLS. listen_overflows (TcpExt ListenOverflows) says whether that
happened.

The summary line and the table (stderr) give each figure as a ratio to
nchan's at the same N. JSON lines go to stdout and are appended to --out
(build/bench/tls-ladder.jsonl). Before each run the script waits (up to
--quiet-wait s) until other work uses < 15 % of a core and records what it
used (others_pct). Every server is stopped by its PID, also on failure,
Ctrl-C or SIGTERM; every client run is bounded in time (60 s + N / 100 +
N / connect rate + 2 K / rate, and 60 s more before it is stopped). A run at
N = 1,000 takes ~15 s per server here, with --pause and the quiet wait."""

import argparse
import hashlib
import json
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchsrv  # noqa: E402

ROOT = benchsrv.ROOT
FANOUT = os.path.join(ROOT, 'bench', 'h2c-fanout')
APACHE_RUN = os.path.join(ROOT, 'build', 'bench', 'tls', 'apache')
SERVERS = ('h2chat-fast', 'h2chat-http2', 'nchan', 'seed')
BODY = '{"user":"bench","text":"hello from h2load"}'
MAX_N = 100000          # every ladder entry; fanout-multi splits it over processes
HTTP2_MAX_N = 12000     # held streams through mod_http2: two threads each
SEED_MAX_N = 19000      # one Node.js process, 20,000 open files
FAST_THREADS = 64       # per child: held fast-path streams take no thread
PROBE_N = 8
METRICS = ('p50_ms', 'p99_ms', 'mem_kib_per_sub', 'cpu_us_per_delivery')


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('ladder', nargs='*', type=int, metavar='N',
                    help='subscriber counts (default $LADDER or 1000 5000 10000)')
    ap.add_argument('--servers', default=','.join(SERVERS))
    ap.add_argument('-k', type=int, default=20, help='messages per run')
    ap.add_argument('--rate', type=float, default=10, help='messages per second')
    ap.add_argument('--connect-rate', type=int, default=1000,
                    help='new subscriber connections per second')
    ap.add_argument('--h2load-conns', type=int, default=500,
                    help='TLS connections of the h2load run, all at once')
    ap.add_argument('--h2load-rounds', type=int, default=5,
                    help='measured h2load rounds per server start (median)')
    ap.add_argument('--h2load-warmup', type=int, default=1,
                    help='h2load rounds first, not counted')
    ap.add_argument('--phases', default='ladder,h2load', help='ladder, h2load or both')
    ap.add_argument('--port', type=int, default=18231,
                    help="Apache's h2c/HTTP/1.1 port (server-status); TLS on port + 10")
    ap.add_argument('--seed-port', type=int, default=18232)
    ap.add_argument('--pause', type=float, default=5,
                    help='seconds between a server stop and the next start')
    ap.add_argument('--quiet-wait', type=float, default=30)
    ap.add_argument('--no-fast-check', action='store_true',
                    help='run h2chat-fast even if the probe finds no fast path')
    ap.add_argument('--fast-directive', action='append', default=[], metavar='LINE',
                    help="one more line of h2chat-fast's config (apache2 -c), e.g. "
                         "'ListenCoresBucketsRatio 1'; repeatable")
    ap.add_argument('--fast-threads', type=int, default=FAST_THREADS,
                    help=f'ThreadsPerChild of h2chat-fast (default {FAST_THREADS})')
    ap.add_argument('--out', default=os.path.join(ROOT, 'build', 'bench', 'tls-ladder.jsonl'))
    a = ap.parse_args(argv)
    a.ladder = a.ladder or [int(x) for x in os.environ.get('LADDER', '1000 5000 10000').split()]
    if any(not 1 <= n <= MAX_N for n in a.ladder):
        ap.error(f'every N must be 1 .. {MAX_N}')
    if not 1 <= a.k <= 1000 or not 0 < a.rate <= 1000 or not 1 <= a.connect_rate <= 10000:
        ap.error('-k 1..1000, --rate up to 1000, --connect-rate 1..10000')
    if not 1 <= a.h2load_conns <= 10000:
        ap.error('--h2load-conns 1..10000')
    if not 1 <= a.h2load_rounds <= 50 or not 0 <= a.h2load_warmup <= 10:
        ap.error('--h2load-rounds 1..50, --h2load-warmup 0..10')
    a.phases = set(a.phases.split(','))
    if not a.phases or a.phases - {'ladder', 'h2load'}:
        ap.error('--phases: ladder, h2load or ladder,h2load')
    a.servers = [s for s in a.servers.split(',') if s]
    for s in a.servers:
        if s not in SERVERS:
            ap.error(f'unknown server {s} ({", ".join(SERVERS)})')
    return a


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def ceil_div(x, y):
    return -(-x // y)


def http2_sizing(n):
    """Children and threads per child for n held streams through mod_http2
    (bench/run.sh's: ~2,500 connections per child, 20 % spare, +32)."""
    children = max(2, ceil_div(n, 2500))
    return children, ceil_div(n * 12 // 10, children) + 32


def fast_factor(n, threads=FAST_THREADS):
    """AsyncRequestWorkerFactor for n suspended connections: a child stops
    accepting once its connections pass ThreadsPerChild + idle x factor;
    all n in one child must fit, with all but 4 threads idle, twice over."""
    return max(500, ceil_div(2 * n, max(1, threads - 4)))


def ensure_fanout():
    """bench/h2c-fanout built from its source if missing or older (as
    bench/scale.sh does)."""
    src = FANOUT + '.c'
    if os.access(FANOUT, os.X_OK) and os.path.getmtime(FANOUT) >= os.path.getmtime(src):
        return
    log('building bench/h2c-fanout')
    subprocess.run(['cc', '-O2', '-Wall', '-Wextra', '-Werror', '-o', FANOUT, src,
                    '-lnghttp2', '-lssl', '-lcrypto', '-lm'], check=True, timeout=300)


def wait_line(proc, prefix, timeout):
    """The first line of proc's stderr (binary pipe) that starts with
    prefix, or None after timeout or at its end."""
    buf, deadline = b'', time.monotonic() + timeout
    fd = proc.stderr.fileno()
    while time.monotonic() < deadline:
        r, _, _ = select.select([fd], [], [], max(0.05, deadline - time.monotonic()))
        if not r:
            continue
        chunk = os.read(fd, 4096)
        if not chunk:
            return None
        buf += chunk
        for line in buf.decode('utf-8', 'replace').splitlines():
            if line.startswith(prefix):
                return line
    return None


class Ladder:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix='tls-ladder-')
        self.cert = benchsrv.make_cert(self.tmp)
        self.body = os.path.join(self.tmp, 'body.json')
        open(self.body, 'w').write(BODY)
        git = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                             capture_output=True, text=True)
        dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain',
                                '--untracked-files=no'], capture_output=True, text=True)
        self.commit = git.stdout.strip() + ('-dirty' if dirty.stdout.strip() else '')
        with open(benchsrv.MODULE, 'rb') as f:
            self.module = hashlib.sha256(f.read()).hexdigest()[:12]
        self.records = []
        self.no_fast = None  # why h2chat-fast is skipped (the probe's finding)

    def close(self):
        shutil.rmtree(self.tmp, ignore_errors=True)

    # ---- servers
    def server(self, name, n):
        """A fresh, not yet started server sized for n subscribers."""
        a, maxsubs = self.a, n * 11 // 10 + 10
        if name == 'h2chat-fast':
            return benchsrv.BenchApache(
                APACHE_RUN, a.port, max(2, ceil_div(n, 8000)), a.fast_threads, maxsubs,
                defines=('BENCH_TLS', 'BENCH_TLS_DIRECT'),
                directives=(f'AsyncRequestWorkerFactor {fast_factor(n, a.fast_threads)}',
                            *a.fast_directive),
                cert=self.cert, label='mod_h2chat-fast')
        if name == 'h2chat-http2':
            children, threads = http2_sizing(n)
            return benchsrv.BenchApache(APACHE_RUN, a.port, children, threads, maxsubs,
                                        defines=('BENCH_TLS',), cert=self.cert,
                                        label='mod_h2chat-http2')
        if name == 'nchan':
            return benchsrv.NchanTLS(*self.cert, subscribers=n)
        return benchsrv.Seed(a.seed_port, self.cert)

    @staticmethod
    def url(srv):
        return f'https://127.0.0.1:{srv.tls_port}/msgs'

    def skip_reason(self, name, n):
        if name == 'h2chat-fast':
            return self.no_fast
        if name == 'seed' and n > SEED_MAX_N:
            return f'N above {SEED_MAX_N}: one Node.js process has 20,000 open files'
        if name == 'h2chat-http2':
            if n > HTTP2_MAX_N:
                return (f'N above {HTTP2_MAX_N}: each held stream through mod_http2 takes '
                        'two threads, and threads are capped near 32,000 on this machine')
            children, threads = http2_sizing(n)
            # the MPM's threads all start; h2 workers as streams need them
            need, room = children * threads + n + 100, benchsrv.thread_room()
            if need > room:
                return f'{need} threads needed, room for {room} (pid_max, other processes)'
        return None

    def probe_fast(self):
        """Is the TLS fast path in this build? 8 subscribers held over TLS,
        then server-status H2ChatDirectSubscribers: the loop's own count."""
        log(f'probe: {PROBE_N} TLS subscribers on h2chat-fast')
        held, ready = None, None
        if not self.a.no_fast_check:  # until it has answered
            self.no_fast = 'the fast-path probe did not finish (see its record)'
        with self.server('h2chat-fast', 100) as srv:
            p = subprocess.Popen([FANOUT, '--url', self.url(srv), '-n', str(PROBE_N), '-k', '1',
                                  '--wait-go', '--json-only', '--timeout', '30'],
                                 stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
            try:
                line = wait_line(p, 'READY ', 20)
                if line:
                    ready = int(line.split()[1])
                    held = srv.status().get('H2ChatDirectSubscribers')
                    p.send_signal(signal.SIGUSR1)
                p.communicate(timeout=40)
            finally:
                if p.poll() is None:
                    p.kill()
                    p.wait(5)
        fast = ready == PROBE_N and held == PROBE_N
        rec = {'label': srv.label, 'ready': ready, 'direct_held': held, 'fast_path': fast}
        self.no_fast = None
        if not fast:
            rec['finding'] = (f'no TLS fast path in this build: of {PROBE_N} TLS subscribers '
                              f'{ready} were served, {held} by the module\'s loop '
                              '(H2ChatDirectSubscribers)')
            if self.a.no_fast_check:
                rec['finding'] += ' (--no-fast-check: run anyway)'
            else:
                self.no_fast = rec['finding']
        log(f'  {ready} ready, {held} held by the loop' +
            (f': {rec["finding"]}' if 'finding' in rec else ''))
        return rec

    # ---- runs
    def emit(self, rec):
        rec = dict({'bench': 'tls-ladder'}, **rec)
        rec.update(commit=self.commit, module=self.module,
                   when_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
        line = json.dumps(rec)
        print(line, flush=True)
        with open(self.a.out, 'a') as f:
            f.write(line + '\n')
        self.records.append(rec)
        return rec

    def guarded(self, phase, name, n, fn):
        """fn() -> record fields; a server that does not start, or a client
        that breaks, gives an error record and the run goes on."""
        reason = self.skip_reason(name, n)
        if reason:
            log(f'{phase} {name} N={n}: skipped: {reason}')
            return self.emit({'phase': phase, 'server': name, 'n': n, 'skipped': reason})
        try:
            return self.emit(dict({'phase': phase, 'server': name, 'n': n}, **fn()))
        except (RuntimeError, OSError, ValueError, subprocess.SubprocessError) as e:
            log(f'{phase} {name} N={n}: error: {e}')
            return self.emit({'phase': phase, 'server': name, 'n': n, 'error': str(e)[-1000:]})

    def ladder_run(self, name, n, beside=None):
        """beside(srv) -> fields: called once the server idles, before the
        subscribers come (bench/tls-stall.py: stalled readers); whatever it
        holds is dropped when the server stops."""
        a = self.a
        log(f'ladder: {name}, {n} subscribers, {a.k} messages at {a.rate}/s')
        quiet = benchsrv.wait_quiet(a.pause, a.quiet_wait, log=log)
        timeout = int(60 + n / 100 + n / a.connect_rate + a.k / a.rate * 2)
        extra = {}
        with self.server(name, n) as srv:
            time.sleep(1)
            idle = benchsrv.tree_pss_kib(srv.pid)
            if beside:
                extra = beside(srv)
            args = ['--url', self.url(srv), '-n', n, '-k', a.k, '--rate', a.rate,
                    '--connect-rate', a.connect_rate, '--pid', srv.pid, '--timeout', timeout,
                    '--drain', 15, '--json-only'] + (['--sse'] if srv.sse else [])
            rc, c, err, cmd = benchsrv.fanout_multi(args, timeout + 60)
            if beside:
                extra.update(status_after=srv.status())
        if err:
            log('  fanout-multi: ' + err[-500:])
        rec = ladder_fields(srv.label, n, idle, c, rc)
        rec.update(k=a.k, rate=a.rate, others_pct=quiet, cmd=cmd, client=c, **extra)
        log(f'  rc {rc}: ready {rec["ready"]}/{n}, delivered {c.get("delivered")}/'
            f'{c.get("expected")}, p50 {rec["p50_ms"]} p99 {rec["p99_ms"]} ms, '
            f'{rec["mem_kib_per_sub"]} KiB/sub, {rec["cpu_us_per_delivery"]} us CPU/delivery')
        return rec

    def h2load_run(self, name):
        """One server start: a warm-up round (not counted: a fresh server's
        first handshakes fault in its threads' stacks and heaps), then
        --h2load-rounds rounds; conns_per_s is their median."""
        a, conns = self.a, self.a.h2load_conns
        log(f'h2load: {name}, {conns} new TLS connections, one POST each, '
            f'{a.h2load_warmup} + {a.h2load_rounds} rounds')
        quiet = benchsrv.wait_quiet(a.pause, a.quiet_wait, log=log)
        rounds, cpu, overflows = [], 0.0, 0
        with self.server(name, conns) as srv:
            time.sleep(1)
            for i in range(a.h2load_warmup + a.h2load_rounds):
                cpu0, ovf0 = benchsrv.tree_cpu_s(srv.pid), benchsrv.listen_overflows()
                h = benchsrv.h2load(['-n', conns, '-c', conns, '-m', 1, '--npn-list', 'h2',
                                     '-d', self.body, '-H', 'content-type: application/json',
                                     self.url(srv)], timeout=60 + conns / 20)
                if i >= a.h2load_warmup:
                    cpu += benchsrv.tree_cpu_s(srv.pid) - cpu0
                    overflows += benchsrv.listen_overflows() - ovf0
                    rounds.append(h)
                time.sleep(1)  # the closed connections' teardown, outside the next round
        oks = [h.get('status_2xx') or 0 for h in rounds]
        rates = sorted(round(ok / h['finished_s'], 1) for ok, h in zip(oks, rounds)
                       if ok and h.get('finished_s'))
        ok = min(oks) if oks else 0
        h = rounds[-1] if rounds else {'rc': None}
        rec = {'label': srv.label, 'conns': conns, 'ok': ok,
               'rc': max((r['rc'] for r in rounds), default=None),
               'conns_per_s': rates[len(rates) // 2] if len(rates) == len(rounds) and rates
               else None,
               'rounds_conns_per_s': rates,
               'server_cpu_ms_per_conn': round(cpu * 1000 / sum(oks), 3) if sum(oks) else None,
               'listen_overflows': overflows, 'others_pct': quiet, 'h2load': h}
        log(f'  rc {rec["rc"]}: {ok}/{conns} 2xx, {rec["conns_per_s"]} conns/s '
            f'(median of {rates}), connect max {h.get("connect_time_max")}, {h.get("tls")}, '
            f'{overflows} listen overflows')
        return rec


def ladder_fields(label, n, idle, c, rc):
    """The figures of one ladder run from the client's JSON line c."""
    ready, conn = c.get('ready') or 0, c.get('server_pss_kib_connected', -1)
    return {'label': label, 'rc': rc, 'ready': ready, 'failed': c.get('failed'),
            'lost': c.get('lost'), 'delivered': c.get('delivered'),
            'complete': rc == 0 and ready == n and c.get('lost') == 0,
            'p50_ms': c.get('lat_p50_ms'), 'p99_ms': c.get('lat_p99_ms'),
            'pss_idle_kib': idle, 'pss_connected_kib': conn,
            'mem_kib_per_sub': round((conn - idle) / ready, 2) if ready and conn > 0 else None,
            'cpu_s_publish': c.get('server_cpu_s_publish'),
            'cpu_us_per_delivery': c.get('server_cpu_us_per_msg'),
            'sched_us_per_delivery': c.get('server_sched_us_per_msg'),
            'threads_connected': c.get('server_threads_connected')}


# ---- summary
def div(x, y):
    return round(x / y, 2) if isinstance(x, (int, float)) and isinstance(y, (int, float)) \
        and x >= 0 and y > 0 else None


def summary(recs):
    """Every figure of every server, and its ratio to nchan's of the same N."""
    ladder = [r for r in recs if r['phase'] == 'ladder' and 'label' in r]
    nchan = {r['n']: r for r in ladder if r['server'] == 'nchan'}
    out = {'phase': 'summary', 'ladder': {}, 'h2load': {}}
    for r in ladder:
        ref = nchan.get(r['n'], {})
        row = {m: r.get(m) for m in METRICS + ('ready', 'complete')}
        row['x_nchan'] = {m: div(r.get(m), ref.get(m)) for m in METRICS}
        out['ladder'].setdefault(r['server'], {})[str(r['n'])] = row
    h2 = {r['server']: r for r in recs if r['phase'] == 'h2load' and 'label' in r}
    ref = h2.get('nchan', {}).get('conns_per_s')
    for s, r in h2.items():
        out['h2load'][s] = {'conns_per_s': r['conns_per_s'], 'ok': r['ok'],
                            'server_cpu_ms_per_conn': r['server_cpu_ms_per_conn'],
                            'x_nchan': div(r['conns_per_s'], ref)}
    out['skipped'] = [f'{r["phase"]} {r["server"]} N={r["n"]}: {r["skipped"]}' for r in recs
                      if r.get('skipped')]
    out['errors'] = [f'{r["phase"]} {r["server"]} N={r["n"]}: {r["error"][:200]}' for r in recs
                     if r.get('error')]
    return out


def fmt(v, width, nd=1):
    if v is None:
        return '-'.rjust(width)
    return (f'{v:.{nd}f}' if isinstance(v, float) else str(v)).rjust(width)


def table(a, s):
    """The summary as text: one row per server and N, ratios to nchan."""
    lines = []
    if s['ladder']:
        lines += [f'TLS ladder: one TLS connection per subscriber, K={a.k} at {a.rate}/s; '
                  'x nchan = the figure / nchan\'s at the same N',
                  f'{"server":<13} {"N":>6} {"ready":>6} {"p50 ms":>8} {"p99 ms":>8} '
                  f'{"KiB/sub":>8} {"us CPU/del":>10} | {"p50 x":>6} {"p99 x":>6} '
                  f'{"mem x":>6} {"cpu x":>6}']
    for server, by_n in s['ladder'].items():
        for n, r in sorted(by_n.items(), key=lambda kv: int(kv[0])):
            x = r['x_nchan']
            lines.append(f'{server:<13} {n:>6} {fmt(r["ready"], 6)} {fmt(r["p50_ms"], 8)} '
                         f'{fmt(r["p99_ms"], 8)} {fmt(r["mem_kib_per_sub"], 8)} '
                         f'{fmt(r["cpu_us_per_delivery"], 10, 2)} | '
                         + ' '.join(fmt(x[m], 6, 2) for m in METRICS)
                         + ('' if r['complete'] else '  (incomplete)'))
    if s['h2load']:
        lines.append(f'new TLS connections per second (h2load, {a.h2load_conns} connections '
                     'at once, full handshakes, one POST each)')
        lines.append(f'{"server":<13} {"conns/s":>8} {"2xx":>6} {"CPU ms/conn":>11} '
                     f'{"x nchan":>8}')
        for server, r in s['h2load'].items():
            lines.append(f'{server:<13} {fmt(r["conns_per_s"], 8)} {fmt(r["ok"], 6)} '
                         f'{fmt(r["server_cpu_ms_per_conn"], 11, 3)} {fmt(r["x_nchan"], 8, 2)}')
    lines += ['skipped: ' + x for x in s['skipped']] + ['error: ' + x for x in s['errors']]
    return '\n'.join(lines)


def interrupt(*_):
    raise KeyboardInterrupt


def main(argv):
    a = parse_args(argv)
    if not os.path.exists(benchsrv.MODULE):
        sys.exit(f'{benchsrv.MODULE} is missing: make -f Makefile.apxs')
    ensure_fanout()
    benchsrv.raise_nofile()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    # SIGTERM and SIGHUP end the run like Ctrl-C: the with blocks stop the
    # servers. SIGINT too when started in the background (a shell starts
    # background jobs with it ignored).
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, interrupt)
    r = Ladder(a)
    log(f'commit {r.commit}, module {r.module}, N {a.ladder}, servers {a.servers}, '
        f'out {a.out}')
    try:
        if 'h2chat-fast' in a.servers:
            r.guarded('probe', 'h2chat-fast', PROBE_N, r.probe_fast)
        for n in a.ladder if 'ladder' in a.phases else ():
            for name in a.servers:
                r.guarded('ladder', name, n, lambda: r.ladder_run(name, n))
        if 'h2load' in a.phases:
            for name in a.servers:
                r.guarded('h2load', name, a.h2load_conns, lambda: r.h2load_run(name))
        s = r.emit(summary(r.records))
        print(table(a, s), file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        log('interrupted: servers stopped')
        return 130
    finally:
        r.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
