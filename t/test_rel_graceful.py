"""Reliability 1: graceful restarts under load.

N subscribers (one connection each, mixed h2c / h2 over TLS / HTTP/1.1,
NDJSON and SSE, resuming with ?since= or Last-Event-ID) and a publisher
posting at a steady rate; three `apache2 -k graceful` in a row while it
posts. Every held stream is ended by its stopping child, every client
reconnects with its last id, and each one ends with every published message
exactly once, in order, with no gap line.

Short (normal suite): 60 subscribers, 20 msg/s. H2CHAT_SOAK=1: 500
subscribers, 50 msg/s."""

import time

import h2chat_env as env
import h2chat_rel as rel

N = rel.pick(60, 500)
# clients read by Python (latency figures); the others (soak) are curl ->
# file clients (ResumingBulk) that resume the same way
PROBES = min(N, 60)
RATE = rel.pick(20, 50)
RESTARTS = 3
BETWEEN = rel.pick(3.0, 6.0)  # seconds of load between restarts

# Threads for the held streams: every held stream keeps an MPM thread (the
# HTTP/1.1 connection's, or the h2 connection's while it has a held stream)
# and each h2 stream an h2 worker too. ServerLimit leaves slots for the old
# generation while it finishes.
MPM = rel.pick(
    {'StartServers': 3, 'ServerLimit': 8, 'ThreadsPerChild': 32, 'ThreadLimit': 32,
     'MaxRequestWorkers': 128, 'MinSpareThreads': 32, 'MaxSpareThreads': 128},
    {'StartServers': 6, 'ServerLimit': 14, 'ThreadsPerChild': 120, 'ThreadLimit': 120,
     'MaxRequestWorkers': 720, 'MinSpareThreads': 120, 'MaxSpareThreads': 720})
# N streams from 127.0.0.1 (soak: more than half the cap)
EXTRA_CONF = rel.pick('', 'H2MaxWorkers 150\n') + f'H2ChatMaxSubscribers {N + 100}\n' + \
    'H2ChatMaxSubscribersPerAddress off\n'


def test_graceful_restarts_under_load(server):
    start = server.h2chat_status()['H2ChatLastId']
    probes = rel.make_clients(server, PROBES, start, timeout=rel.pick(60, 240), lean=rel.SOAK)
    clients = probes + rel.make_bulk_clients(server, N - PROBES, start)
    not_ok = [c.summary() for c in clients if c.current.status != 200]
    assert not not_ok, f'{len(not_ok)} subscribers without 200:\n' + '\n'.join(not_ok[:5])
    assert server.wait_subscribers(N, 20) == N, server.h2chat_status()
    sup = rel.Supervisor(clients).start()
    pub = rel.Publisher(server, RATE, tag='graceful', threads=2).start()
    restarts = []
    try:
        time.sleep(BETWEEN)
        for _ in range(RESTARTS):
            gen = server.generation()
            t0 = time.monotonic()
            old = set(server.children())
            streams = [c.current for c in clients]
            server.graceful(wait=True)
            t_gen = time.monotonic() - t0
            # every stream of the old generation ends on its own
            ended = env.wait_until(lambda: all(s.ended for s in streams), 15, 0.1)
            t_end = time.monotonic() - t0
            assert ended, (f'{sum(not s.ended for s in streams)} streams still open 15 s '
                           f'after graceful')
            assert server.generation() != gen
            time.sleep(BETWEEN)
            restarts.append({'new_generation_s': round(t_gen, 2),
                             'all_old_streams_ended_s': round(t_end, 2),
                             'old_children_left_after_pause':
                                 len(old & set(server.children()))})
    finally:
        pub.stop()
    last = server.h2chat_status()['H2ChatLastId']
    expected = list(range(start + 1, last + 1))
    deadline = time.monotonic() + rel.pick(30, 120)
    for c in clients:
        c.wait_ids(last, max(0.1, deadline - time.monotonic()))
    time.sleep(0.5)  # anything doubled shows up now
    sup.stop()

    ok = pub.ok
    assert [r['id'] for r in ok] == sorted(r['id'] for r in ok)
    assert set(r['id'] for r in ok) <= set(expected)
    bad = rel.check_exactly_once(clients, expected)
    # texts byte for byte, for the POSTs whose answer says which id
    text_of = {r['id']: r['text'] for r in ok}
    for c in clients:
        for m in c.messages:
            if m['id'] in text_of and not rel.text_ok(m, text_of[m['id']]):
                bad.append((c.summary(), f'text of {m["id"]} differs'))
                break
    sent = pub.sent_at()
    lat = [m['_t'] - sent[m['id']] for c in probes for m in c.messages if m['id'] in sent]
    reconnects = [c.reconnects for c in clients]
    figures = {
        'subscribers': N, 'latency_probes': PROBES, 'rate_per_s': RATE, 'restarts': restarts,
        'published': len(expected), 'posts_ok': len(ok), 'posts_failed': len(pub.failed),
        'post_failures': [str(r['error'])[:120] for r in pub.failed[:5]],
        'clients_wrong': len(bad), 'messages_lost': sum(
            len(set(expected) - set(c.ids())) for c in clients),
        'messages_doubled': sum(len(c.ids()) - len(set(c.ids())) for c in clients),
        'reconnects_min': min(reconnects), 'reconnects_max': max(reconnects),
        'refused_reconnects': sum(c.refused for c in clients),
        'latency_p50_ms': rel.ms(rel.percentile(lat, 50)),
        'latency_p99_ms': rel.ms(rel.percentile(lat, 99)),
        'latency_max_ms': rel.ms(max(lat) if lat else None),
    }
    rel.record('graceful' + ('_soak' if rel.SOAK else ''), **figures)
    assert not bad, f'{len(bad)} of {N} clients wrong; first:\n' + \
        '\n'.join(f'{s}\n  -> {p}' for s, p in bad[:5])
    assert not pub.failed, f'POSTs failed during graceful restarts: {pub.failed[:5]}'
    # every restart ended every stream (checked above); a client that saw its
    # stream end late (a busy client machine) may skip a generation
    assert min(reconnects) >= 1, figures
    for c in clients:
        c.close()
    assert server.wait_subscribers(0, 10) == 0, server.h2chat_status()
