"""Reliability 6: churn.

For DURATION seconds, W threads open and drop subscribers as fast as they
can (each holds 0.1 .. 1.5 s): curl processes (h2c / h2 TLS / HTTP/1.1,
ended by SIGTERM or SIGKILL), python-h2 connections with 1-3 streams (h2c
or TLS; ended by RST_STREAM, GOAWAY + close, or a TCP RST), and raw
HTTP/1.1 sockets (closed, or reset with SO_LINGER 0), some resuming with
?since=. Meanwhile a publisher posts 5 msg/s and a few subscribers stay the
whole time.

Warm-up: twice, about every thread of every child holds a stream at the
same time (THREADS HTTP/1.1 + 3 x THREADS h2 streams), then WARMUP s of churn.
Checks: after warm-up the children's private RSS (RssAnon) stays flat
(VmRSS is reported too: it also grows with the shared ring pages each child
touches, up to the segment's size, by design); after the churn the
threads and open fds of every child are back to what they were before;
H2ChatSubscribers goes back to 0; the subscribers that stayed lost nothing.
The MPM is fixed (3 children, no spare-thread maintenance) and the h2
worker pool too (H2MinWorkers = H2MaxWorkers), so the counts compare
per process.

Short: 30 s, 12 churn threads, 16 MPM + 16 h2 threads per child.
H2CHAT_SOAK=1: 600 s, 40 churn threads, 32 MPM + 64 h2 threads per child."""

import os
import random
import socket
import struct
import threading
import time

import h2chat_env as env
import h2chat_rel as rel

# H2CHAT_CHURN_SECONDS overrides the duration (e.g. to look at a plateau)
DURATION = int(os.environ.get('H2CHAT_CHURN_SECONDS', 0)) or rel.pick(30, 600)
WARMUP = DURATION // 3 if os.environ.get("H2CHAT_CHURN_SECONDS") else rel.pick(10, 60)
WORKERS = rel.pick(12, 40)
RATE = 5
STAYERS = [('h2c', 'ndjson'), ('h2tls', 'sse'), ('h1', 'sse'), ('h1', 'ndjson'),
           ('h2c', 'sse'), ('h2tls', 'ndjson')]
RSS_FLAT_KB = rel.pick(8, 16) * 1024
# Small fixed thread pools: every thread's first-use memory (stack pages,
# allocator, pools) is part of the warm-up, and with 64 + 64 threads per
# child that takes minutes of churn to converge (measured: RssAnon +10 MB
# in 120 s, slowing down), with 16 + 16 (short) it is done within ~1 min.
THREADS = rel.pick(16, 32)
H2_WORKERS = rel.pick(16, 64)  # soak: up to 40 x 3 h2 streams at once
MPM = {'StartServers': 3, 'ServerLimit': 3, 'ThreadsPerChild': THREADS, 'ThreadLimit': THREADS,
       'MaxRequestWorkers': 3 * THREADS, 'MinSpareThreads': 1,
       'MaxSpareThreads': 3 * THREADS, 'MaxConnectionsPerChild': 0}
EXTRA_CONF = f"""
H2MinWorkers {H2_WORKERS}
H2MaxWorkers {H2_WORKERS}
H2ChatMaxSubscribers 400
"""


class Churn:
    def __init__(self, server, last_id):
        self.server = server
        self.last_id = last_id
        self.stop = threading.Event()
        self.lock = threading.Lock()
        self.counts = {}
        self.errors = []

    def count(self, key, n=1):
        with self.lock:
            self.counts[key] = self.counts.get(key, 0) + n

    def hold(self):
        self.stop.wait(random.uniform(0.1, 1.5))

    def since(self):
        return random.choice([None, None, self.last_id(), max(0, self.last_id() - 5)])

    def curl(self):
        transport = random.choice(['h2c', 'h2tls', 'h1'])
        mode = random.choice(['ndjson', 'sse'])
        s = env.Subscriber(self.server, transport, mode, since=self.since(), lean=True,
                           max_time=30).start()
        self.server._subscribers.remove(s)  # not kept for the end of the test
        status = s.wait_headers(10)
        self.count(f'curl {status}')
        self.hold()
        if random.random() < 0.5:
            s.kill()
        else:
            s.close()

    def h2(self):
        tls = random.random() < 0.4
        conn = env.H2Connection(self.server.tls_port if tls else self.server.port, tls=tls)
        try:
            sids = []
            for _ in range(random.randint(1, 3)):
                since = self.since()
                path = '/msgs' if since is None else f'/msgs?since={since}'
                hdrs = {'accept': 'text/event-stream'} if random.random() < 0.5 else {}
                sids.append(conn.get(path, hdrs))
            for sid in sids:
                self.count(f'h2{"tls" if tls else "c"} stream {conn.wait_status(sid, 10)}')
            self.hold()
            how = random.choice(['reset', 'close', 'abort'])
            self.count(f'h2 end {how}')
            if how == 'reset':
                for sid in sids:
                    conn.reset(sid)
                time.sleep(0.05)
                conn.close()
            elif how == 'close':
                conn.close()
            else:
                conn.abort()
        except Exception:
            conn.abort()
            raise

    def h1(self):
        sock = socket.create_connection(('127.0.0.1', self.server.port), timeout=10)
        try:
            since = self.since()
            path = '/msgs' if since is None else f'/msgs?since={since}'
            accept = 'Accept: text/event-stream\r\n' if random.random() < 0.5 else ''
            sock.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\n{accept}\r\n'.encode())
            head = sock.recv(4096)
            self.count('h1 ' + head[9:12].decode('ascii', 'replace'))
            self.hold()
            if random.random() < 0.5:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
                self.count('h1 end rst')
            else:
                self.count('h1 end close')
        finally:
            sock.close()

    def worker(self):
        kinds = [self.curl, self.h2, self.h2, self.h1, self.h1]
        while not self.stop.is_set():
            kind = random.choice(kinds)
            try:
                kind()
                self.count('cycles')
            except Exception as e:  # noqa: BLE001 - reported, and counted
                self.count('errors')
                if len(self.errors) < 20:
                    self.errors.append(f'{kind.__name__}: {e!r}')


def saturate(server, h1=THREADS, h2_conns=THREADS // 2, hold=1.0):
    """Warm-up: (about) every MPM thread and every h2 worker of every child
    holds a stream at the same time once, so that each thread's first-use
    memory (stack pages, allocator, pools) is in the baseline."""
    socks, conns = [], []
    try:
        for _ in range(h1):
            sk = socket.create_connection(('127.0.0.1', server.port), timeout=10)
            sk.sendall(b'GET /msgs HTTP/1.1\r\nHost: localhost\r\n\r\n')
            socks.append(sk)
        for i in range(h2_conns):
            c = env.H2Connection(server.port if i % 3 else server.tls_port, tls=not i % 3)
            for _ in range(6):
                c.get('/msgs')
            conns.append(c)
        def held():
            try:
                return server.h2chat_status()['H2ChatSubscribers']
            except OSError:  # every thread of the child that took it is busy
                return 0
        # until the count stops rising (some streams may wait for a thread)
        seen, t_end = [], time.monotonic() + 10
        while time.monotonic() < t_end and (len(seen) < 4 or seen[-1] > seen[-4]):
            seen.append(held())
            time.sleep(0.3)
        time.sleep(hold)
        return max(seen + [held()])
    finally:
        for sk in socks:
            sk.close()
        for c in conns:
            c.close()
        server.wait_subscribers(0, 10)


def idle_figures(server):
    """Per-child threads / fds / rss once no client connection is left."""
    env.wait_until(lambda: not server.connection_holders(), 15, 0.2)
    time.sleep(1.0)
    return rel.proc_figures(server.children())


def test_churn(server):
    t_setup = time.monotonic()
    peak = [saturate(server) for _ in range(2)]
    before = idle_figures(server)
    t_setup = time.monotonic() - t_setup
    kids = sorted(before)
    start = server.h2chat_status()['H2ChatLastId']
    stayers = [server.subscriber(t, m, since=start, lean=True, max_time=DURATION + 120)
               for t, m in STAYERS]
    assert all(s.wait_headers() == 200 for s in stayers), [s.summary() for s in stayers]
    pub = rel.Publisher(server, RATE, tag='churn').start()
    churn = Churn(server, lambda: server_last[0])
    server_last = [start]
    threads = [threading.Thread(target=churn.worker, daemon=True) for _ in range(WORKERS)]
    t0 = time.monotonic()
    for t in threads:
        t.start()
    samples = []
    rss_warm = None
    try:
        while time.monotonic() - t0 < DURATION:
            time.sleep(2.0)
            st = server.h2chat_status()
            server_last[0] = st['H2ChatLastId']
            rss = rel.children_mem_kb(server)
            el = time.monotonic() - t0
            samples.append((round(el), rss, st['H2ChatSubscribers']))
            if rss_warm is None and el >= WARMUP:
                rss_warm = rss
    finally:
        churn.stop.set()
        for t in threads:
            t.join(timeout=30)
        pub.stop()
    rss_end = samples[-1][1]
    last = server.h2chat_status()['H2ChatLastId']
    expected = list(range(start + 1, last + 1))
    for s in stayers:
        env.wait_until(lambda s=s: s.messages and s.messages[-1]['id'] >= last, 10, 0.05)
    lost = {s.transport + '/' + s.mode: len(set(expected) - {m['id'] for m in s.messages})
            for s in stayers}
    wrong = [s.summary()[:300] for s in stayers
             if s.ended or [m['id'] for m in s.messages] != expected]
    for s in stayers:
        s.close()
    back_to_zero = server.wait_subscribers(0, 10)
    after = idle_figures(server)
    cycles = churn.counts.get('cycles', 0)
    per_child = {pid: {'threads': (before[pid]['threads'], after.get(pid, {}).get('threads')),
                       'fds': (before[pid]['fds'], after.get(pid, {}).get('fds')),
                       'rss_kb': (before[pid]['rss_kb'], after.get(pid, {}).get('rss_kb'))}
                 for pid in kids}
    figures = {
        'duration_s': DURATION, 'workers': WORKERS, 'client_cycles': cycles,
        'warmup_saturation_streams': peak, 'warmup_s': WARMUP,
        'saturation_s': round(t_setup, 1),
        'cycles_per_min': round(cycles * 60.0 / DURATION),
        'counts': churn.counts, 'errors': churn.errors[:5],
        'posts': len(pub.ok), 'posts_failed': len(pub.failed),
        'stayers_lost': lost, 'stayers_wrong': len(wrong),
        'mem_kb_warm': rss_warm, 'mem_kb_end_of_churn': rss_end,
        'rss_growth_after_warmup_kb': rss_end['rss'] - rss_warm['rss'],
        'anon_growth_after_warmup_kb': rss_end['anon'] - rss_warm['anon'],
        'shmem_growth_after_warmup_kb': rss_end['shmem'] - rss_warm['shmem'],
        'rss_samples_every_2s': [x[1]['rss'] for x in samples],
        'anon_samples_every_2s': [x[1]['anon'] for x in samples],
        'subscribers_samples': [x[2] for x in samples],
        'subscribers_after': back_to_zero,
        'per_child_before_after': per_child,
        'children_same': sorted(after) == kids,
    }
    rel.record('churn' + ('_soak' if rel.SOAK else ''), **figures)
    assert not wrong, 'stayers lost messages:\n' + '\n'.join(wrong)
    assert not pub.failed, pub.failed[:3]
    assert back_to_zero == 0, f'H2ChatSubscribers {back_to_zero} after everyone left'
    assert sorted(after) == kids, f'children changed: {kids} -> {sorted(after)}'
    leaks = {pid: v for pid, v in per_child.items()
             if v['threads'][0] != v['threads'][1] or v['fds'][0] != v['fds'][1]}
    assert not leaks, f'threads / fds differ before / after: {leaks}'
    assert cycles >= DURATION * 2, f'churn too slow to mean anything: {churn.counts}'
    assert churn.counts.get('errors', 0) <= cycles // 50, churn.errors
    if not rel.SANITIZED:
        grew = rss_end['anon'] - rss_warm['anon']
        assert grew <= RSS_FLAT_KB, \
            f'private RSS grew {grew} kB after warm-up: {figures["anon_samples_every_2s"]}'
