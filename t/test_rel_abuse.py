"""Reliability 7: abuse of the stream side.

- Held GETs from one address up to H2ChatMaxSubscribers (40), then more:
  the extra ones get 503 + Retry-After + a JSON error over every transport,
  while the page (GET / -> htdocs/index.html) and POSTs keep working and
  the 40 keep receiving.
- since= and Last-Event-ID values: garbage, negative, huge, "1e5", " 1",
  "0x10", empty, in the future. Each gets a clear answer: 400 with a JSON
  error, or 200 with the documented `reset` line and then the snapshot (an
  id ahead of the server), or an ordinary resume.
- Very long query strings and header values, and too many headers: answered
  (by Apache's own limits, 414 / 400 / 431, or a reset stream on h2), never
  a hang or a crash; the server works afterwards."""

import http.client
import json
import time

import pytest

import h2chat_env as env
import h2chat_rel as rel

CAP = 40
SNAPSHOT = 5
EXTRA_CONF = f"""
H2ChatMaxSubscribers {CAP}
# the server-wide cap, filled from one address (t/test_peraddr.py: per address)
H2ChatMaxSubscribersPerAddress off
<Location /msgs>
    H2ChatSnapshot {SNAPSHOT}
</Location>
"""
SPECS = [('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse'), ('h1', 'ndjson'),
         ('h2c', 'sse'), ('h2tls', 'sse')]
ID_MAX = 2 ** 53 - 1


def check_error(status, headers, body, code):
    assert status == code, (status, headers, body[:300])
    ctype = headers.get('content-type', '')
    assert ctype.split(';')[0].strip() == 'application/json', (ctype, body[:200])
    obj = json.loads(body.decode('utf-8'))
    assert isinstance(obj.get('error'), str) and obj['error'], obj


# --------------------------------------------------------------------------
# Probes: one GET on its own connection; a held 200 is read for `hold` s.

def parse_lines(data, sse):
    events = []
    if sse:
        for block in data.decode('utf-8', 'replace').split('\n\n'):
            fields = dict(line.split(': ', 1) for line in block.split('\n')
                          if ': ' in line and not line.startswith(':'))
            if 'data' in fields:
                obj = json.loads(fields['data'])
                obj.setdefault('type', fields.get('event', 'message'))
                events.append(obj)
        return events
    return [json.loads(line) for line in data.decode('utf-8').splitlines() if line.strip()]


def probe_h1(server, path, headers=None, hold=1.0, raw_headers=None):
    """-> (status, headers, body bytes, events)."""
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        conn.putrequest('GET', path, skip_accept_encoding=True)
        for k, v in (headers or {}).items():
            conn.putheader(k, v)
        for line in raw_headers or []:
            conn._output(line)
        conn.endheaders()
        resp = conn.getresponse()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        if resp.status != 200:
            return resp.status, hdrs, resp.read(), []
        data = b''
        conn.sock.settimeout(0.3)
        deadline = time.monotonic() + hold
        while time.monotonic() < deadline:
            try:
                line = resp.readline()
            except OSError:
                continue
            if not line:
                break
            data += line
        sse = hdrs.get('content-type', '').startswith('text/event-stream')
        # cut at the last complete line / event
        cut = data.rfind(b'\n\n' if sse else b'\n')
        return resp.status, hdrs, data, parse_lines(data[:cut + 1], sse)
    finally:
        conn.close()


def probe_h2(server, path, headers=None, hold=1.0, tls=False):
    """-> (status or 'reset' / 'closed', headers, body bytes, events)."""
    conn = env.H2Connection(server.tls_port if tls else server.port, tls=tls)
    try:
        sid = conn.get(path, headers)
        status = conn.wait_status(sid, 10)
        st = conn.streams[sid]
        if status is None:
            r = conn.response(sid, 10)
            return ('reset' if st['reset'] else 'closed' if conn.closed else None), {}, \
                str(conn.why).encode(), []
        if status != 200:
            r = conn.response(sid, 10)
            return r.status, r.headers, r.body, []
        time.sleep(hold)
        with conn.lock:
            data = st['data']
        sse = st['headers'].get('content-type', '').startswith('text/event-stream')
        cut = data.rfind(b'\n\n' if sse else b'\n')
        return status, st['headers'], data, parse_lines(data[:cut + 1], sse)
    finally:
        conn.close()


def probe(server, transport, path, headers=None, hold=1.0):
    if transport == 'h1':
        return probe_h1(server, path, headers, hold)
    return probe_h2(server, path, headers, hold, tls=transport == 'h2tls')


# --------------------------------------------------------------------------

def test_cap_from_one_address(server):
    assert server.wait_subscribers(0, 5) == 0
    server.post_msg('ann', 'before the crowd')
    held = []
    for i in range(0, CAP, 10):
        held += server.subscribers([SPECS[k % len(SPECS)] for k in range(i, i + 10)])
    assert all(s.status == 200 for s in held), [s.summary() for s in held if s.status != 200]
    assert server.wait_subscribers(CAP) == CAP
    refused0 = server.h2chat_status()['H2ChatRefusedCap']

    # more of them: 503 + Retry-After + JSON, on every transport
    extra = [server.subscriber(t, m) for t, m in SPECS * 2]
    for s in extra:
        assert s.wait_end(10), f'refused stream still open: {s.summary()}'
        assert s.status == 503, s.summary()
        assert s.headers.get('retry-after', '').strip().isdigit(), s.headers
        check_error(s.status, s.headers, s.body, 503)
        assert s.messages == []
    # several refused streams on one h2 connection
    conn = env.H2Connection(server.port)
    try:
        sids = [conn.get('/msgs') for _ in range(4)]
        for sid in sids:
            r = conn.response(sid, 10)
            check_error(r.status, r.headers, r.body, 503)
            assert r.headers.get('retry-after', '').isdigit(), r.headers
    finally:
        conn.close()
    st = server.h2chat_status()
    assert st['H2ChatSubscribers'] == CAP, st
    assert st['H2ChatRefusedCap'] - refused0 == len(extra) + 4, st

    # the page and the POSTs keep working
    page = (env.HTDOCS / 'index.html').read_bytes()
    for transport in ('h1', 'h2c', 'h2tls'):
        r = server.get('/', transport=transport)
        assert r.status == 200 and r.body == page, (transport, r.status, r.body[:100])
    ids = [server.post_msg('ann', f'to the {CAP} via {t}', t)[0] for t in ('h1', 'h2c', 'h2tls')]
    for s in held:
        msgs = s.wait_for(len(ids) + 1)
        assert [m['id'] for m in msgs][-3:] == ids, s.summary()
    for s in held:
        s.close()
    assert server.wait_subscribers(0, 6) == 0, server.h2chat_status()


# (value, expected): 400, 'reset', or an int (resume after that id)
BAD = ['abc', '-1', '-0', '99999999999999999999', str(ID_MAX + 1), '1e5', '0x10', '', '1.5',
       '+1', '%201', '1%20', '%31', '\uff11', '1;2', '18446744073709551616',
       '0' * 30 + '1']


@pytest.fixture(scope='module')
def last(server):
    server.wait_subscribers(0, 6)
    for i in range(8):
        server.post_msg('resume', f'resume fodder {i}')
    return server.h2chat_status()['H2ChatLastId']


@pytest.mark.parametrize('transport', ['h1', 'h2c'])
@pytest.mark.parametrize('value', BAD)
def test_bad_since(server, last, transport, value):
    # non-ASCII goes percent-encoded (a request line is ASCII)
    q = ''.join(c if c.isascii() else ''.join('%%%02X' % b for b in c.encode('utf-8'))
                for c in value)
    status, hdrs, body, _ = probe(server, transport, f'/msgs?since={q}')
    rel.record('abuse_resume', **{f'since={q!r} / {transport}': status})
    check_error(status, hdrs, body, 400)


@pytest.mark.parametrize('transport', ['h1', 'h2c'])
@pytest.mark.parametrize('value', [v for v in BAD if '%' not in v and v.isascii()])
def test_bad_last_event_id(server, last, transport, value):
    status, hdrs, body, _ = probe(server, transport, '/msgs', {'Last-Event-ID': value})
    rel.record('abuse_resume', **{f'Last-Event-ID {value!r} / {transport}': status})
    check_error(status, hdrs, body, 400)


@pytest.mark.parametrize('transport', ['h1', 'h2c', 'h2tls'])
@pytest.mark.parametrize('how', ['since', 'last-event-id'])
@pytest.mark.parametrize('ahead', [1, 'max'])
def test_future_id_reset_then_snapshot(server, last, transport, how, ahead):
    """An id ahead of the server: 200, a reset line with the real last id,
    then the snapshot (H2ChatSnapshot messages), then live ones."""
    since = ID_MAX if ahead == 'max' else last + ahead
    path, hdrs = ('/msgs?since=%d' % since, None) if how == 'since' else \
        ('/msgs', {'Last-Event-ID': str(since)})
    status, _, body, events = probe(server, transport, path, hdrs, hold=0.5)
    assert status == 200, (status, body[:200])
    assert events and events[0].get('type') == 'reset', events[:2]
    assert events[0].get('last_id') == last, events[0]
    ids = [e['id'] for e in events if e.get('type') == 'message']
    assert ids == list(range(last - SNAPSHOT + 1, last + 1)), events


def test_header_whitespace_and_repeats(server, last):
    """' 1' as a header: HTTP strips the whitespace -> resume after 1.
    since= wins over Last-Event-ID; of several since=, the last one."""
    status, _, _, ev = probe_h1(server, '/msgs', raw_headers=[b'Last-Event-ID:  1 '])
    assert status == 200 and [e['id'] for e in ev if e.get('type') == 'message'] == list(range(2, last + 1)), ev
    status, _, _, ev = probe_h1(server, f'/msgs?since={last - 2}', {'Last-Event-ID': '1'})
    assert status == 200 and [e['id'] for e in ev if e.get('type') == 'message'] == [last - 1, last], ev
    status, _, _, ev = probe_h1(server, f'/msgs?since=1&since={last - 1}')
    assert status == 200 and [e['id'] for e in ev if e.get('type') == 'message'] == [last], ev
    status, hdrs, body, _ = probe_h1(server, f'/msgs?since={last - 1}&since=x')
    check_error(status, hdrs, body, 400)
    # other parameters are ignored; a long but legal query string is fine
    status, _, _, ev = probe_h1(server, f'/msgs?a=1&{"x" * 7000}=&since={last - 1}&b')
    assert status == 200 and [e['id'] for e in ev if e.get('type') == 'message'] == [last], ev


LONG = [
    ('query 10k', {'path': '/msgs?since=1&pad=' + 'x' * 10000}),
    ('query 100k', {'path': '/msgs?' + 'since=1&' * 12000}),
    ('since 8k digits', {'path': '/msgs?since=' + '1' * 8000}),
    ('Last-Event-ID 8k digits', {'headers': {'Last-Event-ID': '1' * 8000}}),
    ('Last-Event-ID 20k', {'headers': {'Last-Event-ID': '9' * 20000}}),
    ('header 60k', {'headers': {'X-Pad': 'y' * 60000}}),
    ('150 headers', {'headers': {f'X-H{i}': 'v' for i in range(150)}}),
]


@pytest.mark.parametrize('transport', ['h1', 'h2c', 'h2tls'])
@pytest.mark.parametrize('name,req', LONG, ids=[n for n, _ in LONG])
def test_long_requests_answered(server, last, transport, name, req):
    """Answered within seconds: 4xx (Apache's limits or the module's 400),
    or the h2 stream / connection reset; 200 only where the request is
    legal. Never a hang."""
    t0 = time.monotonic()
    try:
        status, hdrs, body, _ = probe(server, transport, req.get('path', '/msgs'),
                                      req.get('headers'), hold=0.3)
    except (ConnectionError, http.client.RemoteDisconnected) as e:
        status, hdrs, body = f'closed ({e.__class__.__name__})', {}, b''
    took = time.monotonic() - t0
    rel.record('abuse_long', **{f'{name} / {transport}': f'{status} in {took:.2f}s'})
    assert took < 8, f'{name} over {transport}: no answer for {took:.1f}s'
    assert status in (400, 413, 414, 431, 'reset', 'closed') or \
        str(status).startswith('closed') or (status == 200 and name == 'query 10k'), \
        (name, transport, status, body[:200])
    if status == 400 and name.startswith(('since', 'Last-Event-ID 8k')):
        check_error(status, hdrs, body, 400)  # the module's own answer


def test_still_serving(server, last):
    s = server.subscriber('h2c', 'ndjson', since=last)
    assert s.wait_headers() == 200, s.summary()
    new_id, _ = server.post_msg('ann', 'after the abuse')
    assert [m['id'] for m in s.wait_for(1)] == [new_id], s.summary()
    s.close()
    assert server.wait_subscribers(0, 6) == 0
