"""Presence (H2ChatPresence count, the default): a room's count is the
streams that hold it on every child, whatever their transport. Each held
stream is told its rooms' counts when it starts and when they change (at
most once a second); GET <room>?presence answers the count now. A child
killed with -9 takes its streams out of the counts within a few seconds."""

import time

import pytest

import h2chat_env as env
import h2chat_rel as rel

EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribersPerAddress off
<Location /msgs>
    H2ChatRooms On
    H2ChatHeartbeat 5
</Location>
<Location /quiet>
    H2Chat On
    H2ChatPresence off
</Location>
"""

# h2c: the direct loop; h2tls: mod_http2 (two threads a stream); h1
SPREAD = [('h2c', 'ndjson'), ('h2c', 'sse'), ('h2tls', 'ndjson'), ('h1', 'sse'),
          ('h1', 'ndjson'), ('h1', 'ndjson')]


def count(server, room):
    r = server.get(f'/msgs/{room}?presence')
    assert r.status == 200, r
    obj = r.json()
    assert obj['room'] == room, obj
    return obj['count']


def last_presence(s, room):
    seen = [e['count'] for e in s.events if e.get('type') == 'presence' and
            e.get('room') == room]
    return seen[-1] if seen else None


def wait_count(server, room, n, timeout=5):
    return env.wait_until(lambda: count(server, room) == n, timeout, 0.1)


def test_counts_across_transports_and_children(server):
    assert count(server, 'p') == 0
    subs = [server.subscriber(t, m, path='/msgs/p') for t, m in SPREAD]
    for s in subs:
        assert s.wait_headers(10) == 200, s.summary()
    t0 = time.monotonic()
    assert wait_count(server, 'p', len(subs), 1.5), count(server, 'p')
    assert time.monotonic() - t0 < 1.5
    per_child = [n for n in rel.per_child(server).values() if n]
    assert len(per_child) >= 2, rel.per_child(server)  # more than one child holds them
    # every stream is told the count, within about a second of the last join
    for s in subs:
        assert s.wait_event(lambda e: e.get('type') == 'presence' and
                            e.get('count') == len(subs), 4), s.summary()
    for s in subs[:2]:
        s.close()
    assert wait_count(server, 'p', len(subs) - 2, 3), count(server, 'p')
    for s in subs[2:]:
        assert s.wait_event(lambda e: e.get('type') == 'presence' and
                            e.get('count') == len(subs) - 2, 4), s.summary()
        # never more than one presence line a second per stream
        stamps = [e for e in s.events if e.get('type') == 'presence']
        assert len(stamps) <= 2 + (time.monotonic() - t0) + 1, stamps
    for s in subs[2:]:
        s.close()
    assert wait_count(server, 'p', 0, 3)


def test_stream_of_several_rooms_told_each(server):
    a = server.subscriber('h2c', 'ndjson', path='/msgs?room=q1&room=q2')
    b = server.subscriber('h1', 'ndjson', path='/msgs/q2')
    for s in (a, b):
        assert s.wait_headers(10) == 200
    assert a.wait_event(lambda e: e.get('type') == 'presence' and e.get('room') == 'q2'
                        and e.get('count') == 2, 4), a.summary()
    assert last_presence(a, 'q1') == 1, a.summary()
    r = server.get('/msgs?room=q1&room=q2&presence')
    assert r.status == 200 and r.json() == [{'room': 'q1', 'count': 1},
                                            {'room': 'q2', 'count': 2}], r
    r = env.curl_request(server.port, server.tls_port, 'h2c', 'GET', '/msgs/q2?presence')
    assert r.status == 200 and r.json() == {'room': 'q2', 'count': 2}, r  # the direct loop
    for s in (a, b):
        s.close()


def test_presence_off_tells_nothing(server):
    s = server.subscriber('h1', 'ndjson', path='/quiet')
    assert s.wait_headers(10) == 200
    other = server.subscriber('h1', 'ndjson', path='/quiet')
    assert other.wait_headers(10) == 200
    time.sleep(2.5)
    assert not [e for e in s.events if e.get('type') == 'presence'], s.summary()
    s.close()
    other.close()


def test_killed_child_leaves_the_count(server):
    subs = [server.subscriber('h1', 'ndjson', path='/msgs/k') for _ in range(9)]
    for s in subs:
        assert s.wait_headers(10) == 200
    assert wait_count(server, 'k', 9, 3)
    held = {pid: n for pid, n in rel.per_child(server).items() if n}
    victim = max(held, key=held.get)
    rel.kill_pid(server, victim)
    t0 = time.monotonic()
    # the victim's clients see their connection end (other streams it held
    # were not in this room)
    assert env.wait_until(lambda: any(s.ended for s in subs), 5)
    time.sleep(0.5)
    survivors = [s for s in subs if not s.ended]
    assert 0 < len(survivors) < 9, [s.summary() for s in subs]
    assert wait_count(server, 'k', len(survivors), 6), (count(server, 'k'), held)
    took = time.monotonic() - t0
    assert took < 6, took
    # the streams of the other children are told the new count
    for s in survivors:
        assert s.wait_event(lambda e: e.get('type') == 'presence' and
                            e.get('count') == len(survivors), 4), s.summary()
    for s in subs:
        s.close()
    assert wait_count(server, 'k', 0, 3)


def test_graceful_restart_leaves_no_phantoms(server):
    """Streams a graceful restart ends leave their rooms' counts (the old
    generation lets go as its streams end); new ones count as before."""
    subs = [server.subscriber(t, m, path='/msgs/g') for t, m in SPREAD]
    for s in subs:
        assert s.wait_headers(10) == 200
    assert wait_count(server, 'g', len(subs), 3)
    server.graceful()
    assert env.wait_until(lambda: all(s.ended for s in subs), 15), \
        [s.summary() for s in subs if not s.ended]
    assert wait_count(server, 'g', 0, 6), count(server, 'g')
    again = [server.subscriber('h1', 'ndjson', path='/msgs/g') for _ in range(3)]
    for s in again:
        assert s.wait_headers(10) == 200
    assert wait_count(server, 'g', 3, 3)
    for s in again:
        s.close()
