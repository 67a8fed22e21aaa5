#!/usr/bin/python3
"""fanout-multi: one fan-out run of N subscribers split over P h2c-fanout
processes, for N beyond what one process can hold (20,000 descriptors per
process, ~28k ports per source/destination address pair).

Process i binds its connections to 127.0.0.(2+i). All run with --wait-go;
all but the publisher (process 0) with --subscribe-only. Once every process
printed READY, all get SIGUSR1 at once; their JSON lines and latency files
are merged into one JSON line on stdout with h2c-fanout's field names.
Debian's python3, stdlib only. See bench/README.md.
"""

import argparse
import array
import bisect
import itertools
import json
import math
import operator
import os
import queue
import signal
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
PER_PROC = 16000  # default split: well below the 20,000 fds of a process
GRACE_S = 30      # past the children's --timeout before they are killed

# fields summed over the processes (absent ones are skipped)
SUM = ('n', 'conns', 'ready', 'failed', 'fail_connect', 'fail_tls', 'fail_status',
       'status_503', 'fail_timeout', 'fail_reset', 'fail_resume', 'unanswered',
       'published', 'publish_ok', 'publish_err', 'publish_retries', 'publish_pending',
       'publish_timeouts', 'republished',
       'expected', 'delivered', 'lost', 'dups', 'out_of_order', 'closed', 'conn_closed',
       'goaways', 'ignored', 'gaps', 'reconnects', 'resubscribed', 'refused_reconnects',
       'refused_503', 'refused_429', 'refused_other', 'reconnect_errors',
       'reconnect_hints', 'client_cpu_s')
# fields whose maximum is kept
MAX = ('elapsed_s', 'connect_s', 'publish_s')


def parse_args(argv):
    ap = argparse.ArgumentParser(
        description='N subscribers over P h2c-fanout processes, one merged JSON line',
        epilog='Arguments after -- go to every h2c-fanout process unchanged.')
    ap.add_argument('--url', required=True)
    ap.add_argument('--proto')
    ap.add_argument('--sse', action='store_true')
    ap.add_argument('-n', type=int, default=100)
    ap.add_argument('-k', type=int, default=5)
    ap.add_argument('--rate', type=float)
    ap.add_argument('--timeout', type=float, default=60)
    ap.add_argument('--drain', type=float)
    ap.add_argument('--connect-rate', type=float, default=2000,
                    help='total over all processes (split evenly)')
    ap.add_argument('--max-pending', type=int, default=500,
                    help='total over all processes (split evenly)')
    ap.add_argument('--first-line-timeout', type=float)
    ap.add_argument('--streams-per-conn', type=int)
    ap.add_argument('--settle', type=float)
    ap.add_argument('--publish-url')
    ap.add_argument('--publish-proto')
    ap.add_argument('-H', '--header', action='append', default=[])
    ap.add_argument('--pid', action='append', default=[],
                    help='server pid for /proc sampling (publisher process only)')
    ap.add_argument('--server-sample-ms', type=float)
    ap.add_argument('--resume', action='store_true')
    ap.add_argument('--reconnect-ms', type=float)
    ap.add_argument('--reconnect-jitter-ms', type=float)
    ap.add_argument('--procs', type=int, help=f'processes (default ceil(N / {PER_PROC}))')
    ap.add_argument('--client', default=os.path.join(HERE, 'h2c-fanout'))
    ap.add_argument('--json-only', action='store_true')
    ap.add_argument('extra', nargs='*', help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.procs is None:
        a.procs = max(1, math.ceil(a.n / PER_PROC))
    if not 1 <= a.procs <= 250:
        ap.error('--procs must be 1..250 (sources 127.0.0.2 .. 127.0.0.251)')
    if a.n < a.procs:
        ap.error('-n must be at least --procs')
    if not os.access(a.client, os.X_OK):
        ap.error(f'{a.client} is missing: cc -O2 -Wall -Wextra -Werror -o bench/h2c-fanout '
                 'bench/h2c-fanout.c -lnghttp2 -lssl -lcrypto -lm')
    host = a.url.split('://', 1)[-1].split('/', 1)[0]
    if host.startswith('['):
        ap.error('IPv6 targets are not supported: the sources are 127.0.0.x')
    return a


def share(total, parts, i):
    return total // parts + (1 if i < total % parts else 0)


def commands(a, latdir):
    """One argv per process; process 0 publishes."""
    common = ['--url', a.url, '-k', str(a.k), '--timeout', str(a.timeout),
              '--wait-go', '--json-only']
    for opt, val in (('--proto', a.proto), ('--rate', a.rate), ('--drain', a.drain),
                     ('--first-line-timeout', a.first_line_timeout),
                     ('--streams-per-conn', a.streams_per_conn), ('--settle', a.settle),
                     ('--publish-url', a.publish_url), ('--publish-proto', a.publish_proto),
                     ('--reconnect-ms', a.reconnect_ms),
                     ('--reconnect-jitter-ms', a.reconnect_jitter_ms)):
        if val is not None:
            common += [opt, str(val)]
    if a.sse:
        common.append('--sse')
    if a.resume:
        common.append('--resume')
    for h in a.header:
        common += ['-H', h]
    cmds = []
    for i in range(a.procs):
        cmd = [a.client] + common + [
            '-n', str(share(a.n, a.procs, i)),
            '--connect-rate', str(a.connect_rate / a.procs),
            '--max-pending', str(max(1, math.ceil(a.max_pending / a.procs))),
            '--bind', f'127.0.0.{2 + i}',
            '--lat-out', os.path.join(latdir, f'lat{i}.bin')]
        if i == 0:
            for p in a.pid:
                cmd += ['--pid', str(p)]
            if a.server_sample_ms is not None:
                cmd += ['--server-sample-ms', str(a.server_sample_ms)]
        else:
            cmd.append('--subscribe-only')
        cmds.append(cmd + a.extra)
    return cmds


class Group:
    """The processes of a run, all in one process group of their own (so a
    Ctrl-C on the terminal reaches only this driver, which stops them)."""

    def __init__(self):
        self.procs = []
        self.pgid = None
        self.lines = queue.Queue()

    def start(self, i, cmd):
        p = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE,
                             process_group=0 if self.pgid is None else self.pgid)
        if self.pgid is None:
            self.pgid = p.pid
        p.out = []
        threading.Thread(target=self._read_err, args=(i, p), daemon=True).start()
        threading.Thread(target=self._read_out, args=(p,), daemon=True).start()
        self.procs.append(p)
        return p

    def _read_err(self, i, p):
        for line in iter(p.stderr.readline, b''):
            self.lines.put((i, line.decode('utf-8', 'replace').rstrip('\n')))
        self.lines.put((i, None))  # EOF

    @staticmethod
    def _read_out(p):
        for line in iter(p.stdout.readline, b''):
            p.out.append(line.decode('utf-8', 'replace'))

    def signal(self, sig):
        for p in self.procs:
            if p.poll() is None:
                try:
                    os.kill(p.pid, sig)
                except ProcessLookupError:
                    pass

    def wait(self, deadline):
        for p in self.procs:
            try:
                p.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                return False
        return True

    def stop(self):
        """TERM, then KILL, each by its PID. The group is killed too while
        its leader is still alive (h2c-fanout forks nothing, so this is
        only a safety net); once the leader is reaped its id may be reused."""
        if all(p.poll() is not None for p in self.procs):
            return
        self.signal(signal.SIGTERM)
        if self.wait(time.monotonic() + 3):
            return
        if self.procs and self.procs[0].poll() is None:
            try:
                os.killpg(self.pgid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
        self.signal(signal.SIGKILL)
        self.wait(time.monotonic() + 3)


def log(a, msg):
    if not a.json_only:
        print(f'fanout-multi: {msg}', file=sys.stderr, flush=True)


def wait_ready(a, g, deadline):
    """Waits for a READY line (or an exit) from every process; returns
    {index: (ready, failed)} of those that printed it."""
    ready, ended = {}, set()
    while len(ready) + len(ended - set(ready)) < len(g.procs):
        try:
            i, line = g.lines.get(timeout=max(0.05, deadline - time.monotonic()))
        except queue.Empty:
            raise TimeoutError('not every process got ready in time')
        if line is None:
            ended.add(i)
            if i == 0 and i not in ready:
                raise RuntimeError('the publisher process ended before it was ready')
        elif line.startswith('READY '):
            parts = line.split()
            ready[i] = (int(parts[1]), int(parts[2]))
            log(a, f'process {i}: {parts[1]} ready, {parts[2]} failed')
        else:
            print(f'[p{i}] {line}', file=sys.stderr, flush=True)
    return ready


def drain_lines(g):
    while True:
        try:
            i, line = g.lines.get_nowait()
        except queue.Empty:
            return
        if line is not None:
            print(f'[p{i}] {line}', file=sys.stderr, flush=True)


def read_lat(path):
    arr = array.array('I')
    try:
        with open(path, 'rb') as f:
            data = f.read()
    except OSError:
        return None
    arr.frombytes(data[:len(data) - len(data) % 4])
    if sys.byteorder != 'little':
        arr.byteswap()
    # h2c-fanout writes them in ascending order; check, sort if not
    if not all(map(operator.le, arr, itertools.islice(arr, 1, None))):
        arr = array.array('I', sorted(arr))
    return arr


def percentile(arrs, total, q):
    """Nearest rank over several sorted arrays: the smallest v with
    count(x <= v) >= ceil(q * total)."""
    rank = min(total, max(1, math.ceil(q * total)))
    lo, hi = 0, max(a[-1] for a in arrs if len(a))
    while lo < hi:
        mid = (lo + hi) // 2
        if sum(bisect.bisect_right(a, mid) for a in arrs) >= rank:
            hi = mid
        else:
            lo = mid + 1
    return lo


def merge(a, results, lats, ready):
    pub = results[0]
    out = dict(pub)
    for key in ('subscribe_only', 'bind'):
        out.pop(key, None)
    for key in SUM:
        vals = [r[key] for r in results if key in r]
        if vals:
            s = sum(vals)
            out[key] = round(s, 3) if isinstance(s, float) else s
    for key in MAX:
        vals = [r[key] for r in results if key in r]
        if vals:
            out[key] = max(vals)
    backs = [r['back_s'] for r in results if r.get('back_s', -1) >= 0]
    if any('back_s' in r for r in results):
        out['back_s'] = max(backs) if backs else -1
    out['timed_out'] = any(r.get('timed_out') for r in results)
    total = sum(len(x) for x in lats)
    if total:
        for q, key in ((0.5, 'lat_p50_ms'), (0.9, 'lat_p90_ms'), (0.99, 'lat_p99_ms')):
            out[key] = round(percentile(lats, total, q) / 1000.0, 3)
        out['lat_max_ms'] = round(max(x[-1] for x in lats if len(x)) / 1000.0, 3)
        out['lat_mean_ms'] = round(sum(sum(x) for x in lats) / total / 1000.0, 3)
    else:
        for key in ('lat_p50_ms', 'lat_p90_ms', 'lat_p99_ms', 'lat_max_ms', 'lat_mean_ms'):
            out[key] = -1
    if out.get('server_cpu_s_publish', -1) >= 0 and out.get('delivered'):
        out['server_cpu_us_per_msg'] = round(
            out['server_cpu_s_publish'] * 1e6 / out['delivered'], 2)
    if out.get('server_sched_s_publish', -1) >= 0 and out.get('delivered'):
        out['server_sched_us_per_msg'] = round(
            out['server_sched_s_publish'] * 1e6 / out['delivered'], 2)
    out['tool'] = 'fanout-multi'
    out['procs'] = a.procs
    out['per_proc_ready'] = [ready.get(i, (r.get('ready', 0), 0))[0]
                             for i, r in enumerate(results)]
    return out


def run(a):
    deadline = time.monotonic() + a.timeout + GRACE_S
    g = Group()
    with tempfile.TemporaryDirectory(prefix='fanout-multi.') as latdir:
        try:
            cmds = commands(a, latdir)
            for i, cmd in enumerate(cmds):
                g.start(i, cmd)
            log(a, f'{a.procs} processes, {a.n} subscribers, pids '
                   + ' '.join(str(p.pid) for p in g.procs))
            ready = wait_ready(a, g, deadline)
            g.signal(signal.SIGUSR1)
            log(a, f'go: {sum(r for r, _ in ready.values())} subscribers ready')
            finished = g.wait(deadline)
            drain_lines(g)
            if not finished:
                raise TimeoutError('processes still running past --timeout')
        finally:
            g.stop()
        time.sleep(0.1)  # the readers' last lines
        results, lats, codes = [], [], []
        for i, p in enumerate(g.procs):
            codes.append(p.returncode)
            js = [ln for ln in p.out if ln.startswith('{')]
            if not js:
                raise RuntimeError(f'process {i} (exit {p.returncode}) printed no result')
            results.append(json.loads(js[-1]))
            lat = read_lat(os.path.join(latdir, f'lat{i}.bin'))
            if lat is None:
                raise RuntimeError(f'process {i} wrote no latency file')
            if len(lat) != results[-1].get('delivered', len(lat)):
                log(a, f'process {i}: {len(lat)} latencies for '
                       f'{results[-1].get("delivered")} deliveries')
            lats.append(lat)
    out = merge(a, results, lats, ready)
    out['per_proc_exit'] = codes
    print(json.dumps(out, separators=(',', ':')), flush=True)
    log(a, f'ready {out["ready"]}/{out["n"]}, failed {out["failed"]}, delivered '
           f'{out["delivered"]}/{out["expected"]}, lost {out["lost"]}, dups {out["dups"]}, '
           f'p50 {out["lat_p50_ms"]} ms, p99 {out["lat_p99_ms"]} ms, exits {codes}')
    return 0 if all(c == 0 for c in codes) else 1


def main(argv):
    a = parse_args(argv)

    def on_term(signum, frame):
        raise KeyboardInterrupt
    # also SIGINT: a shell starts background jobs with it ignored
    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    try:
        return run(a)
    except KeyboardInterrupt:
        print('fanout-multi: interrupted, processes stopped', file=sys.stderr)
        return 130
    except (RuntimeError, TimeoutError, OSError, ValueError) as e:
        print(f'fanout-multi: {e}', file=sys.stderr)
        return 1


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
