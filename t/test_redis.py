"""H2ChatStore redis: two Apache servers share one Redis. Every subscriber
on either node gets every message once, in the same order with the same
ids; a client resumes on the other node without loss or duplicate; while
Redis is away POSTs answer 503 at once, held streams stay open, and
delivery resumes (nothing accepted is lost) when it returns."""

import os
import signal
import time

import pytest

import h2chat_env as env

KEY = 'h2chat-test'


@pytest.fixture(scope='module')
def redis(cert):
    r = env.RedisServer('test_redis_redis').start()
    yield r
    r.stop()


def redis_up(node):
    """The node's reader follows Redis; False also while the status page
    does not answer yet (a slow start on a loaded machine)."""
    try:
        return node.h2chat_status().get('H2ChatRedis') == 'up'
    except OSError:
        return False


@pytest.fixture(scope='module')
def nodes(redis, cert):
    conf = f"""
H2ChatStore redis
H2ChatRedis {redis.url}/0 {KEY}
H2ChatHistory 200
<Location /msgs>
    H2ChatRooms On
    H2ChatAnonymousDelete On
</Location>
"""
    servers = [env.H2ChatServer(f'test_redis_{n}', conf, cert=cert) for n in 'ab']
    try:
        for s in servers:
            s.start()
        for s in servers:
            assert env.wait_until(lambda: redis_up(s), 10), s.errlog_tail()
        yield servers
    finally:
        for s in servers:
            s.stop()
    # Also after the stop (conftest's no_crash covers each test). httpd does
    # not log a child that exits on SIGKILL, so the take-over test's kill
    # shows nowhere here; any crash line does.
    for s in servers:
        assert not s.errlog_problems(), (s.errlog_problems(), s.cores())


def ids_of(sub):
    return [m['id'] for m in sub.messages]


def test_two_nodes_same_messages_same_order(nodes):
    a, b = nodes
    start = max(a.h2chat_status()['H2ChatLastId'], b.h2chat_status()['H2ChatLastId'])
    subs = [n.subscriber(t, m, since=start) for n in nodes
            for t, m in (('h2c', 'ndjson'), ('h1', 'sse'), ('h2tls', 'ndjson'))]
    for s in subs:
        assert s.wait_headers() == 200, s.summary()
    posted = []
    for i in range(30):
        node = nodes[i % 2]
        pid, _ = node.post_msg(f'user{i % 2}', f'message {i} via {"ab"[i % 2]}',
                               ('h1', 'h2c')[i // 2 % 2])
        posted.append((pid, f'message {i} via {"ab"[i % 2]}'))
    ids = [p[0] for p in posted]
    assert ids == list(range(ids[0], ids[0] + 30)), ids  # dense, Redis's order
    for s in subs:
        s.wait_for(30, 10)
    want = [(i, t) for i, t in posted]
    for s in subs:
        got = [(m['id'], m['text']) for m in s.messages]
        assert got == want, s.summary()
        assert not [e for e in s.events if e.get('type') == 'gap'], s.summary()
    # the same line bytes on both nodes: time comes from Redis, not the node
    raw = {s.server.name: [m['time'] for m in s.messages] for s in subs}
    assert len({tuple(v) for v in raw.values()}) == 1
    for n in nodes:
        st = n.h2chat_status()
        assert st['H2ChatRedis'] == 'up' and st['H2ChatRedisLastId'] == ids[-1], st


def test_rooms_on_both_nodes(nodes):
    """A message posted to a room on either node reaches that room's
    subscribers on both, in order, with the same ids; a stream of two rooms
    gets both merged by id; the location's own room none of them."""
    a, b = nodes
    specs = [('h2c', 'ndjson', '/msgs/red'), ('h1', 'sse', '/msgs/blue'),
             ('h2tls', 'ndjson', '/msgs?room=red&room=blue')]
    subs = {(n.name, path): n.subscriber(t, m, path=path) for n in nodes
            for t, m, path in specs}
    own = [n.subscriber('h1', 'ndjson') for n in nodes]
    for s in list(subs.values()) + own:
        assert s.wait_headers() == 200, s.summary()
    time.sleep(0.5)
    own_before = [len(s.messages) for s in own]
    posted = []
    for i in range(12):
        node, room = nodes[i % 2], ('red', 'blue', 'red')[i % 3]
        r = node.post({'user': 'u', 'text': f'{room} {i}'}, path=f'/msgs/{room}',
                      transport=('h1', 'h2c')[i // 2 % 2])
        assert r.status == 201, (r, node.errlog_tail())
        posted.append((r.json()['id'], room, f'{room} {i}'))
    for (name, path), s in subs.items():
        want = [p for p in posted if path.endswith(p[1]) or '?' in path]
        s.wait_for(len(want), 10)
    time.sleep(0.5)
    for (name, path), s in subs.items():
        want = [p for p in posted if path.endswith(p[1]) or '?' in path]
        got = [(m['id'], m['room'], m['text']) for m in s.messages]
        assert got == want, (name, path, s.summary())
    for s, n in zip(own, own_before):
        assert len(s.messages) == n, s.summary()
    for s in list(subs.values()) + own:
        s.close()


def test_moderation_on_both_nodes(nodes, redis):
    """A DELETE on one node reaches the room's streams on both (Redis logs
    the entry in its place) and takes the message out of the Redis stream;
    a clear on the other node ends both nodes' streams of the room and
    leaves the room's messages nowhere, other rooms untouched."""
    a, b = nodes
    subs = [a.subscriber('h1', 'ndjson', path='/msgs/mod'),
            b.subscriber('h2c', 'sse', path='/msgs/mod')]
    for s in subs:
        assert s.wait_headers() == 200, s.summary()
    ids = []
    for text in ('rude redis words', 'kind redis words'):
        r = a.post({'user': 'u', 'text': text}, path='/msgs/mod')
        assert r.status == 201, r
        ids.append(r.json()['id'])
    r = a.post({'user': 'u', 'text': 'other room stays'}, path='/msgs/keep')
    keep = r.json()['id']
    for s in subs:
        s.wait_for(2, 10)
    env.wait_until(lambda: b.h2chat_status()['H2ChatLastId'] >= keep, 5)
    r = env.curl_request(b.port, b.tls_port, 'h1', 'DELETE', f'/msgs/mod/{ids[0]}')
    assert r.status == 200 and r.json() == {'type': 'delete', 'room': 'mod', 'id': ids[0]}, r
    for s in subs:
        got = s.wait_event(lambda e: e.get('type') == 'delete', 5)
        assert [e['id'] for e in got] == [ids[0]], s.summary()
    assert redis.reply('XRANGE', KEY, f'{ids[0]}-1', f'{ids[0]}-1') == b'*0\r\n'
    assert b'kind redis words' in redis.reply('XRANGE', KEY, f'{ids[1]}-1', f'{ids[1]}-1')
    r = env.curl_request(a.port, a.tls_port, 'h1', 'DELETE', '/msgs/mod')
    assert r.status == 200 and r.json() == {'type': 'clear', 'room': 'mod'}, r
    for s in subs:
        assert s.wait_end(5), s.summary()
    assert redis.reply('XRANGE', KEY, f'{ids[1]}-1', f'{ids[1]}-1') == b'*0\r\n'
    assert b'other room stays' in redis.reply('XRANGE', KEY, f'{keep}-1', f'{keep}-1')
    n = b.subscriber('h1', 'ndjson', path='/msgs?room=mod&room=keep', since=ids[0] - 1)
    n.wait_event(lambda e: e.get('type') == 'clear', 5)
    time.sleep(0.3)
    assert [m['id'] for m in n.messages] == [keep], n.summary()
    n.close()


def test_stream_format_is_versioned(nodes, redis):
    """<key>:format says what the stream's entries are (2: messages and
    moderation lines); a node refuses to write into a newer format (503,
    logged with what to do), and writes again once it is its own."""
    a, _ = nodes
    assert a.post_msg('u', 'format check')[0]
    assert redis.reply('GET', f'{KEY}:format') == b'$1\r\n2\r\n'
    mark = a.errlog_mark()
    redis.command('SET', f'{KEY}:format', '3')
    try:
        r = a.post({'user': 'u', 'text': 'into a newer format'})
        env.assert_json_error(r, 503)
        assert a.wait_errlog(r'H2C0042: stream h2chat-test .* is in format 3, newer than '
                             r"this module's \(2\): nothing written; upgrade", mark), \
            a.errlog_since(mark)
    finally:
        redis.command('SET', f'{KEY}:format', '2')
    assert a.post_msg('u', 'format ok again')[0]


def test_resume_on_the_other_node(nodes):
    a, b = nodes
    sub = a.subscriber('h2c', 'ndjson', since=a.h2chat_status()['H2ChatLastId'])
    assert sub.wait_headers() == 200
    first = [a.post_msg('ann', f'seen on a {i}')[0] for i in range(3)]
    sub.wait_for(3)
    assert ids_of(sub) == first
    last = sub.last_id
    sub.close()
    later = [b.post_msg('bob', f'missed {i}')[0] for i in range(2)]
    later += [a.post_msg('ann', f'missed {i}')[0] for i in range(2)]
    for how in ('since', 'last_event_id'):
        kw = {how: last}
        again = b.subscriber('h2c', 'sse' if how == 'last_event_id' else 'ndjson', **kw)
        assert again.wait_headers() == 200
        again.wait_for(len(later), 10)
        time.sleep(0.3)  # nothing more may come
        assert ids_of(again) == later, again.summary()
        again.close()


def test_reader_takes_over_when_its_child_dies(nodes):
    """kill -9 of the child that runs the reader: once httpd has reaped it,
    another child (a sibling, or the one httpd starts in its place) claims
    the reader and delivery on that node goes on.

    This test used to be skipped: a child sometimes segfaulted in
    mod_mpm_event (apr_os_sock_get) when the nodes stopped. That is httpd's
    ungraceful stop path (close_worker_sockets() on sockets whose ending
    connections free them), not this kill: with `apache2 -k stop` it shows
    on node b too, which nothing kills. The harness stops with
    graceful-stop, which never takes that path; a crash still fails the
    test (conftest's no_crash) and the fixture."""
    a, b = nodes
    reader = a.h2chat_status()['H2ChatRedisReader']
    assert reader in a.children()
    a.expected_kills.add(reader)
    os.kill(reader, signal.SIGKILL)
    assert env.wait_until(
        lambda: a.h2chat_status()['H2ChatRedisReader'] not in (0, reader), 10), \
        a.h2chat_status()
    sub = a.subscriber('h2c', 'ndjson', since=a.h2chat_status()['H2ChatLastId'])
    assert sub.wait_headers() == 200
    mid, _ = b.post_msg('bob', 'after the reader died')
    assert [m['id'] for m in sub.wait_for(1, 10)] == [mid], sub.summary()
    assert a.h2chat_status()['H2ChatRedis'] == 'up'


def test_redis_away_503_then_catch_up(nodes, redis):
    a, b = nodes
    start = max(a.h2chat_status()['H2ChatLastId'], b.h2chat_status()['H2ChatLastId'])
    subs = [n.subscriber(t, 'ndjson', since=start) for n in nodes for t in ('h2c', 'h1')]
    for s in subs:
        assert s.wait_headers() == 200
    accepted = [a.post_msg('ann', 'before')[0], b.post_msg('bob', 'before')[0]]

    redis.stop(save=True)  # SHUTDOWN SAVE: it comes back with its data
    t_down = time.monotonic()
    refused = 0
    i = 0
    while time.monotonic() - t_down < 5:
        node = nodes[i % 2]
        t0 = time.monotonic()
        r = node.post({'user': 'carl', 'text': f'while down {i}'})
        took = time.monotonic() - t0
        assert took < 2, f'POST took {took:.2f}s while Redis was down'
        if r.status == 201:  # only possible before the shutdown took effect
            accepted.append(r.json()['id'])
        else:
            env.assert_json_error(r, 503)
            refused += 1
        i += 1
        time.sleep(0.2)
    assert refused >= 5
    for n in nodes:
        assert env.wait_until(lambda: n.h2chat_status()['H2ChatRedis'] == 'down', 5)
        assert 'H2C0040' in n.errlog_text()
    assert all(s.alive and not s.ended for s in subs), [s.summary() for s in subs]

    redis.start()
    for n in nodes:
        assert env.wait_until(lambda: n.h2chat_status()['H2ChatRedis'] == 'up', 10), \
            n.h2chat_status()
    accepted += [nodes[i % 2].post_msg('dan', f'after {i}')[0] for i in range(4)]
    assert accepted == sorted(accepted) and len(set(accepted)) == len(accepted)
    for s in subs:
        s.wait_for(len(accepted), 10)
        assert ids_of(s) == accepted, s.summary()
        assert s.alive and not s.ended
