"""Every refusal, the same on both transports.

The chat endpoint has two transports: the handler (requests through httpd:
h2 over TLS via mod_http2, and HTTP/1.1) and the direct loop (`H2ChatDirect`:
h2c prior-knowledge connections served by the module's own nghttp2 loop). A
rule about requests must give the same decision whatever carried the
request (STYLE.md: "a rule about requests lives once, in a pure unit, and
each transport only renders its decision"). This file is the acceptance
test for that: one table of refusals (every 400 reason, 405, 413, 415, 403,
429, 503 for the cap and for the per-address cap; a header field sent
twice; which refusal wins when a
request has several faults), each sent over the direct loop (h2c) and over
the handler (h2 over TLS, HTTP/1.1), and for each the same status,
`Retry-After` and `Allow` (present or not, and value), content type, JSON
body `{"error": ...}` (same text) and one error-log line with the case's
H2C00xx tag. Then content negotiation: an `Accept` that asks for
text/event-stream gets SSE on every transport, whatever its case (media
types are case-insensitive, RFC 9110 8.3.1) and when it comes as two
fields (RFC 9110 5.3).

Written before the refactor that makes both transports call one request
policy unit, against the behaviour wanted: cases where the transports
differ today fail, and are meant to until the refactor (no xfail).

One server: `H2ChatDirect /msgs` takes the h2c connections of the main
port; the TLS port (h2 through mod_http2) and HTTP/1.1 on the main port go
to the handler. The loop applies the settings of the <Location> that
covers its path, so every limit is on <Location /msgs>.

Every request comes from its own loopback source address (127.0.x.y), with
a hash bucket of the rate table (h2c_rate.c: FNV-1a of the address modulo
16384) that no other address of this module uses: the rate limit sits
before the size and body checks, and with a burst of 1 every request from a
fresh address passes it; the 429 case spends its address's one token
first. Addresses also tie each error-log line to its request. Held streams
that fill the caps come from their own addresses (HOLDERS), in per-address
buckets (h2c_seg.c: FNV-1a modulo 4096) that no case's address uses, so
that only the case's own address is ever at its per-address limit.

Test ids: test_refusal[<case>-<transport>] checks one transport against
the table; test_same_across_transports[<case>] shows, when transports
drift, what differs between them; test_accept_negotiation[<accept>-
<transport>] the content type of a held stream. Transports: direct-h2c,
handler-h2tls, handler-h1.
"""

import http.client
import json
import re
import socket
import subprocess
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Optional

import pytest

import h2chat_env as env

MAX_BYTES = 256     # H2ChatMaxMessageBytes of /msgs
CAP = 6             # H2ChatMaxSubscribers
PER_ADDR = 3        # H2ChatMaxSubscribersPerAddress
RATE_RETRY = '10'   # H2ChatRateLimit 0.1 1: one POST per 10 s, burst 1
ORIGIN = 'https://chat.example'

EXTRA_CONF = f"""
H2ChatDirect /msgs
H2ChatMaxSubscribers {CAP}
H2ChatMaxSubscribersPerAddress {PER_ADDR}
<Location /msgs>
    H2ChatMaxMessageBytes {MAX_BYTES}
    H2ChatRateLimit 0.1 1
    H2ChatAllowOrigin {ORIGIN}
</Location>
"""

# transport id -> the h2chat_env transport that reaches it
TRANSPORTS = {'direct-h2c': 'h2c', 'handler-h2tls': 'h2tls', 'handler-h1': 'h1'}
HTTP_VERSION = {'direct-h2c': '2', 'handler-h2tls': '2', 'handler-h1': '1.1'}

# the stable messages (src/h2c_json.c, src/mod_h2chat_publish.c,
# src/mod_h2chat_subscribe.c, mod_h2chat.c)
CTRL = 'control characters other than newline and tab are not allowed'
BAD_RESUME = ('since / Last-Event-ID must be a message id '
              '(decimal digits, at most 2^53-1)')
NOT_UTF8 = 'body is not valid UTF-8'
MALFORMED = 'malformed JSON: '  # + jansson's own text: a prefix


# --------------------------------------------------------------------------
# Source addresses: one per request, each in its own rate-table bucket.

def _fnv1a(s):
    h = 2166136261
    for b in s.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h


def _addresses():
    taken = {_fnv1a('127.0.0.1') % 16384}
    for a in range(1, 255):
        for b in range(2, 255):
            addr = f'127.0.{a}.{b}'
            bucket = _fnv1a(addr) % 16384
            if bucket not in taken:
                taken.add(bucket)
                yield addr


_addr_iter = _addresses()


# --------------------------------------------------------------------------
# The table

def j(obj):
    return json.dumps(obj).encode()


JSON_CT = ('Content-Type', 'application/json')
VALID = j({'user': 'ann', 'text': 'hi'})


def body_of_size(n):
    """A valid message body of exactly n bytes."""
    base = len(j({'user': 'ann', 'text': ''}))
    body = j({'user': 'ann', 'text': 'x' * (n - base)})
    assert len(body) == n
    return body


@dataclass
class Case:
    id: str
    status: int
    tag: str
    error: str                      # the exact {"error": ...} text ...
    prefix: bool = False            # ... or its beginning (jansson's messages)
    method: str = 'POST'
    path: str = '/msgs'
    headers: list = field(default_factory=lambda: [JSON_CT])
    body: Optional[bytes] = VALID
    send: str = 'curl'              # curl | declared (Content-Length) | unsized (none)
    setup: Optional[str] = None     # rate: spend the token first | cap: fill the cap |
    #                                 address: the case's address at its limit |
    #                                 cap-address: both
    retry_after: Optional[str] = None
    allow: Optional[str] = None


def bad_body(id, body, error, prefix=False):
    return Case(f'400-{id}', 400, 'H2C0010', error, prefix=prefix, body=body)


def bad_resume(id, path='/msgs', headers=()):
    return Case(f'400-{id}', 400, 'H2C0016', BAD_RESUME, method='GET', path=path,
                headers=list(headers), body=None)


CASES = [
    # 400: the body is not JSON
    bad_body('not-json', b'hello there', MALFORMED, prefix=True),
    bad_body('malformed', b'{"user":"ann","text":', MALFORMED, prefix=True),
    bad_body('trailing-garbage', b'{"user":"ann","text":"hi"} x', MALFORMED, prefix=True),
    bad_body('empty-body', b'', MALFORMED, prefix=True),
    bad_body('raw-control-in-string', b'{"user":"ann","text":"a\x01b"}', MALFORMED,
             prefix=True),
    bad_body('escaped-lone-surrogate', b'{"user":"ann","text":"\\ud800"}', MALFORMED,
             prefix=True),
    # 400: JSON, but not an object
    bad_body('array', b'["ann","hi"]', 'body must be a JSON object'),
    bad_body('object-in-array', b'[{"user":"ann","text":"hi"}]',
             'body must be a JSON object'),
    # (a bare string, number or null is refused by jansson itself, which
    # decodes only an object or an array at the top)
    bad_body('string', b'"hi"', MALFORMED, prefix=True),
    bad_body('null', b'null', MALFORMED, prefix=True),
    # 400: user
    bad_body('missing-user', j({'text': 'hi'}), 'missing "user"'),
    bad_body('empty-user', j({'user': '', 'text': 'hi'}), '"user" is empty'),
    bad_body('user-65-chars', j({'user': 'u' * 65, 'text': 'hi'}),
             '"user" is longer than 64 characters'),
    bad_body('user-65-chars-multibyte',
             json.dumps({'user': '\u00e9' * 65, 'text': 'hi'}, ensure_ascii=False).encode(),
             '"user" is longer than 64 characters'),
    bad_body('user-number', j({'user': 123, 'text': 'hi'}), '"user" must be a string'),
    bad_body('user-null', j({'user': None, 'text': 'hi'}), '"user" must be a string'),
    bad_body('user-newline', j({'user': 'a\nb', 'text': 'hi'}),
             '"user" must be on one line, without tabs'),
    bad_body('user-tab', j({'user': 'a\tb', 'text': 'hi'}),
             '"user" must be on one line, without tabs'),
    # 400: text
    bad_body('missing-text', j({'user': 'ann'}), 'missing "text"'),
    bad_body('empty-text', j({'user': 'ann', 'text': ''}), '"text" is empty'),
    bad_body('text-number', j({'user': 'ann', 'text': 7}), '"text" must be a string'),
    bad_body('text-array', j({'user': 'ann', 'text': ['hi']}), '"text" must be a string'),
    bad_body('text-object', j({'user': 'ann', 'text': {'t': 'hi'}}),
             '"text" must be a string'),
    # 400: invalid UTF-8
    bad_body('utf8-ff', b'{"user":"ann","text":"\xff"}', NOT_UTF8),
    bad_body('utf8-overlong', b'{"user":"ann","text":"\xc0\xaf"}', NOT_UTF8),
    bad_body('utf8-truncated', b'{"user":"ann","text":"\xe6\x97"}', NOT_UTF8),
    bad_body('utf8-surrogate', b'{"user":"ann","text":"\xed\xa0\x80"}', NOT_UTF8),
    bad_body('latin1-user', b'{"user":"caf\xe9","text":"hi"}', NOT_UTF8),
    # 400: control characters
    bad_body('ctrl-u0001', b'{"user":"ann","text":"a\\u0001b"}', CTRL),
    bad_body('ctrl-nul', b'{"user":"ann","text":"a\\u0000b"}', CTRL),
    bad_body('ctrl-cr', b'{"user":"ann","text":"a\\rb"}', CTRL),
    bad_body('ctrl-del', b'{"user":"ann","text":"a\\u007fb"}', CTRL),
    bad_body('ctrl-c1-raw', b'{"user":"ann","text":"a\xc2\x9fb"}', CTRL),
    bad_body('ctrl-in-user', b'{"user":"a\\u0007nn","text":"hi"}', CTRL),
    # 400: resume point
    bad_resume('since-abc', '/msgs?since=abc'),
    bad_resume('since-negative', '/msgs?since=-1'),
    bad_resume('since-trailing', '/msgs?since=1x'),
    bad_resume('since-empty', '/msgs?since='),
    bad_resume('since-plus', '/msgs?since=%2B1'),
    bad_resume('since-2pow53', '/msgs?since=9007199254740992'),
    bad_resume('since-20-digits', '/msgs?since=99999999999999999999'),
    bad_resume('since-sse', '/msgs?since=abc', [('Accept', 'text/event-stream')]),
    bad_resume('last-event-id-abc', headers=[('Accept', 'text/event-stream'),
                                             ('Last-Event-ID', 'abc')]),
    bad_resume('last-event-id-negative', headers=[('Accept', 'text/event-stream'),
                                                  ('Last-Event-ID', '-5')]),
    bad_resume('last-event-id-exponent', headers=[('Accept', 'text/event-stream'),
                                                  ('Last-Event-ID', '1e3')]),
    # 405
    *[Case(f'405-{m}', 405, 'H2C0013', 'method not allowed: use GET, POST or DELETE', method=m,
           body=body, headers=[JSON_CT] if body else [], allow='GET, HEAD, POST, DELETE')
      for m, body in [('PUT', VALID), ('PATCH', VALID),
                      ('OPTIONS', None)]],
    # 413
    Case('413-declared', 413, 'H2C0011', f'body over {MAX_BYTES} bytes',
         body=body_of_size(4 * MAX_BYTES), send='declared'),
    Case('413-declared-one-over', 413, 'H2C0011', f'body over {MAX_BYTES} bytes',
         body=body_of_size(MAX_BYTES + 1), send='declared'),
    Case('413-no-content-length', 413, 'H2C0011', f'body over {MAX_BYTES} bytes',
         body=body_of_size(4 * MAX_BYTES), send='unsized'),
    # 415
    *[Case(f'415-{name}', 415, 'H2C0012', 'Content-Type must be application/json',
           headers=[('Content-Type', ctype)])
      for name, ctype in [('text-plain', 'text/plain'),
                          ('form', 'application/x-www-form-urlencoded'),
                          ('jsonx', 'application/jsonx'),
                          ('missing', '')]],  # '' : curl sends none
    # 403
    Case('403-origin', 403, 'H2C0023', 'this Origin may not post here',
         headers=[JSON_CT, ('Origin', 'https://evil.example')]),
    Case('403-origin-null', 403, 'H2C0023', 'this Origin may not post here',
         headers=[JSON_CT, ('Origin', 'null')]),
    # A field sent twice is one field whose value is the list of both (RFC
    # 9110 5.3): the handler sees the combined value (httpd and mod_http2
    # merge repeated fields), so must the loop.
    Case('415-content-type-twice', 415, 'H2C0012', 'Content-Type must be application/json',
         headers=[JSON_CT, ('Content-Type', 'text/plain')]),
    Case('403-origin-twice', 403, 'H2C0023', 'this Origin may not post here',
         headers=[JSON_CT, ('Origin', ORIGIN), ('Origin', 'https://evil.example')]),
    bad_resume('last-event-id-twice', headers=[('Accept', 'text/event-stream'),
                                               ('Last-Event-ID', '1'),
                                               ('Last-Event-ID', '2')]),
    # 429
    Case('429-rate', 429, 'H2C0019', 'too many messages, slow down', setup='rate',
         retry_after=RATE_RETRY),
    # 503
    Case('503-cap', 503, 'H2C0015', 'too many subscribers, retry later', method='GET',
         headers=[], body=None, setup='cap', retry_after='5'),
    Case('503-address', 503, 'H2C0028', 'too many subscribers from this address, retry later',
         method='GET', headers=[], body=None, setup='address', retry_after='5'),
    # Which refusal wins when a request has several faults: method, then
    # (POST) Origin, media type, rate, size, body; (GET) resume point, then
    # the cap, then the address's cap.
    Case('precedence-405-over-403-415', 405, 'H2C0013', 'method not allowed: use GET, POST or DELETE',
         method='PUT', headers=[('Content-Type', 'text/plain'),
                                ('Origin', 'https://evil.example')], allow='GET, HEAD, POST, DELETE'),
    Case('precedence-403-over-415', 403, 'H2C0023', 'this Origin may not post here',
         headers=[('Content-Type', 'text/plain'), ('Origin', 'https://evil.example')]),
    Case('precedence-403-over-429', 403, 'H2C0023', 'this Origin may not post here',
         headers=[JSON_CT, ('Origin', 'https://evil.example')], setup='rate'),
    Case('precedence-415-over-429', 415, 'H2C0012', 'Content-Type must be application/json',
         headers=[('Content-Type', 'text/plain')], setup='rate'),
    Case('precedence-415-over-413', 415, 'H2C0012', 'Content-Type must be application/json',
         headers=[('Content-Type', 'text/plain')], body=body_of_size(4 * MAX_BYTES),
         send='declared'),
    Case('precedence-429-over-413', 429, 'H2C0019', 'too many messages, slow down',
         body=body_of_size(4 * MAX_BYTES), send='declared', setup='rate',
         retry_after=RATE_RETRY),
    Case('precedence-413-over-400', 413, 'H2C0011', f'body over {MAX_BYTES} bytes',
         body=b'\xff' * (4 * MAX_BYTES), send='declared'),
    Case('precedence-400-resume-over-cap', 400, 'H2C0016', BAD_RESUME, method='GET',
         path='/msgs?since=abc', headers=[], body=None, setup='cap'),
    Case('precedence-400-resume-over-address', 400, 'H2C0016', BAD_RESUME, method='GET',
         path='/msgs?since=abc', headers=[], body=None, setup='address'),
    Case('precedence-cap-over-address', 503, 'H2C0015', 'too many subscribers, retry later',
         method='GET', headers=[], body=None, setup='cap-address', retry_after='5'),
]

assert len({c.id for c in CASES}) == len(CASES)
for c in CASES:
    assert c.body is None or c.send != 'curl' or len(c.body) <= MAX_BYTES, c.id

# one source address per (case, transport), fixed at collection
SOURCE = {(c.id, t): next(_addr_iter) for c in CASES for t in TRANSPORTS}


def addr_bucket(addr):
    """The address's bucket of the per-address table (h2c_seg.c)."""
    return _fnv1a(addr) % 4096


def _holders(n):
    """n addresses (127.1.x.y) for held streams: per-address buckets of
    their own, none a case's."""
    taken = {addr_bucket(a) for a in SOURCE.values()}
    out = []
    for a in range(256):
        for b in range(2, 255):
            addr = f'127.1.{a}.{b}'
            if addr_bucket(addr) not in taken:
                taken.add(addr_bucket(addr))
                out.append(addr)
                if len(out) == n:
                    return out
    raise AssertionError('no free bucket')


# CAP streams at PER_ADDR per address
HOLDERS = _holders((CAP + PER_ADDR - 1) // PER_ADDR)


# --------------------------------------------------------------------------
# Clients

def curl_send(server, transport, source, method, path, headers, body):
    """curl (h2c prior knowledge, h2 over TLS, HTTP/1.1) from `source`."""
    opts, url = env.curl_args(TRANSPORTS[transport], server.port, server.tls_port, path)
    # a refusal comes at once; a GET that is not refused is a held stream:
    # cut it after 2 s (its head is what the test reports)
    args = [env.CURL, '-s', '-i', '-X', method, '--max-time', '2' if method == 'GET' else '10',
            '--interface', source] + opts
    for k, v in headers:
        args += ['-H', f'{k}:' + (f' {v}' if v else '')]  # 'Name:' removes it
    if body is not None:
        args += ['--data-binary', '@-']
    args.append(url)
    res = subprocess.run(args, input=body, capture_output=True, timeout=15)
    if not res.stdout:
        raise RuntimeError(f'curl rc={res.returncode}: {res.stderr!r}')
    status, version, hdrs, rest = env._split_curl_output(res.stdout)
    return env.Response(status, hdrs, rest, version)


def h2_send(port, tls, source, method, path, headers, body, content_length):
    """One request on a new HTTP/2 connection (python-h2): the whole body in
    one DATA frame, with or without a content-length. Waits for the whole
    answer, including one sent before the body was read (curl 7.88 drops
    those). Our bodies fit the initial windows and one frame."""
    import h2.config
    import h2.connection
    import h2.events
    sock = socket.create_connection(('127.0.0.1', port), timeout=10,
                                    source_address=(source, 0))
    try:
        if tls:
            sock = env.tls_h2(sock)
        conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding='utf-8',
                                             validate_outbound_headers=False))
        conn.initiate_connection()
        sid = conn.get_next_available_stream_id()
        hdrs = [(':method', method), (':path', path),
                (':scheme', 'https' if tls else 'http'), (':authority', 'localhost')]
        hdrs += [(k.lower(), v) for k, v in headers if v]
        if body and content_length:
            hdrs.append(('content-length', str(len(body))))
        conn.send_headers(sid, hdrs, end_stream=not body)
        if body:
            conn.send_data(sid, body, end_stream=True)
        sock.sendall(conn.data_to_send())
        status, rhdrs, data, done = None, {}, b'', False
        while not done:
            chunk = sock.recv(65536)
            if not chunk:
                break
            for ev in conn.receive_data(chunk):
                if getattr(ev, 'stream_id', None) not in (None, sid):
                    continue
                if isinstance(ev, h2.events.ResponseReceived):
                    rhdrs = {k: v for k, v in ev.headers if not k.startswith(':')}
                    status = int(dict(ev.headers)[':status'])
                elif isinstance(ev, h2.events.DataReceived):
                    data += ev.data
                    conn.acknowledge_received_data(ev.flow_controlled_length, sid)
                elif isinstance(ev, (h2.events.StreamEnded, h2.events.StreamReset,
                                     h2.events.ConnectionTerminated)):
                    done = True
            out = conn.data_to_send()
            if out and not done:
                sock.sendall(out)
        return env.Response(status, rhdrs, data, '2')
    finally:
        sock.close()


def h1_send(port, source, method, path, headers, body, chunked):
    """HTTP/1.1 (http.client) from `source`; chunked: no Content-Length."""
    fields = {k: v for k, v in headers if v}
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10,
                                      source_address=(source, 0))
    try:
        if chunked:
            parts = [body[i:i + 100] for i in range(0, len(body), 100)]
            conn.request(method, path, body=iter(parts), headers=fields,
                         encode_chunked=True)
        else:
            conn.request(method, path, body=body, headers=fields)
        resp = conn.getresponse()
        return env.Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                            resp.read(), '1.1')
    finally:
        conn.close()


def send(server, case, transport, source):
    if case.send == 'curl':
        return curl_send(server, transport, source, case.method, case.path, case.headers,
                         case.body)
    sized = case.send == 'declared'
    if transport == 'handler-h1':
        return h1_send(server.port, source, case.method, case.path, case.headers,
                       case.body, chunked=not sized)
    tls = transport == 'handler-h2tls'
    return h2_send(server.tls_port if tls else server.port, tls, source, case.method,
                   case.path, case.headers, case.body, content_length=sized)


@contextmanager
def streams_held(server, own=None, fill=True):
    """Held streams (the loop's: they leave as soon as their client does):
    PER_ADDR from `own` (a case's address: the next GET from it is over its
    address's cap), then, with fill, as many more from HOLDERS as make CAP
    (the next GET from anywhere is over the server-wide cap)."""
    assert server.wait_subscribers(0, timeout=8) == 0, server.h2chat_status()
    sources = [own] * PER_ADDR if own else []
    if fill:
        sources += [HOLDERS[i // PER_ADDR] for i in range(CAP - len(sources))]
    holders = []
    try:
        for src in sources:
            holders.append(server.subscriber('h2c', source=src))
            assert holders[-1].wait_headers() == 200, holders[-1].summary()
        assert server.wait_subscribers(len(sources)) == len(sources)
        yield
    finally:
        for h in holders:
            h.close()
        server.wait_subscribers(0, timeout=5)


def run_case(server, case, transport):
    """Sends the case over the transport -> (Response, source address)."""
    source = SOURCE[(case.id, transport)]
    if case.setup == 'rate':
        # spend this address's one token; the case must follow within 1 s
        # for Retry-After to be the whole interval (ceil(10 s - elapsed))
        first = curl_send(server, transport, source, 'POST', '/msgs', [JSON_CT], VALID)
        assert first.status == 201, f'the token-spending POST: {first!r}'
    if case.setup in ('cap', 'address', 'cap-address'):
        with streams_held(server, own=source if 'address' in case.setup else None,
                          fill='cap' in case.setup):
            return send(server, case, transport, source), source
    return send(server, case, transport, source), source


def rendering(r):
    """What a refusal must render alike on every transport."""
    try:
        body = json.loads(r.body.decode('utf-8'))
    except (UnicodeDecodeError, ValueError):
        body = r.body
    return {'status': r.status,
            'retry-after': r.headers.get('retry-after'),
            'allow': r.headers.get('allow'),
            'content-type': r.headers.get('content-type'),
            'body': body}


RESULTS = {}  # (case id, transport) -> rendering


# --------------------------------------------------------------------------
# Tests

def test_routing(server):
    """The premise: h2c goes to the loop, h2 over TLS and HTTP/1.1 to the
    handler (a path the loop does not serve gets the loop's own 404)."""
    for transport, looped in [('direct-h2c', True), ('handler-h2tls', False),
                              ('handler-h1', False)]:
        mark = server.errlog_mark()
        r = curl_send(server, transport, '127.0.0.1', 'GET', '/elsewhere', [], None)
        assert r.status == 404 and r.version == HTTP_VERSION[transport], (transport, r)
        by_loop = bool(server.wait_errlog(r'H2C0025: 404', mark, timeout=1 if not looped
                                          else 3))
        assert by_loop == looped, (transport, server.errlog_since(mark))


PARAMS = [pytest.param(c, t, id=f'{c.id}-{t}') for c in CASES for t in TRANSPORTS]


@pytest.mark.parametrize('case, transport', PARAMS)
def test_refusal(server, case, transport):
    mark = server.errlog_mark()
    r, source = run_case(server, case, transport)
    got = rendering(r)
    RESULTS[(case.id, transport)] = got

    assert r.version == HTTP_VERSION[transport], r
    assert got['status'] == case.status, got
    assert got['retry-after'] == case.retry_after, got
    assert got['allow'] == case.allow, got
    ctype = got['content-type'] or ''
    assert ctype.split(';')[0].strip().lower() == 'application/json', got
    assert isinstance(got['body'], dict) and set(got['body']) == {'error'}, got
    error = got['body']['error']
    if case.prefix:
        assert error.startswith(case.error) and len(error) > len(case.error), got
    else:
        assert error == case.error, got
    # one tagged line for this request (its source address is in it)
    # (handler: "[client A:port] TAG: ...", "[remote A:port]" on an h2
    # stream; loop: "TAG: ... (client A, direct)")
    addr = re.escape(source)
    line = re.compile(rf'{case.tag}: {case.status} .*client {addr}[:,]|'
                      rf'(client|remote) {addr}:\d+\] {case.tag}: {case.status} ')
    assert server.wait_errlog(line.pattern, mark), \
        f'no "{case.tag}: {case.status}" line for {source}:\n{server.errlog_since(mark)}'


@pytest.mark.parametrize('case', CASES, ids=[c.id for c in CASES])
def test_same_across_transports(server, case):
    """The transports' answers side by side (from test_refusal, or sent
    now when it did not run): a failure lists what differs."""
    got = {}
    for t in TRANSPORTS:
        if (case.id, t) not in RESULTS:
            RESULTS[(case.id, t)] = rendering(run_case(server, case, t)[0])
        got[t] = RESULTS[(case.id, t)]
    ref = got['direct-h2c']
    diffs = [f'{k}: direct-h2c={ref[k]!r} {t}={g[k]!r}'
             for t, g in got.items() if t != 'direct-h2c'
             for k in ref if g[k] != ref[k]]
    assert not diffs, '\n'.join(diffs)


class Fields(list):
    """Request header fields for Subscriber(extra_headers=...), where a name
    may repeat: it only iterates .items()."""

    def items(self):
        return iter(self)


# Accept fields that ask for SSE. Media types are case-insensitive (RFC 9110
# 8.3.1), and a field sent twice is the list of both values (RFC 9110 5.3),
# so 'accept-twice' is 'list'.
ACCEPTS = {
    'lowercase': [('Accept', 'text/event-stream')],
    'uppercase': [('Accept', 'TEXT/EVENT-STREAM')],
    'mixed-case': [('Accept', 'Text/Event-Stream')],
    'list': [('Accept', 'application/x-ndjson, text/event-stream')],
    'accept-twice': [('Accept', 'application/x-ndjson'), ('Accept', 'text/event-stream')],
}


@pytest.mark.parametrize('accept, transport',
                         [pytest.param(a, t, id=f'{a}-{t}') for a in ACCEPTS for t in TRANSPORTS])
def test_accept_negotiation(server, accept, transport):
    """A GET whose Accept asks for text/event-stream gets an SSE stream on
    every transport."""
    # a handler's stream leaves up to 2 s after its client: room for one,
    # also under 127.0.0.1's per-address cap (all of these come from it)
    assert env.wait_until(
        lambda: server.h2chat_status()['H2ChatSubscribers'] < PER_ADDR, 8), \
        server.h2chat_status()
    s = server.subscriber(TRANSPORTS[transport], 'ndjson',
                          extra_headers=Fields(ACCEPTS[accept]))
    try:
        assert s.wait_headers() == 200, s.summary()
        assert s.version == HTTP_VERSION[transport], s.summary()
        assert s.headers.get('content-type') == 'text/event-stream', s.headers
    finally:
        s.close()
