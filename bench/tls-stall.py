#!/usr/bin/python3
"""bench/tls-stall.py: does a TLS reader that stops reading slow the others
down on the TLS fast path? (#15, acceptance 4)

    bench/tls-stall.py [-n 1000] [--stalled 10] [--reps 3] [--prefill 1000]
                       [--prefill-bytes 3900] [--out FILE]

The h2chat-fast server of bench/tls-ladder.py (this tree's module, the SSL
virtual host with `H2ChatDirect /msgs`), started fresh for every run. Runs
alternate, `--reps` times: a clean run (N receivers, as a ladder run of
tls-ladder.py: one TLS connection each, K messages at R/s) and a stalled run,
where before the receivers come --stalled TLS connections each hold
`GET /msgs?since=0` with a window of 2 GiB (SETTINGS and WINDOW_UPDATE),
a 4 KiB receive buffer, and never read a byte: the history (--prefill
messages of --prefill-bytes, POSTed first in both kinds of run) and every
new message pile up behind their full sockets on the server (TLS records
in the loop's buffers). The figure: the receivers' delivery p99 of the
stalled runs over the clean runs' (medians), with every run's record.

A stalled reader is dropped only after `Timeout` (300 s in the bench
config), so it stalls through the whole run; server-status after the run
says how many the loop still held (H2ChatDirectSubscribers) and whether it
dropped any (H2ChatDroppedStalled).

Not covered: a client that stalls with a TLS KeyUpdate pending (Python's ssl
cannot send one): its effect on the loop is the same full socket, one
record more. Records go to --out (build/bench/tls-stall.jsonl) and stdout;
every server is stopped by its PID, also on failure or Ctrl-C."""

import argparse
import http.client
import importlib.util
import json
import os
import signal
import socket
import ssl
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import benchsrv  # noqa: E402

_spec = importlib.util.spec_from_file_location('tls_ladder', os.path.join(HERE, 'tls-ladder.py'))
ladder = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(ladder)

WINDOW = 2 ** 31 - 1


def parse_args(argv):
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('-n', type=int, default=1000, help='receivers')
    ap.add_argument('--stalled', type=int, default=10, help='readers that stop')
    ap.add_argument('--reps', type=int, default=3, help='clean + stalled pairs')
    ap.add_argument('--prefill', type=int, default=1000, help='messages POSTed first')
    ap.add_argument('--prefill-bytes', type=int, default=3900, help='text size of those')
    ap.add_argument('--out', default=os.path.join(ladder.ROOT, 'build', 'bench',
                                                  'tls-stall.jsonl'))
    a, rest = ap.parse_known_args(argv)
    if not 1 <= a.n <= 20000 or not 0 <= a.stalled <= 1000 or not 1 <= a.reps <= 20:
        ap.error('-n 1..20000, --stalled 0..1000, --reps 1..20')
    # the ladder's own options (-k, --rate, --port, --pause, ...) for its runs
    la = ladder.parse_args(rest + [str(a.n)])
    la.servers, la.out = ['h2chat-fast'], a.out
    return a, la


def tls_context():
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(['h2'])
    return ctx


def prefill(port, count, size):
    """count messages of `size` bytes of text, over one TLS keep-alive
    HTTP/1.1 connection (the fast-path host's HTTP/1.1 goes to httpd)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    conn = http.client.HTTPSConnection('127.0.0.1', port, timeout=30, context=ctx)
    body = json.dumps({'user': 'fill', 'text': 'x' * size}).encode()
    try:
        for _ in range(count):
            conn.request('POST', '/msgs', body, {'Content-Type': 'application/json'})
            r = conn.getresponse()
            r.read()
            if r.status != 201:
                raise RuntimeError(f'prefill POST: {r.status}')
    finally:
        conn.close()


class Stallers:
    """TLS h2 connections that each hold GET /msgs?since=0 with a huge
    window and never read."""

    def __init__(self, port, m):
        import h2.config
        import h2.connection
        import h2.settings
        self.socks = []
        ctx = tls_context()
        for _ in range(m):
            raw = socket.socket()
            raw.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
            raw.connect(('127.0.0.1', port))
            t = ctx.wrap_socket(raw, server_hostname='localhost')
            if t.selected_alpn_protocol() != 'h2':
                raise RuntimeError(f'staller: ALPN {t.selected_alpn_protocol()}')
            c = h2.connection.H2Connection(config=h2.config.H2Configuration(client_side=True))
            c.initiate_connection()
            c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: WINDOW})
            c.increment_flow_control_window(WINDOW - 65535)
            c.send_headers(1, [(':method', 'GET'), (':scheme', 'https'),
                               (':authority', 'localhost'), (':path', '/msgs?since=0')],
                           end_stream=True)
            t.sendall(c.data_to_send())
            self.socks.append(t)

    def send_queues(self, port):
        """The server side's unsent bytes (Send-Q) towards each of them:
        the proof that they stall on a full socket."""
        mine = {t.getsockname()[1] for t in self.socks}
        out = subprocess.run(['ss', '-tnH', 'state', 'established', f'( sport = :{port} )'],
                             capture_output=True, text=True, timeout=10).stdout
        queues = []
        for line in out.splitlines():
            f = line.split()
            if len(f) >= 4 and f[3].rsplit(':', 1)[-1].isdigit() and \
                    int(f[3].rsplit(':', 1)[-1]) in mine:
                queues.append(int(f[1]))
        return sorted(queues)

    def close(self):
        for t in self.socks:
            try:
                t.close()
            except OSError:
                pass
        self.socks = []


def main(argv):
    a, la = parse_args(argv)
    if not os.path.exists(benchsrv.MODULE):
        sys.exit(f'{benchsrv.MODULE} is missing: make -f Makefile.apxs')
    ladder.ensure_fanout()
    benchsrv.raise_nofile()
    os.makedirs(os.path.dirname(os.path.abspath(a.out)), exist_ok=True)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, ladder.interrupt)
    r = ladder.Ladder(la)
    held = []

    def beside(stalled):
        def run(srv):
            prefill(srv.tls_port, a.prefill, a.prefill_bytes)
            if not stalled:
                return {'stalled': 0}
            s = Stallers(srv.tls_port, stalled)
            held.append(s)
            deadline = time.monotonic() + 10
            while (srv.status().get('H2ChatDirectSubscribers') or 0) < stalled and \
                    time.monotonic() < deadline:
                time.sleep(0.1)
            time.sleep(1)  # their backlog goes out until their sockets are full
            return {'stalled': stalled,
                    'stalled_held': srv.status().get('H2ChatDirectSubscribers'),
                    'stalled_send_q': s.send_queues(srv.tls_port)}
        return run

    ladder.log(f'commit {r.commit}, module {r.module}, N {a.n}, {a.stalled} stalled, '
               f'{a.reps} pairs, out {a.out}')
    p99 = {0: [], a.stalled: []}
    try:
        r.guarded('probe', 'h2chat-fast', ladder.PROBE_N, r.probe_fast)
        for rep in range(a.reps):
            for m in (0, a.stalled):
                rec = r.guarded('stall', 'h2chat-fast', a.n,
                                lambda: r.ladder_run('h2chat-fast', a.n, beside(m)))
                for s in held:
                    s.close()
                held.clear()
                if rec.get('complete') and rec.get('p99_ms') is not None:
                    p99[m].append(rec['p99_ms'])
        clean, stalled = p99[0], p99[a.stalled]
        summary = {'phase': 'summary', 'n': a.n, 'stalled': a.stalled,
                   'p99_clean_ms': clean, 'p99_stalled_ms': stalled,
                   'ratio_of_medians': round(statistics.median(stalled) /
                                             statistics.median(clean), 2)
                   if clean and stalled else None}
        r.emit(summary)
        ladder.log(f'p99 clean {clean} ms, with {a.stalled} stalled {stalled} ms: '
                   f'ratio of medians {summary["ratio_of_medians"]}')
    except KeyboardInterrupt:
        ladder.log('interrupted: servers stopped')
        return 130
    finally:
        for s in held:
            s.close()
        r.close()
    return 0


if __name__ == '__main__':
    sys.exit(main(sys.argv[1:]))
