"""H2ChatDirect over TLS: a virtual host that says `H2ChatDirect /msgs`
itself has its h2 (ALPN) connections taken from httpd after mod_ssl's
handshake and served by the module's loop (through mod_ssl's filters),
beside the main TLS host where mod_http2 serves the same chat. Same bytes,
errors, resume, heartbeats, vanished clients, stuck readers, idle
connections and graceful restarts as the h2c loop (t/test_direct.py), and
thousands of TLS connections held by a few threads."""

import json
import re
import socket
import ssl
import subprocess
import time

import h2.config
import h2.connection
import h2.settings

import h2chat_env as env
from h2chat_rel import ResumingClient, graceful_rounds, stuck_reader_round

EXTRA_CONF = """
H2ChatMaxSubscribers 2500
H2ChatMaxSubscribersPerAddress off
Timeout 5
""" + env.fast_vhost('/msgs') + """
<Location /msgs>
    # the CORS test's page (POSTs without an Origin, as curl's, are not concerned)
    H2ChatAllowOrigin https://chat.example
    H2ChatHeartbeat 2
    H2ChatMaxMessageBytes 60000
    H2ChatSnapshot 3
</Location>
"""

FANOUT_SRC = env.REPO / 'bench' / 'h2c-fanout.c'


def fast(server, mode='ndjson', **kw):
    return server.subscriber('h2tls', mode, port=server.fast_port, **kw)


def fast_request(server, method='GET', path='/msgs', body=None, headers=None):
    return env.curl_request(server.port, server.fast_port, 'h2tls', method, path, body,
                            headers)


def direct_subscribers(server):
    return server.h2chat_status()['H2ChatDirectSubscribers']


def tls_socket(server, rcvbuf=None):
    sock = socket.socket()
    if rcvbuf:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
    sock.connect(('127.0.0.1', server.fast_port))
    return env.tls_h2(sock)


def h2_client(window=None):
    conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    conn.initiate_connection()
    if window:
        conn.update_settings({h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        conn.increment_flow_control_window(2 ** 30)
    return conn


def get_headers(conn, path='/msgs'):
    sid = conn.get_next_available_stream_id()
    conn.send_headers(sid, [(':method', 'GET'), (':path', path), (':scheme', 'https'),
                            (':authority', 'localhost')], end_stream=True)
    return sid


def test_same_messages_on_both_tls_paths(server):
    mark = server.errlog_mark()
    subs = [fast(server), fast(server, 'sse'), server.subscriber('h2tls', 'sse')]
    for s in subs:
        s.wait_headers()
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs]
    # the fast host's two are the loop's; the main TLS host's is mod_http2's
    assert env.wait_until(lambda: direct_subscribers(server) == 2, 5), \
        server.errlog_since(mark)
    assert server.wait_subscribers(3, timeout=5) == 3
    assert subs[0].headers['content-type'] == 'application/x-ndjson; charset=utf-8'
    assert subs[1].headers['content-type'] == 'text/event-stream'
    texts = [f't{i} ü €' for i in range(6)]
    for i, text in enumerate(texts):
        r = (fast_request(server, 'POST', body={'user': 't', 'text': text},
                          headers={'Content-Type': 'application/json'}) if i % 2 == 0
             else server.post({'user': 't', 'text': text}))
        assert r.status == 201, r
    got = [s.wait_for(len(texts), timeout=10) for s in subs]
    for s, msgs in zip(subs, got):
        assert [m['text'] for m in msgs] == texts, s.summary()
    for s in subs:
        s.close()
    # byte for byte: the loop's SSE over TLS is mod_http2's
    strip = lambda b: re.sub(rb': heartbeat\n\n|event: presence\ndata: [^\n]*\n\n', b'', b)
    assert strip(subs[1].body) == strip(subs[2].body)
    assert server.wait_subscribers(0, timeout=10) == 0
    log = server.errlog_since(mark)
    assert log.count('direct, 1 room') == 2, log


def test_errors(server):
    cases = [
        (lambda: fast_request(server, path='/elsewhere'), 404, 'H2C0025'),
        (lambda: fast_request(server, 'POST', body='not json',
                              headers={'Content-Type': 'application/json'}), 400, 'H2C0010'),
        (lambda: fast_request(server, 'POST', body={'user': 'x', 'text': 'y'},
                              headers={'Content-Type': 'text/plain'}), 415, 'H2C0012'),
        (lambda: fast_request(server, 'POST', body={'user': 'x', 'text': 'y' * 70000},
                              headers={'Content-Type': 'application/json'}), 413, 'H2C0011'),
        (lambda: fast_request(server, path='/msgs?since=abc'), 400, 'H2C0016'),
        (lambda: fast_request(server, 'PUT', body=b'{}',
                              headers={'Content-Type': 'application/json'}), 405, 'H2C0013'),
    ]
    for call, status, tag in cases:
        m = server.errlog_mark()
        r = call()
        env.assert_json_error(r, status)
        assert r.version == '2', r
        assert server.wait_errlog(rf'{tag}: .*{status}.*direct', m), \
            (tag, server.errlog_since(m))


def test_resume(server):
    ids = [server.post_msg('res', f'r{i}')[0] for i in range(5)]
    s1 = fast(server, since=ids[1])
    s2 = fast(server, 'sse', last_event_id=ids[3])
    s3 = fast(server, since=ids[-1] + 1000)  # from the future: reset + snapshot
    assert [m['id'] for m in s1.wait_for(3)] == ids[2:]
    assert [m['id'] for m in s2.wait_for(1)] == ids[4:]
    assert s3.wait_event(lambda e: e.get('type') == 'reset', 5), s3.summary()
    assert [m['id'] for m in s3.wait_for(3)] == ids[2:]
    for s in (s1, s2, s3):
        s.close()


def test_streams_share_one_connection(server):
    conn = env.H2Connection(server.fast_port, tls=True)
    try:
        sids = [conn.get('/msgs?since=0') for _ in range(3)]
        for sid in sids:
            assert conn.wait_status(sid) == 200
        text = ''.join(chr(0x41 + i % 26) for i in range(50000))  # many frames, records
        pid = conn.request('POST', '/msgs', {'content-type': 'application/json'},
                           json.dumps({'user': 'mux', 'text': 'one conn'}).encode())
        r = conn.response(pid)
        assert r.status == 201, r
        nid, _ = server.post_msg('mux', text)
        # and in: a body of many records, read by the loop past the core's
        # buffer (mod_h2chat_direct_tls.c, net_in reads the socket itself)
        pid = conn.request('POST', '/msgs', {'content-type': 'application/json'},
                           json.dumps({'user': 'mux-in', 'text': text[::-1]}).encode())
        r = conn.response(pid)
        assert r.status == 201, r
        in_id = json.loads(r.body)['id']
        for sid in sids:
            assert env.wait_until(
                lambda sid=sid: f'"id":{nid},'.encode() in conn.streams[sid]['data'] and
                text.encode() in conn.streams[sid]['data'] and
                f'"id":{in_id},'.encode() in conn.streams[sid]['data'] and
                text[::-1].encode() in conn.streams[sid]['data'], 5)
        conn.reset(sids[0])
        head = conn.request('HEAD', '/msgs')
        r = conn.response(head)
        assert r.status == 200 and r.body == b'', r
        assert not conn.closed
    finally:
        conn.close()
    assert server.wait_subscribers(0, timeout=10) == 0


def test_first_bytes_come_with_the_handshake(server):
    """The client's Finished, preface, SETTINGS and HEADERS in one send: httpd
    reads them with the handshake, so they sit in its buffers when the loop
    takes the connection, and epoll never tells; the loop reads at once."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(['h2'])
    inc, out = ssl.MemoryBIO(), ssl.MemoryBIO()
    tls = ctx.wrap_bio(inc, out, server_hostname='localhost')
    sock = socket.create_connection(('127.0.0.1', server.fast_port), timeout=5)
    try:
        while True:
            try:
                tls.do_handshake()
                break
            except ssl.SSLWantReadError:
                sock.sendall(out.read())
                chunk = sock.recv(65536)
                assert chunk
                inc.write(chunk)
        assert tls.selected_alpn_protocol() == 'h2'
        conn = h2_client()
        get_headers(conn)
        tls.write(conn.data_to_send())
        sock.sendall(out.read())  # Finished + the first records, one segment
        status = None
        while status is None:
            chunk = sock.recv(65536)  # times out (5 s) if the loop waits for epoll
            assert chunk
            inc.write(chunk)
            try:
                data = tls.read(65536)
            except ssl.SSLWantReadError:
                continue
            for ev in conn.receive_data(data):
                if type(ev).__name__ == 'ResponseReceived':
                    status = dict(ev.headers)[b':status']
        assert status == b'200'
    finally:
        sock.close()


def test_heartbeat(server):
    s = fast(server)
    assert s.wait_event(lambda e: e.get('type') == 'heartbeat', 6), s.summary()
    s.close()


def test_vanished_clients_are_counted_out(server):
    subs = [fast(server) for _ in range(6)]
    for s in subs:
        s.wait_headers()
    assert server.wait_subscribers(6, timeout=10) == 6
    for s in subs[:3]:
        s.kill()  # SIGKILL: FIN without close_notify
    conn = env.H2Connection(server.fast_port, tls=True)
    assert conn.wait_status(conn.get('/msgs')) == 200
    conn.abort()  # RST
    assert server.wait_subscribers(3, timeout=5) == 3
    for s in subs[3:]:
        s.close()
    assert server.wait_subscribers(0, timeout=5) == 0


def test_stuck_tls_reader_is_dropped_others_go_on(server):
    """A TLS client that stops reading: its records wait in the loop's buffer
    (never in httpd's core filter, which would block on FLUSH) while the loop
    serves everyone else; after `Timeout` (5 s) it is dropped (H2C0024)."""
    mark = server.errlog_mark()
    healthy = fast(server)
    healthy.wait_headers()
    sock = tls_socket(server, rcvbuf=4096)
    conn = h2_client(window=2 ** 31 - 1)
    get_headers(conn)
    sock.sendall(conn.data_to_send())
    try:
        stuck_reader_round(server, healthy, mark)
    finally:
        sock.close()
        healthy.close()


def test_keyupdate_then_stuck_reader_is_dropped_others_go_on(server, tmp_path):
    """A TLS 1.3 client that asks for new keys (KeyUpdate, update_requested:
    the server must answer with one of its own) and then stops reading
    (openssl s_client, its output never read): mod_ssl's KeyUpdate is one
    more record in the loop's buffer; the loop goes on serving the others
    and drops the staller after `Timeout`."""
    mark = server.errlog_mark()
    healthy = fast(server)
    healthy.wait_headers()
    conn = h2_client(window=2 ** 31 - 1)
    get_headers(conn)
    err = tmp_path / 's_client.err'
    with open(err, 'wb') as errf:
        p = subprocess.Popen(['openssl', 's_client', '-connect', f'127.0.0.1:{server.fast_port}',
                              '-servername', 'localhost', '-alpn', 'h2', '-tls1_3'],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errf)
    try:
        # its first bytes start with "P" (the preface): not an s_client command
        p.stdin.write(conn.data_to_send())
        p.stdin.flush()
        assert env.wait_until(lambda: direct_subscribers(server) == 2, 10), \
            (err.read_text(errors='replace'), server.errlog_since(mark))
        p.stdin.write(b'K\n')  # a line of its own: s_client's key update command
        p.stdin.flush()
        assert env.wait_until(lambda: b'KEYUPDATE' in err.read_bytes(), 5), err.read_bytes()
        stuck_reader_round(server, healthy, mark)
    finally:
        p.kill()
        p.wait(5)
        healthy.close()


def test_idle_tls_connection_is_closed(server):
    sock = tls_socket(server)
    conn = h2_client()
    sock.sendall(conn.data_to_send())
    sock.settimeout(15)
    t0 = time.monotonic()
    try:
        while True:
            try:
                if not sock.recv(4096):
                    break
            except (ssl.SSLError, ConnectionError):
                break
    finally:
        sock.close()
    assert 4 <= time.monotonic() - t0 <= 10, time.monotonic() - t0


def test_http11_on_the_fast_host_is_httpds(server):
    mark = server.errlog_mark()
    s = server.subscriber('h1tls', port=server.fast_port)
    s.wait_headers()
    assert s.status == 200
    nid, _ = server.post_msg('h1', 'over http/1.1')
    assert s.wait_event(lambda e: e.get('id') == nid, 5), s.summary()
    s.close()
    assert 'direct' not in server.errlog_since(mark)


def test_graceful_restart_loses_nothing(server):
    class FastClient(ResumingClient):
        def open_stream(self, **resume):
            return self.server.subscriber(self.transport, self.mode, max_time=self.max_time,
                                          port=self.server.fast_port, **resume)

    graceful_rounds(server, lambda mode, how: FastClient(server, 'h2tls', mode, how, None))
    # the old children let go of their TLS connections and left
    assert env.wait_until(lambda: len(server.children()) <= 4, 15), server.children()


def fanout_binary():
    out = env.RUN_DIR / 'h2c-fanout'
    if not out.exists() or out.stat().st_mtime < FANOUT_SRC.stat().st_mtime:
        subprocess.run(['cc', '-O2', '-o', str(out), str(FANOUT_SRC), '-lnghttp2', '-lssl',
                        '-lcrypto', '-lm'], check=True)
    return out


def test_two_thousand_tls_connections(server):
    """2,000 browsers-like clients (one TLS connection each) held by the
    loops of three children: the MPM accepts them all (suspended connections
    count against AsyncRequestWorkerFactor), every one gets every message."""
    res = subprocess.run([str(fanout_binary()), '--url',
                          f'https://127.0.0.1:{server.fast_port}/msgs', '-n', '2000', '-k', '5',
                          '--rate', '5', '--timeout', '90', '--json-only',
                          '--first-line-timeout', '30'],
                         capture_output=True, text=True, timeout=120)
    out = json.loads(res.stdout.strip().splitlines()[-1])
    assert out['ready'] == 2000, out
    assert out['lost'] == 0 and out['dups'] == 0 and out['out_of_order'] == 0, out
    assert server.wait_subscribers(0, timeout=15) == 0


def test_cors_for_listed_origins_only(server):
    """A page on another origin reads the stream with its cookies only when
    H2ChatAllowOrigin lists that origin exactly; a preflight is answered
    before any auth (it carries no credentials). The same on the loop and
    on the handler's path (mod_http2)."""
    page = 'https://chat.example'
    for port in (server.fast_port, server.tls_port):
        r = env.curl_request(server.port, port, 'h2tls', 'OPTIONS', '/msgs',
                             headers={'Origin': page, 'Access-Control-Request-Method': 'GET'})
        assert r.status == 204, (port, r)
        assert r.headers.get('access-control-allow-origin') == page, (port, r.headers)
        assert r.headers.get('access-control-allow-credentials') == 'true'
        assert 'GET' in r.headers.get('access-control-allow-methods', '')
        r = env.curl_request(server.port, port, 'h2tls', 'OPTIONS', '/msgs',
                             headers={'Origin': 'https://evil.example',
                                      'Access-Control-Request-Method': 'GET'})
        assert r.status == 204 and 'access-control-allow-origin' not in r.headers, r
        for origin, allowed in ((page, True), ('https://evil.example', False)):
            r = env.curl_request(server.port, port, 'h2tls', 'GET',
                                 '/msgs?presence', headers={'Origin': origin})
            assert r.status == 200, r
            assert (r.headers.get('access-control-allow-origin') == origin) == allowed, r
            if allowed:
                assert 'x-h2chat-heartbeat' in r.headers['access-control-expose-headers']
