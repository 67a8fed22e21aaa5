"""H2ChatDirect: h2c (prior knowledge) connections to a server with
`H2ChatDirect /msgs` are served by the module's own HTTP/2 loop, beside
streams that go through mod_http2 (TLS) and HTTP/1.1 on the same server.
Both kinds get the same messages, in the same order, with the same bytes;
errors, resume, caps, heartbeats, stalled readers, vanished clients and
graceful restarts behave as on the handler's path."""

import json
import re
import socket
import time

import pytest

import h2chat_env as env
from h2chat_rel import ResumingClient, graceful_rounds, stuck_reader_round

EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribers 40
# the cap test holds 40 from 127.0.0.1 (t/test_peraddr.py: per address)
H2ChatMaxSubscribersPerAddress off
Timeout 5
<Location /msgs>
    H2ChatHeartbeat 2
    H2ChatMaxMessageBytes 60000
    H2ChatSnapshot 3
</Location>
<Location /limited>
    H2Chat On
    H2ChatRateLimit 1 2
    H2ChatAllowOrigin https://chat.example
</Location>
"""

DIRECT_START = re.compile(r'H2C0020: subscriber starts .*direct')


def post_h2c(server, obj, path='/msgs', headers=None, content_type='application/json'):
    return server.post(obj, transport='h2c', path=path, headers=headers,
                       content_type=content_type)


def direct_starts(server, mark):
    return len(DIRECT_START.findall(server.errlog_since(mark)))


def test_same_messages_on_both_paths(server):
    mark = server.errlog_mark()
    specs = [('h2c', 'ndjson'), ('h2c', 'sse'), ('h2tls', 'ndjson'), ('h1', 'sse'),
             ('h1', 'ndjson')]
    subs = server.subscribers(specs)
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs]
    assert server.wait_subscribers(len(subs), timeout=10) == len(subs)
    # the two h2c streams are the loop's, the others the handler's
    assert env.wait_until(lambda: direct_starts(server, mark) == 2, 5), \
        server.errlog_since(mark)
    st = server.h2chat_status()
    assert st['H2ChatDirectSubscribers'] == 2 and st['H2ChatDirectConnections'] >= 2, st
    assert subs[0].headers['content-type'] == 'application/x-ndjson; charset=utf-8'
    assert subs[1].headers['content-type'] == 'text/event-stream'
    assert subs[0].headers.get('x-h2chat-heartbeat') == '2'

    texts = [f'm{i} ü €' for i in range(6)]
    for i, text in enumerate(texts):
        r = (post_h2c(server, {'user': 'd', 'text': text}) if i % 2 == 0
             else server.post({'user': 'd', 'text': text}))
        assert r.status == 201, r
        assert json.loads(r.body)['id'] > 0
    got = [s.wait_for(len(texts), timeout=10) for s in subs]
    for s, msgs in zip(subs, got):
        assert [m['text'] for m in msgs] == texts, s.summary()
        assert [m['id'] for m in msgs] == [m['id'] for m in got[0]], s.summary()
    # byte for byte: the loop's SSE stream is the handler's SSE stream
    # (heartbeat comments and presence counts aside: they follow timing)
    for s in subs:
        s.close()
    strip = lambda b: re.sub(rb': heartbeat\n\n|event: presence\ndata: [^\n]*\n\n', b'', b)
    assert strip(subs[1].body) == strip(subs[3].body)
    assert server.wait_subscribers(0, timeout=10) == 0
    assert server.h2chat_status()['H2ChatDirectSubscribers'] == 0


def test_errors(server):
    before = server.h2chat_status()
    mark = server.errlog_mark()
    cases = [
        (lambda: server.get('/elsewhere', transport='h2c'), 404, 'H2C0025'),
        (lambda: post_h2c(server, 'not json'), 400, 'H2C0010'),
        (lambda: post_h2c(server, {'user': 'x'}), 400, 'H2C0010'),
        (lambda: post_h2c(server, {'user': 'x', 'text': 'y'}, content_type='text/plain'),
         415, 'H2C0012'),
        (lambda: post_h2c(server, {'user': 'x', 'text': 'y' * 70000}), 413, 'H2C0011'),
        (lambda: server.get('/msgs?since=abc', transport='h2c'), 400, 'H2C0016'),
        (lambda: env.curl_request(server.port, server.tls_port, 'h2c', 'PUT', '/msgs', b'{}',
                                  {'Content-Type': 'application/json'}), 405, 'H2C0013'),
        # the loop runs no httpd auth: no user, and H2ChatAnonymousDelete is off
        (lambda: env.curl_request(server.port, server.tls_port, 'h2c', 'DELETE', '/msgs?id=1'),
         403, 'H2C0060'),
    ]
    for call, status, tag in cases:
        m = server.errlog_mark()
        r = call()
        env.assert_json_error(r, status)
        if status == 405:
            assert r.headers.get('allow') == 'GET, HEAD, POST, DELETE', r.headers
        assert server.wait_errlog(rf'{tag}: .*{status}', m), (tag, server.errlog_since(m))
    after = server.h2chat_status()
    assert after['H2ChatRefusedInvalid'] - before['H2ChatRefusedInvalid'] == 3
    assert after['H2ChatRefusedMediaType'] - before['H2ChatRefusedMediaType'] == 1
    assert after['H2ChatRefusedTooLarge'] - before['H2ChatRefusedTooLarge'] == 1
    assert after['H2ChatRefusedMethod'] - before['H2ChatRefusedMethod'] == 1
    assert 'direct' in server.errlog_since(mark)


def test_rate_and_origin_of_the_location(server):
    # a second direct path would need its own server: the listener serves
    # /msgs only, so /limited answers 404 there ...
    r = post_h2c(server, {'user': 'r', 'text': 'x'}, path='/limited')
    assert r.status == 404
    # ... and the /msgs location's settings are the ones applied (no limit)
    for i in range(5):
        assert post_h2c(server, {'user': 'r', 'text': f'fast {i}'}).status == 201


def test_resume_and_reset(server):
    ids = [server.post_msg('res', f'r{i}')[0] for i in range(5)]
    s1 = server.subscriber('h2c', since=ids[1])
    s2 = server.subscriber('h2c', 'sse', last_event_id=ids[3])
    s3 = server.subscriber('h2c', since=ids[-1] + 1000)  # from the future
    assert [m['id'] for m in s1.wait_for(3)] == ids[2:]
    assert [m['id'] for m in s2.wait_for(1)] == ids[4:]
    assert s3.wait_event(lambda e: e.get('type') == 'reset', 5), s3.summary()
    # the snapshot (H2ChatSnapshot 3) after the reset line
    assert [m['id'] for m in s3.wait_for(3)] == ids[2:]
    nid, _ = server.post_msg('res', 'after')
    for s in (s1, s2, s3):
        assert s.wait_for(len(s.messages) + 1)[-1]['id'] == nid
        s.close()


def test_streams_share_one_connection(server):
    conn = env.H2Connection(server.port)
    try:
        sids = [conn.get('/msgs?since=0') for _ in range(3)]
        for sid in sids:
            assert conn.wait_status(sid) == 200
        pid = conn.request('POST', '/msgs', {'content-type': 'application/json'},
                           json.dumps({'user': 'mux', 'text': 'one conn'}).encode())
        r = conn.response(pid)
        assert r.status == 201, r
        new_id = json.loads(r.body)['id']
        for sid in sids:
            assert env.wait_until(
                lambda sid=sid: f'"id":{new_id},'.encode() in conn.streams[sid]['data'], 5)
        # a client reset of one stream leaves the others
        conn.reset(sids[0])
        nid, _ = server.post_msg('mux', 'two')
        for sid in sids[1:]:
            assert env.wait_until(
                lambda sid=sid: f'"id":{nid},'.encode() in conn.streams[sid]['data'], 5)
    finally:
        conn.close()
    assert server.wait_subscribers(0, timeout=10) == 0


def test_big_message_is_split_across_frames(server):
    s = server.subscriber('h2c')
    s.wait_headers()
    text = ''.join(chr(0x41 + i % 26) for i in range(50000))
    nid, _ = server.post_msg('big', text)
    assert s.wait_event(lambda e: e.get('id') == nid, 10), s.summary()
    assert [m for m in s.messages if m['id'] == nid][0]['text'] == text
    assert not s.bad_lines
    s.close()


def test_heartbeat(server):
    s = server.subscriber('h2c')
    assert s.wait_event(lambda e: e.get('type') == 'heartbeat', 6), s.summary()
    s.close()


def test_vanished_clients_are_counted_out(server):
    subs = [server.subscriber('h2c') for _ in range(10)]
    for s in subs:
        s.wait_headers()
    assert server.wait_subscribers(10, timeout=10) == 10
    for s in subs[:5]:
        s.kill()  # SIGKILL: the kernel closes the socket, no GOAWAY
    conn = env.H2Connection(server.port)
    sid = conn.get('/msgs')
    assert conn.wait_status(sid) == 200
    conn.abort()  # RST
    assert server.wait_subscribers(5, timeout=5) == 5
    for s in subs[5:]:
        s.close()
    assert server.wait_subscribers(0, timeout=5) == 0


def test_cap(server):
    held = [server.subscriber('h2c') for _ in range(40)]
    for s in held:
        s.wait_headers()
    assert all(s.status == 200 for s in held)
    mark = server.errlog_mark()
    extra = server.subscriber('h2c')
    assert extra.wait_end(10)
    assert extra.status == 503, extra.summary()
    assert extra.headers.get('retry-after', '').isdigit()
    assert json.loads(extra.body)['error']
    assert server.wait_errlog('H2C0015', mark)
    for s in held:
        s.close()
    assert server.wait_subscribers(0, timeout=10) == 0


def test_stuck_reader_is_dropped_others_go_on(server):
    """A client that stops reading: its bytes wait in its connection's
    buffer while the loop serves everyone else at once; after `Timeout`
    (5 s) without an acknowledged byte it is dropped (H2C0024)."""
    mark = server.errlog_mark()
    healthy = server.subscriber('h2c')
    healthy.wait_headers()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(('127.0.0.1', server.port))
    import h2.config
    import h2.connection
    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2c.initiate_connection()
    h2c.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 2 ** 31 - 1})
    h2c.increment_flow_control_window(2 ** 30)
    sid = h2c.get_next_available_stream_id()
    h2c.send_headers(sid, [(':method', 'GET'), (':path', '/msgs'), (':scheme', 'http'),
                           (':authority', 'localhost')], end_stream=True)
    sock.sendall(h2c.data_to_send())
    try:
        stuck_reader_round(server, healthy, mark)
        assert server.h2chat_status()['H2ChatDroppedStalled'] >= 1
    finally:
        sock.close()
        healthy.close()


def test_idle_connection_is_closed(server):
    sock = socket.create_connection(('127.0.0.1', server.port))
    sock.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + bytes.fromhex('000000040000000000'))
    sock.settimeout(15)
    t0 = time.monotonic()
    data = b''
    try:
        while True:
            chunk = sock.recv(4096)
            if not chunk:
                break
            data += chunk
    finally:
        sock.close()
    # `Timeout 5` without a stream: closed after 5 s (+ the 2-s look)
    assert 4 <= time.monotonic() - t0 <= 10, time.monotonic() - t0


def test_graceful_restart_loses_nothing(server):
    graceful_rounds(server, lambda mode, how: ResumingClient(server, 'h2c', mode, how, None))


def test_head(server):
    conn = env.H2Connection(server.port)
    try:
        ok = conn.request('HEAD', '/msgs')
        bad = conn.request('HEAD', '/msgs?since=abc')
        r = conn.response(ok)
        assert r.status == 200 and r.body == b'', r
        assert r.headers.get('content-type') == 'application/x-ndjson; charset=utf-8'
        r = conn.response(bad)
        assert r.status == 400 and r.body == b'', r
        # the connection is fine after both
        sid = conn.get('/msgs')
        assert conn.wait_status(sid) == 200
        assert not conn.closed
    finally:
        conn.close()


def test_answered_before_the_body(server):
    """Only a POST to the chat waits for its body; over the limit by its
    Content-Length it is refused at once, and anything else too."""
    conn = env.H2Connection(server.port)
    try:
        body = b'{' * 70000  # over H2ChatMaxMessageBytes; more than one window
        for path, status in [('/other', 404), ('/msgs', 413)]:
            sid = conn.request('POST', path, {'content-type': 'application/json'}, body)
            r = conn.response(sid, timeout=4)
            assert r.status == status, (path, r)
        sid = conn.request('PUT', '/msgs', {'content-type': 'application/json'}, body)
        assert conn.response(sid, timeout=4).status == 405
        sid = conn.get('/msgs')
        assert conn.wait_status(sid) == 200
    finally:
        conn.close()


def test_window_starved_stream_is_reset(server):
    """A client that never opens its flow-control window: the stream has
    messages it cannot send. It holds a subscriber slot only until
    `Timeout` (5 s) passes without any of it moving."""
    import h2.config
    import h2.connection
    import h2.events
    import h2.settings
    mark = server.errlog_mark()
    sock = socket.create_connection(('127.0.0.1', server.port))
    h2c = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    h2c.local_settings = h2.settings.Settings(
        client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: 0})
    h2c.initiate_connection()
    sid = h2c.get_next_available_stream_id()
    h2c.send_headers(sid, [(':method', 'GET'), (':path', '/msgs?since=0'), (':scheme', 'http'),
                           (':authority', 'localhost')], end_stream=True)
    sock.sendall(h2c.data_to_send())
    try:
        assert server.wait_subscribers(1, timeout=5) == 1
        server.post_msg('starve', 'x')
        t0 = time.monotonic()
        sock.settimeout(15)
        reset = None
        while reset is None and time.monotonic() - t0 < 15:
            data = sock.recv(65536)
            if not data:
                break
            for ev in h2c.receive_data(data):
                if isinstance(ev, h2.events.StreamReset) and ev.stream_id == sid:
                    reset = time.monotonic() - t0
            out = h2c.data_to_send()
            if out:
                sock.sendall(out)
        assert reset is not None and 4 <= reset <= 9, reset
        assert server.wait_subscribers(0, timeout=3) == 0
        assert server.wait_errlog(r'H2C0024: stream \d+ of client .* reset', mark)
    finally:
        sock.close()
