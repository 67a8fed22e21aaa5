"""Reliability 3: a subscriber that stops reading.

Two raw clients subscribe and never read again: one over h2c with a 16-byte
stream window and no WINDOW_UPDATE ever, one over HTTP/1.1 with a 1 KiB
SO_RCVBUF. Among N ordinary subscribers (curl, mixed transports; up to 50
read by Python for latency figures, the rest curl -> file), M large
messages (~4 KB) are posted twice: once without the stuck clients, once
with them. Figures: latency (POST sent -> line parsed by the client) p50 /
p99 of the ordinary subscribers in both phases. Assertions: every ordinary
subscriber gets every message (within a generous bound, no tighter timing
check), and each stuck client is eventually dropped: its count leaves
H2ChatSubscribers. `Timeout 5` bounds a blocked write.

A stuck HTTP/1.1 reader blocks the handler only once the kernel buffers
are full: on loopback the server's send buffer grows to about 1.6 MB, so
with messages flowing 500 x 4 KB are needed before a write blocks. In a
quiet chat no write blocks at all: test_stuck_reader_in_quiet_chat checks
that the module's send-queue watch (h2c_sock) drops such readers anyway.

Short: 50 subscribers, 500 messages per phase at 100/s. H2CHAT_SOAK=1:
1000 subscribers, 500 messages per phase at 20/s."""

import re
import time
from datetime import datetime

import h2chat_env as env
import h2chat_rel as rel

N = rel.pick(50, 1000)
# subscribers read by Python (latency figures); the others are curl
# processes writing to files (BulkSubscriber), checked afterwards
PROBES = min(N, 50)
M = 500
RATE = rel.pick(100, 20)
SIZE = 4000  # text bytes; the body stays under the default 4096
TIMEOUT = 5
DROP_BOUND = 60  # seconds: generous; Timeout is 5
SPECS = [('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse'), ('h1', 'ndjson'),
         ('h2c', 'sse'), ('h2tls', 'sse')]
# every held stream keeps an MPM thread (its connection's) and, for h2, an
# h2 worker: 1000 need > 1000 MPM threads
MPM = rel.pick(
    None,
    {'StartServers': 6, 'ServerLimit': 8, 'ThreadsPerChild': 200, 'ThreadLimit': 200,
     'MaxRequestWorkers': 1200, 'MinSpareThreads': 100, 'MaxSpareThreads': 1200})
# N streams from 127.0.0.1, more than half the cap
EXTRA_CONF = f'Timeout {TIMEOUT}\nH2ChatMaxSubscribers {N + 20}\n' + \
    'H2ChatMaxSubscribersPerAddress off\n' + rel.pick('', 'H2MaxWorkers 250\n')


WALL = time.time() - time.monotonic()  # monotonic -> wall clock
LOG_TIME = re.compile(r'^\[(\w+ \w+ +\d+ [\d:.]+ \d+)\]')


def log_time(line):
    m = LOG_TIME.match(line)
    return datetime.strptime(m.group(1), '%a %b %d %H:%M:%S.%f %Y').timestamp() if m else None


def stuck_life(log, port):
    """From the debug lines H2C0020 / H2C0021 of the stream whose client
    port is `port`: start and end (wall clock), messages sent, why it ended."""
    out = {'start': None, 'end': None, 'sent': None, 'why': None, 'held_s': None}
    for line in log.splitlines():
        if f'127.0.0.1:{port}]' not in line:
            continue
        if 'H2C0020' in line:
            out['start'] = log_time(line)
        m = re.search(r'H2C0021: subscriber ends after (\d+) messages \(([^)]*)\)', line)
        if m:
            out['end'] = log_time(line)
            out['sent'], out['why'] = int(m.group(1)), m.group(2)
    if out['start'] and out['end']:
        out['held_s'] = round(out['end'] - out['start'], 2)
    return out


def phase(server, subs, bulk, tag):
    """Posts M messages; waits until every subscriber has all of them ->
    (ids, latencies in s, seconds from the last POST until all had all)."""
    pub = rel.Publisher(server, RATE, tag=tag, size=SIZE, threads=2, count=M).start()
    assert pub.wait_done(M / RATE + 60), 'publisher did not finish'
    assert not pub.failed, pub.failed[:3]
    ids = [r['id'] for r in pub.ok]
    t_last = max(r['t1'] for r in pub.ok)
    deadline = time.monotonic() + rel.pick(30, 120)
    for s in subs:
        env.wait_until(lambda s=s: s.messages and s.messages[-1]['id'] >= ids[-1],
                       max(0.1, deadline - time.monotonic()), 0.05)
    for b in bulk:
        env.wait_until(lambda b=b: (b.last_id() or 0) >= ids[-1],
                       max(0.1, deadline - time.monotonic()), 0.2)
    all_in = time.monotonic() - t_last
    sent = pub.sent_at()
    lat = [m['_t'] - sent[m['id']] for s in subs for m in s.messages if m['id'] in sent]
    return ids, lat, all_in, pub


def test_stuck_subscriber(server):
    start = server.h2chat_status()['H2ChatLastId']
    subs = []
    for i in range(0, PROBES, 25):
        group = [server.subscriber(*SPECS[k % len(SPECS)], lean=True, max_time=900)
                 for k in range(i, min(PROBES, i + 25))]
        for s in group:
            s.wait_headers(30)
        subs += group
    bulk = []
    for i in range(N - PROBES):
        bulk.append(rel.BulkSubscriber(server, *SPECS[i % len(SPECS)], since=start))
        if i % 50 == 49:
            time.sleep(0.2)
    assert env.wait_until(lambda: all(b.status for b in bulk), 60, 0.5), \
        f'{sum(not b.status for b in bulk)} bulk subscribers without an answer'
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs if s.status != 200][:3]
    assert all(b.status == 200 for b in bulk), [b.status for b in bulk if b.status != 200][:3]
    assert server.wait_subscribers(N, 30) == N, server.h2chat_status()
    # quiet for longer than Timeout: held streams are not subject to it
    time.sleep(TIMEOUT + 2)
    assert not [s for s in subs if s.ended], [s.summary() for s in subs if s.ended][:3]
    assert not [b for b in bulk if b.ended]

    ids_a, lat_a, all_in_a, _ = phase(server, subs, bulk, 'without stuck')

    last = server.h2chat_status()['H2ChatLastId']
    mark = server.errlog_mark()
    stuck = [rel.StuckClient(server.port, 'h2c', f'/msgs?since={last}'),
             rel.StuckClient(server.port, 'h1', f'/msgs?since={last}')]
    assert server.wait_subscribers(N + 2, 10) == N + 2, server.h2chat_status()
    t_stuck = time.monotonic()
    ids_b, lat_b, all_in_b, pub_b = phase(server, subs, bulk, 'with stuck')

    # the stuck ones are dropped: the count goes back to N
    dropped = server.wait_subscribers(N, DROP_BOUND)
    t_drop = time.monotonic() - t_stuck
    t_drop_after_last_post = time.monotonic() - max(r['t1'] for r in pub_b.ok)
    log = server.errlog_since(mark)
    lives = [stuck_life(log, c.sock.getsockname()[1]) for c in stuck]
    # when did each stuck handler block? at the first message it could not
    # hand over: the POST of id since + sent + 1
    sent_wall = {r['id']: r['t0'] + WALL for r in pub_b.ok}
    for life in lives:
        first_unsent = last + (life['sent'] or 0) + 1
        if life['end'] and first_unsent in sent_wall:
            life['dropped_s_after_first_blocked_post'] = round(
                life['end'] - sent_wall[first_unsent], 2)
        life.pop('start')
        life.pop('end')
    how = [c.drain(5) for c in stuck]
    for c in stuck:
        c.close()

    expected = list(range(start + 1, server.h2chat_status()['H2ChatLastId'] + 1))
    assert ids_a + ids_b == expected
    missing = [s.summary()[:300] for s in subs if [m['id'] for m in s.messages] != expected]
    for b in bulk:
        b.close()
    missing += [f'bulk {b.transport}/{b.mode} {b.body_path}: {len(b.ids())} ids'
                for b in bulk if b.ids() != expected]
    figures = {
        'subscribers': N, 'latency_probes': PROBES, 'messages_per_phase': M, 'message_bytes': SIZE, 'rate_per_s': RATE,
        'timeout_s': TIMEOUT,
        'without_stuck': {'p50_ms': rel.ms(rel.percentile(lat_a, 50)),
                          'p99_ms': rel.ms(rel.percentile(lat_a, 99)),
                          'max_ms': rel.ms(max(lat_a)),
                          'all_delivered_s_after_last_post': round(all_in_a, 2)},
        'with_stuck': {'p50_ms': rel.ms(rel.percentile(lat_b, 50)),
                       'p99_ms': rel.ms(rel.percentile(lat_b, 99)),
                       'max_ms': rel.ms(max(lat_b)),
                       'all_delivered_s_after_last_post': round(all_in_b, 2)},
        'subscribers_missing_messages': len(missing),
        'stuck_dropped': dropped == N,
        'count_after_bound': dropped,
        'stuck_dropped_s_after_subscribe': round(t_drop, 1),
        'stuck_dropped_s_after_last_post': round(t_drop_after_last_post, 1),
        'stuck_end_seen_by_client': {c.kind: h for c, h in zip(stuck, how)},
        'stuck_server_side': {c.kind: life for c, life in zip(stuck, lives)},
    }
    rel.record('stuck' + ('_soak' if rel.SOAK else ''), **figures)
    assert not missing, f'{len(missing)} subscribers missed messages:\n' + '\n'.join(missing[:3])
    assert dropped == N, (
        f'MODULE BUG: a subscriber that stopped reading is still counted {DROP_BOUND} s '
        f'after the posts (Timeout {TIMEOUT}): H2ChatSubscribers={dropped}, expected {N}; '
        f'{figures}')


def test_stuck_reader_in_quiet_chat(server):
    """Nothing is posted while they are stuck: no write ever blocks, only
    heartbeats trickle. The kernel's send queue stops moving; the module
    must see that and drop both within Timeout + two idle checks, while a
    healthy idle subscriber stays."""
    start = server.h2chat_status()['H2ChatLastId']
    for i in range(30):  # 120 KB of history: more than the stuck clients take
        server.post_msg('history', rel.message_text('quiet', i, SIZE))
    base = server.h2chat_status()['H2ChatSubscribers']
    dropped_before = server.h2chat_status()['H2ChatDroppedStalled']
    healthy = [server.subscriber(t, 'ndjson', since=start) for t in ('h1', 'h2c')]
    for h in healthy:
        assert h.wait_headers() == 200
    mark = server.errlog_mark()
    # h1: 1 KiB receive buffer, 120 KB to take. h2c: a large stream window
    # and 40 KB, less than the 64 KiB connection window: mod_http2 writes
    # it all, so no write blocks; the session's TCP connection is what fills
    stuck = [rel.StuckClient(server.port, 'h1', f'/msgs?since={start}'),
             rel.StuckClient(server.port, 'h2c', f'/msgs?since={start + 20}', window=1 << 20)]
    assert server.wait_subscribers(base + 4, 10) == base + 4, server.h2chat_status()
    t0 = time.monotonic()
    bound = TIMEOUT + 2 * 2 + 3  # Timeout, two idle checks, slack
    n = server.wait_subscribers(base + 2, bound + 5)
    took = time.monotonic() - t0
    log = server.errlog_since(mark)
    ports = [c.sock.getsockname()[1] for c in stuck]
    lives = [stuck_life(log, p) for p in ports]
    how = [c.drain(5) for c in stuck]
    for c in stuck:
        c.close()
    status = server.h2chat_status()
    rel.record('stuck_quiet', timeout_s=TIMEOUT, dropped_after_s=round(took, 1),
               count_after=n, expected=base + 2, stalled_counter=status['H2ChatDroppedStalled'],
               server_side={c.kind: life for c, life in zip(stuck, lives)},
               client_side={c.kind: h for c, h in zip(stuck, how)})
    assert n == base + 2, (f'MODULE BUG: stuck readers in a quiet chat still held '
                           f'{took:.0f} s later: {status}; {lives}')
    assert took <= bound, f'dropped after {took:.1f} s, bound {bound} s'
    assert status['H2ChatDroppedStalled'] - dropped_before == 2, status
    assert log.count('H2C0024') == 2, log
    assert all(life['why'] == 'client stopped reading' for life in lives), lives
    # the healthy idle ones stay, with all of the history
    for h in healthy:
        h.wait_for(30, 10)
        assert h.alive and not h.ended, h.summary()
    for h in healthy:
        h.close()
