"""Idle streams get keep-alive lines every H2ChatHeartbeat seconds: NDJSON
`{"type":"heartbeat","time":..}` lines without an id, SSE comments; the
interval is announced in X-H2Chat-Heartbeat so clients can tell a quiet
stream from a dead one."""

import time

import h2chat_env as env

EXTRA_CONF = """
<Location /msgs>
    H2ChatHeartbeat 1
</Location>
"""


def heartbeats(sub):
    return [e for e in sub.events if e.get('type') == 'heartbeat']


def test_idle_streams_get_heartbeats(server):
    subs = server.subscribers([('h2c', 'ndjson'), ('h2tls', 'sse'), ('h1', 'ndjson')])
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs]
    for s in subs:
        assert s.headers.get('x-h2chat-heartbeat') == '1', s.headers
    t0 = time.monotonic()
    for s in subs:
        s.wait_event(lambda e, s=s: e.get('type') == 'heartbeat' and
                     len(heartbeats(s)) >= 2, timeout=6)
        assert len(heartbeats(s)) >= 2, s.summary()
    assert time.monotonic() - t0 < 6
    nd = heartbeats(subs[0])[0]
    assert 'id' not in nd and abs(nd['time'] - env.now_ms()) < 10_000, nd
    assert '_comment' in heartbeats(subs[1])[0]  # an SSE comment, not an event
    # a message in between still arrives, once
    status, _, body = server.post('{"user":"hb","text":"between beats"}')
    assert status == 201, body
    for s in subs:
        msgs = s.wait_for(1, timeout=5)
        assert [m['text'] for m in msgs] == ['between beats'], s.summary()
    for s in subs:
        s.close()
