"""A client that goes away frees its slot promptly, without any message
being posted to discover the dead stream."""

import json
import time

import h2chat_env as env

SPECS = [('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse'), ('h1', 'ndjson'),
         ('h2c', 'sse')] * 2
FREED_WITHIN = 5.0


def wait_count(server, n, timeout):
    """Seconds until H2ChatSubscribers == n, or None."""
    t0 = time.monotonic()
    got = server.wait_subscribers(n, timeout)
    return time.monotonic() - t0 if got == n else None


def test_killed_clients_free_slots(server):
    assert server.wait_subscribers(0, 5) == 0
    subs = server.subscribers(SPECS)
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs]
    assert server.wait_subscribers(len(subs)) == len(subs)
    published = server.h2chat_status()['H2ChatPublished']
    for s in subs:
        s.kill()
    took = wait_count(server, 0, FREED_WITHIN)
    st = server.h2chat_status()
    assert took is not None, f'subscribers not freed within {FREED_WITHIN}s: {st}'
    assert st['H2ChatPublished'] == published, 'a message was posted meanwhile'


def test_half_gone_rest_still_served(server):
    assert server.wait_subscribers(0, 5) == 0
    subs = server.subscribers(SPECS)
    assert all(s.status == 200 for s in subs)
    assert server.wait_subscribers(len(subs)) == len(subs)
    gone, stay = subs[::2], subs[1::2]
    for s in gone:
        s.kill()
    took = wait_count(server, len(stay), FREED_WITHIN)
    assert took is not None, server.h2chat_status()
    before = {id(s): len(s.messages) for s in stay}
    msg_id, _ = server.post_msg('ann', 'for those who stayed')
    for s in stay:
        s.wait_for(before[id(s)] + 1)
        assert s.messages[-1]['id'] == msg_id, s.summary()
    assert server.h2chat_status()['H2ChatSubscribers'] == len(stay)


def test_h2_stream_reset_frees_slot(server):
    """RST_STREAM on one of several held streams of one connection frees that
    stream's slot only; the others keep receiving."""
    assert server.wait_subscribers(0, 5) == 0
    last = server.h2chat_status()['H2ChatLastId']
    conn = env.H2Connection(server.port)
    try:
        sids = [conn.get(f'/msgs?since={last}') for _ in range(3)]
        for sid in sids:
            assert conn.wait_status(sid) == 200, conn.streams
        assert server.wait_subscribers(3) == 3
        conn.reset(sids[0])
        took = wait_count(server, 2, FREED_WITHIN)
        assert took is not None, server.h2chat_status()
        assert not conn.closed, 'the connection must survive one stream reset'
        msg_id, _ = server.post_msg('ann', 'after a reset')

        def got_it(sid):
            lines = [json.loads(x) for x in conn.streams[sid]['data'].splitlines() if x]
            return any(m.get('id') == msg_id for m in lines)
        assert env.wait_until(lambda: all(got_it(s) for s in sids[1:]), 5), \
            {sid: conn.streams[sid]['data'][-300:] for sid in sids}
        assert server.h2chat_status()['H2ChatSubscribers'] == 2
    finally:
        conn.close()
    took = wait_count(server, 0, FREED_WITHIN)
    assert took is not None, f'connection close did not free its streams: ' \
                             f'{server.h2chat_status()}'


def test_many_streams_one_connection_closed(server):
    assert server.wait_subscribers(0, 5) == 0
    conn = env.H2Connection(server.port)
    try:
        sids = [conn.get('/msgs', {'accept': 'text/event-stream'}) for _ in range(6)]
        for sid in sids:
            assert conn.wait_status(sid) == 200, conn.streams
        assert server.wait_subscribers(6) == 6
    finally:
        conn.abort()  # no GOAWAY
    took = wait_count(server, 0, FREED_WITHIN)
    assert took is not None, server.h2chat_status()
