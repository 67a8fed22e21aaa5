"""H2ChatMaxSubscribers is a server-wide cap on held streams, across all
children: over it a GET gets 503 with Retry-After and a JSON error; POSTs
keep working; a closed stream frees its slot."""

import json
import time

import h2chat_env as env

CAP = 5
# every stream comes from 127.0.0.1: the per-address cap (default 3 here)
# would refuse first; this is the server-wide cap's test (t/test_peraddr.py
# has the per-address one)
EXTRA_CONF = f'H2ChatMaxSubscribers {CAP}\nH2ChatMaxSubscribersPerAddress off\n'
SPECS = [('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse'), ('h2c', 'sse'),
         ('h1', 'ndjson')]


def assert_refused(server, s):
    assert s.wait_end(10), f'refused stream still open: {s.summary()}'
    assert s.status == 503, s.summary()
    ra = s.headers.get('retry-after', '')
    assert ra.strip().isdigit() and int(ra) > 0, s.headers
    ctype = s.headers.get('content-type', '')
    assert ctype.split(';')[0].strip() == 'application/json', s.headers
    obj = json.loads(s.body.decode())
    assert isinstance(obj.get('error'), str) and obj['error'], obj


def test_cap(server):
    assert server.h2chat_status()['H2ChatMaxSubscribersPerAddress'] == 'off'
    held = server.subscribers(SPECS)
    for s in held:
        assert s.status == 200, s.summary()
    assert server.wait_subscribers(CAP) == CAP

    # the 6th, 7th, ... on new connections (so on any child) are refused
    before = server.h2chat_status()
    for transport, mode in [('h2c', 'ndjson'), ('h1', 'sse'), ('h2tls', 'ndjson'),
                            ('h1', 'ndjson')]:
        mark = server.errlog_mark()
        extra = server.subscriber(transport, mode)
        assert_refused(server, extra)
        assert server.wait_errlog(env.TAG_RE.pattern, mark), server.errlog_since(mark)
    assert server.h2chat_status()['H2ChatSubscribers'] == CAP
    after = server.h2chat_status()
    refused = {k: v for k, v in after.items() if k.startswith('H2ChatRefused')}
    assert refused, f'no H2ChatRefused* line: {after}'
    grew = sum(v for v in refused.values() if isinstance(v, int)) - \
        sum(v for k, v in before.items() if k.startswith('H2ChatRefused') and isinstance(v, int))
    assert grew == 4, (before, after)

    # publishing is not limited by the cap
    msg_id, _ = server.post_msg('ann', 'to the five')
    for s in held:
        msgs = s.wait_for(1)
        assert [m['id'] for m in msgs] == [msg_id], s.summary()

    # closing one frees its slot: a new GET gets through within a few seconds
    held[0].close()
    t0 = time.monotonic()
    newcomer = None
    while time.monotonic() - t0 < 6:
        s = server.subscriber('h2c', 'ndjson')
        if s.wait_headers() == 200:
            newcomer = s
            break
        s.close()
        time.sleep(0.3)
    assert newcomer is not None, f'slot not freed: {server.h2chat_status()}'
    assert server.wait_subscribers(CAP) == CAP

    # and the cap still holds
    extra = server.subscriber('h1', 'sse')
    assert_refused(server, extra)


def test_refused_gets_no_snapshot(server):
    """A refused GET gets no messages, only the error."""
    assert server.wait_subscribers(0, 6) == 0
    server.post_msg('ann', 'in the snapshot')
    held = server.subscribers([('h2c', 'ndjson')] * CAP)
    assert all(s.status == 200 for s in held), [s.summary() for s in held]
    s = server.subscriber('h2c', 'ndjson')
    assert_refused(server, s)
    assert s.messages == []
