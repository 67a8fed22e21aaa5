#!/usr/bin/env python3
"""bench/rooms-load.py: rooms under load, mod_h2chat's direct loop
(H2ChatDirect, H2ChatRooms) vs nginx+nchan (one channel per room, the id from
the URL: ../shared/peers/nchan/nginx-rooms.conf), in the same run (#14,
acceptance 9, the second and third figures).

    bench/rooms-load.py [--figure a|b|ab] [--passes 3] [--runs 3] [--smoke]

Figure A, fan-out p99 in one crowded room among many: N subscribers (5,000)
hold /msgs/fanout with bench/h2c-fanout (h2c, one connection each; nchan:
SSE), which POSTs K messages (20) at R/s (10) there, once while OTHERS
(100,000) other rooms exist, each holding one message, and once with that
room alone. Goal: p99 with the others ≤ 1.1x p99 alone. Each pass starts
every server afresh per configuration (the order of the two alternates
between passes); the figure is the median over passes.

Figure B, POST throughput spread over rooms: h2load -c 10 -m 10 POSTs
{"user":"bench","text":"hello from h2load"} over h2c, once into ROOMS
(10,000) rooms and once all into one room. h2load's clients each walk its
URI file (-i) from the top, so -n is 10 x ROOMS: every client POSTs once to
every room. The rooms exist before (one message each). Goal: req/s over the
rooms ≥ 0.8x req/s into one. A fresh server per run; the median over runs.

The other rooms are made by h2load too: one POST each (-c 1 -m 10), checked
with the server's own count (server-status H2ChatRooms, nchan_stub_status
channels). Apache is bench/httpd.conf.in as bench/run.sh has it for
h2chat-direct (2 children x 64 threads; filled by bench/httpd-conf.sh) with
apache2 -DBENCH_DIRECT -DBENCH_ROOMS and -c 'H2ChatMaxRooms <others+16>'
-c 'H2ChatMemory 512M' in every configuration; nchan has 1 GiB of shared
memory (its config) and, beyond its config, keepalive_requests 1000000:
nginx ends a connection after 1000 requests by default (for h2 too), and
h2load does not reconnect. Before each run the script waits (up to --quiet-wait s)
until the machine's other work uses < 15 % of a core, and records what it
used; with --busy REGEX it first waits while another job (e.g. a test
suite) runs, and marks a run during which one ran as disturbed (left out of
the summary's medians). --pause (10 s) comes first: a run started right after the previous
server's stop was often the slower of a pair (p99 up to 2x, either
configuration), as if its teardown still took the cores.

Prints one JSON line per run and one summary line per figure, and appends
them to --out (bench/rooms/rooms-load.jsonl; --smoke: 100 subscribers, 500
rooms, one pass, into build/bench/rooms-smoke.jsonl). Every server is
stopped by its PID, also on failure or Ctrl-C; every client run is bounded
in time. Loopback only. About 15 minutes with the defaults."""

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchsrv  # noqa: E402

ROOT = benchsrv.ROOT
FANOUT = os.path.join(ROOT, 'bench', 'h2c-fanout')
BODY = '{"user":"bench","text":"hello from h2load"}'
FILL_BODY = '{"user":"u","text":"hello room"}'
SERVERS = ('h2chat-direct', 'nchan')
GOAL_A, GOAL_B = 1.1, 0.8


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument('--figure', default='ab', choices=('a', 'b', 'ab'))
    ap.add_argument('--servers', default=','.join(SERVERS))
    ap.add_argument('-n', '--subscribers', type=int, default=5000, help='figure A')
    ap.add_argument('--others', type=int, default=100000, help='figure A: other rooms')
    ap.add_argument('-k', type=int, default=20, help='figure A: messages')
    ap.add_argument('--rate', type=float, default=10, help='figure A: messages per second')
    ap.add_argument('--passes', type=int, default=3, help='figure A: passes')
    ap.add_argument('--rooms', type=int, default=10000, help='figure B: rooms')
    ap.add_argument('--runs', type=int, default=3, help='figure B: runs per configuration')
    ap.add_argument('--port', type=int, default=18205, help="Apache's port")
    ap.add_argument('--quiet-wait', type=int, default=120)
    ap.add_argument('--pause', type=float, default=10,
                    help='seconds between a server stop and the next start')
    ap.add_argument('--busy', metavar='REGEX',
                    help='command lines of other jobs to wait for (e.g. pytest): runs '
                         'during which one ran are marked disturbed, left out of the summary')
    ap.add_argument('--busy-wait', type=int, default=1800)
    ap.add_argument('--smoke', action='store_true')
    ap.add_argument('--out')
    a = ap.parse_args(argv)
    if a.smoke:
        a.subscribers, a.others, a.rooms, a.passes, a.runs, a.k = 100, 500, 500, 1, 1, 5
        a.quiet_wait, a.pause = 0, 0.2
    a.out = a.out or os.path.join(ROOT, 'build/bench/rooms-smoke.jsonl' if a.smoke
                                  else 'bench/rooms/rooms-load.jsonl')
    a.servers = [s for s in a.servers.split(',') if s]
    for s in a.servers:
        if s not in SERVERS:
            ap.error(f'unknown server {s} ({", ".join(SERVERS)})')
    return a


def log(msg):
    print(f'[{time.strftime("%H:%M:%S")}] {msg}', file=sys.stderr, flush=True)


def others_running(rx):
    """pids (not this script's) whose command line matches rx."""
    found = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/cmdline', 'rb') as f:
                cmd = f.read().replace(b'\0', b' ').decode('utf-8', 'replace')
        except OSError:
            continue
        if rx.search(cmd) and 'rooms-load.py' not in cmd:
            found.append(int(d))
    return found


class Watch:
    """--busy REGEX: other jobs whose figures or load would be noise here
    (a test suite, another benchmark). Before a run: wait (up to
    --busy-wait s) until none runs; during it: note any that shows up."""

    def __init__(self, a):
        self.rx = re.compile(a.busy) if a.busy else None
        self.wait_s, self.seen, self.stop = a.busy_wait, False, threading.Event()

    def before(self):
        t0 = time.monotonic()
        while self.rx and others_running(self.rx) and time.monotonic() - t0 < self.wait_s:
            log(f'  waiting: {self.rx.pattern} runs')
            time.sleep(30)
        self.seen, self.stop = False, threading.Event()
        if self.rx:
            threading.Thread(target=self._poll, daemon=True).start()

    def _poll(self):
        while not self.stop.wait(2):
            if others_running(self.rx):
                self.seen = True

    def after(self):
        """True when one ran during the run (or never ended before it)."""
        self.stop.set()
        return bool(self.rx) and (self.seen or bool(others_running(self.rx)))


def wait_quiet(a, limit=15.0):
    """After --pause s, waits (up to --quiet-wait s) until other work uses
    < limit % of a core; returns the last load seen (the record keeps it)."""
    return benchsrv.wait_quiet(a.pause, a.quiet_wait, limit, log)


class Runner:
    def __init__(self, a):
        self.a = a
        self.tmp = tempfile.mkdtemp(prefix='rooms-load-')
        self.body = os.path.join(self.tmp, 'body.json')
        open(self.body, 'w').write(BODY)
        self.fill_body = os.path.join(self.tmp, 'fill.json')
        open(self.fill_body, 'w').write(FILL_BODY)
        os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
        git = subprocess.run(['git', '-C', ROOT, 'rev-parse', '--short', 'HEAD'],
                             capture_output=True, text=True)
        # the records appended to bench/rooms/ do not make the tree dirty
        dirty = subprocess.run(['git', '-C', ROOT, 'status', '--porcelain', '--untracked-files=no',
                                '--', '.', ':!bench/rooms'],
                               capture_output=True, text=True).stdout.strip()
        self.commit = git.stdout.strip() + ('-dirty' if dirty else '')
        with open(benchsrv.MODULE, 'rb') as f:
            self.module = hashlib.sha256(f.read()).hexdigest()[:12]
        self.max_rooms = max(a.others, a.rooms) + 16
        self.watch = Watch(a)

    def server(self, name, subscribers=100):
        if name == 'nchan':
            return benchsrv.Nchan()
        return benchsrv.BenchApache(
            os.path.join(ROOT, 'build/bench/rooms/apache'), self.a.port, 2, 64,
            subscribers * 11 // 10 + 10, defines=('BENCH_DIRECT', 'BENCH_ROOMS'),
            directives=(f'H2ChatMaxRooms {self.max_rooms}', 'H2ChatMemory 512M'))

    def emit(self, rec):
        rec.update(commit=self.commit, module=self.module,
                   when_utc=time.strftime('%Y-%m-%dT%H:%M:%SZ', time.gmtime()))
        line = json.dumps(rec)
        print(line, flush=True)
        with open(self.a.out, 'a') as f:
            f.write(line + '\n')

    def uris(self, srv, names, tag):
        path = os.path.join(self.tmp, f'{tag}.txt')
        with open(path, 'w') as f:
            f.writelines(f'http://127.0.0.1:{srv.h2c_port}/msgs/{n}\n' for n in names)
        return path

    def fill(self, srv, n):
        """One message into each of rooms room0 .. room<n-1>; returns the
        server's own room count and the seconds it took."""
        if n == 0:
            return srv.rooms(), 0.0
        t0 = time.monotonic()
        h = benchsrv.h2load(['-n', n, '-c', 1, '-m', 10, '-i',
                             self.uris(srv, (f'room{i}' for i in range(n)), 'fill'),
                             '-d', self.fill_body, '-H', 'content-type: application/json'],
                            timeout=60 + n // 500)
        if h.get('status_2xx') != n:
            raise RuntimeError(f'filling {n} rooms: {h}')
        seen = srv.rooms()
        if seen is None or seen < n:
            raise RuntimeError(f'{n} rooms filled, the server counts {seen}')
        return seen, round(time.monotonic() - t0, 1)

    # ---- figure A
    def fanout(self, srv):
        a = self.a
        t = int(60 + a.subscribers / 100 + a.k / a.rate * 2)
        cmd = [FANOUT, '--url', f'http://127.0.0.1:{srv.h2c_port}/msgs/fanout', '--proto', 'h2c',
               '-n', str(a.subscribers), '-k', str(a.k), '--rate', str(a.rate),
               '--pid', str(srv.pid), '--timeout', str(t), '--drain', '15', '--json-only']
        if srv.sse:
            cmd.insert(5, '--sse')
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=t + 30)
        lines = [x for x in r.stdout.splitlines() if x.startswith('{')]
        if r.stderr.strip():
            log('  h2c-fanout: ' + r.stderr.strip()[-500:])
        c = json.loads(lines[-1]) if lines else {}
        return r.returncode, c, ' '.join(['bench/h2c-fanout'] + cmd[1:])

    def figure_a(self):
        a, recs = self.a, []
        for p in range(1, a.passes + 1):
            for name in a.servers:
                order = (0, a.others) if p % 2 else (a.others, 0)
                for others in order:
                    log(f'A pass {p}: {name}, {a.subscribers} subscribers, {others} other rooms')
                    self.watch.before()
                    quiet = wait_quiet(a)
                    with self.server(name, a.subscribers) as srv:
                        rooms, fill_s = self.fill(srv, others)
                        rc, c, cmd = self.fanout(srv)
                    rec = {'bench': 'rooms-load', 'figure': 'A', 'server': srv.label, 'pass': p,
                           'others': others, 'rooms_seen': rooms, 'fill_s': fill_s, 'rc': rc,
                           'others_pct': quiet, 'disturbed': self.watch.after(), 'cmd': cmd,
                           'client': c}
                    self.emit(rec)
                    recs.append(rec)
                    log(f'  rc {rc}: delivered {c.get("delivered")}/{c.get("expected")}, '
                        f'p50 {c.get("lat_p50_ms")} p99 {c.get("lat_p99_ms")} ms')
        self.emit(summary_a(a, recs))

    # ---- figure B
    def figure_b(self):
        a, recs = self.a, []
        n = 10 * a.rooms
        for p in range(1, a.runs + 1):
            for name in a.servers:
                for rooms in ((1, a.rooms) if p % 2 else (a.rooms, 1)):
                    log(f'B run {p}: {name}, {n} POSTs into {rooms} room(s)')
                    self.watch.before()
                    quiet = wait_quiet(a)
                    with self.server(name) as srv:
                        seen, _ = self.fill(srv, rooms)
                        uris = self.uris(srv, (f'room{i}' for i in range(rooms)), 'post')
                        cpu0 = benchsrv.tree_cpu_s(srv.pid)
                        h = benchsrv.h2load(['-n', n, '-c', 10, '-m', 10, '-i', uris,
                                             '-d', self.body, '-H', 'content-type: application/json'])
                        cpu = benchsrv.tree_cpu_s(srv.pid) - cpu0
                    h['cmd'] = h['cmd'].replace(uris, f'<{rooms} URIs: /msgs/room0..>')
                    rec = {'bench': 'rooms-load', 'figure': 'B', 'server': srv.label, 'run': p,
                           'rooms': rooms, 'rooms_seen': seen, 'others_pct': quiet,
                           'disturbed': self.watch.after(),
                           'server_cpu_s': round(cpu, 2),
                           'server_cpu_us_per_post': round(cpu * 1e6 / n, 1), 'h2load': h}
                    self.emit(rec)
                    recs.append(rec)
                    log(f'  rc {h["rc"]}: {h.get("req_per_s")} req/s, '
                        f'{h.get("status_2xx")} 2xx of {n}, server CPU {cpu:.2f} s')
        self.emit(summary_b(a, recs))


def med(xs):
    xs = [x for x in xs if x is not None]
    return round(statistics.median(xs), 1) if xs else None


def div(x, y):
    return round(x / y, 3) if x is not None and y else None


def summary_a(a, recs):
    out = {'bench': 'rooms-load', 'figure': 'A', 'summary': True, 'subscribers': a.subscribers,
           'others': a.others, 'k': a.k, 'rate': a.rate, 'goal_max': GOAL_A,
           'disturbed_left_out': sum(r['disturbed'] for r in recs)}
    for s in {r['server'] for r in recs}:
        def p99(others):
            return [r['client'].get('lat_p99_ms') for r in recs
                    if r['server'] == s and r['others'] == others and not r['disturbed']]
        crowded, alone = p99(a.others), p99(0)
        out[s] = {'p99_alone_ms': alone, 'p99_crowded_ms': crowded,
                  'median_alone_ms': med(alone), 'median_crowded_ms': med(crowded),
                  'ratio': div(med(crowded), med(alone)),
                  'complete': all(r['rc'] == 0 and r['client'].get('lost') == 0
                                  and r['client'].get('failed') == 0
                                  for r in recs if r['server'] == s)}
    if 'mod_h2chat-direct' in out and 'nchan' in out:
        h, n = out['mod_h2chat-direct'], out['nchan']
        out['h2chat_over_nchan'] = {'alone': div(h['median_alone_ms'], n['median_alone_ms']),
                                    'crowded': div(h['median_crowded_ms'], n['median_crowded_ms'])}
    if 'mod_h2chat-direct' in out:
        r = out['mod_h2chat-direct']['ratio']
        out['goal_met'] = r is not None and r <= GOAL_A
    return out


def summary_b(a, recs):
    out = {'bench': 'rooms-load', 'figure': 'B', 'summary': True, 'rooms': a.rooms,
           'posts': 10 * a.rooms, 'goal_min': GOAL_B,
           'disturbed_left_out': sum(r['disturbed'] for r in recs)}
    for s in {r['server'] for r in recs}:
        def rps(rooms):
            return [r['h2load'].get('req_per_s') for r in recs
                    if r['server'] == s and r['rooms'] == rooms and not r['disturbed']]
        spread, one = rps(a.rooms), rps(1)
        out[s] = {'req_s_one': one, 'req_s_spread': spread, 'median_one': med(one),
                  'median_spread': med(spread), 'ratio': div(med(spread), med(one)),
                  'complete': all(r['h2load'].get('status_2xx') == 10 * a.rooms
                                  for r in recs if r['server'] == s)}
    if 'mod_h2chat-direct' in out and 'nchan' in out:
        h, n = out['mod_h2chat-direct'], out['nchan']
        out['h2chat_over_nchan'] = {'one': div(h['median_one'], n['median_one']),
                                    'spread': div(h['median_spread'], n['median_spread'])}
    if 'mod_h2chat-direct' in out:
        r = out['mod_h2chat-direct']['ratio']
        out['goal_met'] = r is not None and r >= GOAL_B
    return out


def main(argv):
    a = parse_args(argv)
    if not os.access(FANOUT, os.X_OK):
        sys.exit(f'{FANOUT} is missing: build it (bench/README.md)')
    if not os.path.exists(benchsrv.MODULE):
        sys.exit(f'{benchsrv.MODULE} is missing: make -f Makefile.apxs')
    benchsrv.raise_nofile()
    # SIGTERM ends the run like Ctrl-C: the with blocks stop the servers
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(130))
    r = Runner(a)
    log(f'commit {r.commit}, module {r.module}, out {a.out}')
    try:
        if 'a' in a.figure:
            r.figure_a()
        if 'b' in a.figure:
            r.figure_b()
    finally:
        shutil.rmtree(r.tmp, ignore_errors=True)


if __name__ == '__main__':
    main(sys.argv[1:])
