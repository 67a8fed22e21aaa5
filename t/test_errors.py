"""Bad input: every refusal has its status, a JSON body {"error": "..."}
and one error-log line with a stable H2C#### tag; the server keeps working
afterwards."""

import http.client
import json
import socket
import time

import pytest

import h2chat_env as env

MAX_BYTES = 4096  # default H2ChatMaxMessageBytes


def j(obj):
    return json.dumps(obj).encode('utf-8')


BAD_BODIES = {
    'malformed': b'{"user":"ann","text":',
    'not-json': b'hello there',
    'trailing-garbage': b'{"user":"ann","text":"hi"} x',
    'two-objects': b'{"user":"ann","text":"hi"}{"user":"ann","text":"hi"}',
    'empty-body': b'',
    'array': b'["ann","hi"]',
    'string': b'"hi"',
    'number': b'42',
    'null': b'null',
    'missing-user': j({'text': 'hi'}),
    'missing-text': j({'user': 'ann'}),
    'user-number': j({'user': 123, 'text': 'hi'}),
    'user-bool': j({'user': True, 'text': 'hi'}),
    'user-null': j({'user': None, 'text': 'hi'}),
    'text-null': j({'user': 'ann', 'text': None}),
    'text-array': j({'user': 'ann', 'text': ['hi']}),
    'text-object': j({'user': 'ann', 'text': {'t': 'hi'}}),
    'text-number': j({'user': 'ann', 'text': 7}),
    'empty-user': j({'user': '', 'text': 'hi'}),
    'empty-text': j({'user': 'ann', 'text': ''}),
    'utf8-ff': b'{"user":"ann","text":"\xff"}',
    'utf8-overlong': b'{"user":"ann","text":"\xc0\xaf"}',
    'utf8-truncated': b'{"user":"ann","text":"\xe6\x97"}',
    'utf8-surrogate': b'{"user":"ann","text":"\xed\xa0\x80"}',
    'utf8-above-max': b'{"user":"ann","text":"\xf4\x90\x80\x80"}',
    'latin1-user': b'{"user":"caf\xe9","text":"hi"}',
    'escaped-lone-surrogate': b'{"user":"ann","text":"\\ud800"}',
    'ctrl-u0001': b'{"user":"ann","text":"a\\u0001b"}',
    'ctrl-u0000': b'{"user":"ann","text":"a\\u0000b"}',
    'ctrl-escape': b'{"user":"ann","text":"a\\u001b[31mred"}',
    'ctrl-cr': b'{"user":"ann","text":"a\\rb"}',
    'ctrl-backspace': b'{"user":"ann","text":"a\\bb"}',
    'ctrl-formfeed': b'{"user":"ann","text":"a\\fb"}',
    'ctrl-raw-01': b'{"user":"ann","text":"a\x01b"}',
    'ctrl-raw-cr': b'{"user":"ann","text":"a\rb"}',
    'ctrl-in-user': b'{"user":"a\\u0007nn","text":"hi"}',
    'ctrl-del': b'{"user":"ann","text":"a\\u007fb"}',
    'ctrl-c1-0085': b'{"user":"ann","text":"a\\u0085b"}',
    'ctrl-c1-009f-raw': b'{"user":"ann","text":"a\xc2\x9fb"}',
    'user-65-ascii': j({'user': 'u' * 65, 'text': 'hi'}),
    'user-65-chars-multibyte': json.dumps({'user': '\u00e9' * 65, 'text': 'hi'},
                                          ensure_ascii=False).encode(),
    'user-65-emoji': j({'user': '\U0001F600' * 65, 'text': 'hi'}),
}

GOOD_BODIES = {
    'user-64-ascii': j({'user': 'u' * 64, 'text': 'hi'}),
    'user-64-chars-multibyte': json.dumps({'user': '\u00e9' * 64, 'text': 'hi'},
                                          ensure_ascii=False).encode(),
    'user-64-emoji': json.dumps({'user': '\U0001F600' * 64, 'text': 'hi'},
                                ensure_ascii=False).encode(),
    'newline-and-tab': j({'user': 'ann', 'text': 'a\nb\tc'}),
    'extra-whitespace': b' \n {"user" : "ann" ,\n "text" : "hi" } \n',
}


def body_of_size(n):
    """A valid message body of exactly n bytes."""
    base = len(j({'user': 'ann', 'text': ''}))
    body = j({'user': 'ann', 'text': 'x' * (n - base)})
    assert len(body) == n
    return body


def check_tagged(server, mark, what):
    assert server.wait_errlog(env.TAG_RE.pattern, mark, timeout=3), \
        f'no H2C#### line in the error log for {what}:\n{server.errlog_since(mark)[-1500:]}'


@pytest.mark.parametrize('name', list(BAD_BODIES))
def test_bad_body_400(server, name):
    mark = server.errlog_mark()
    r = server.post(BAD_BODIES[name])
    env.assert_json_error(r, 400)
    check_tagged(server, mark, name)


@pytest.mark.parametrize('name', ['malformed', 'missing-user', 'ctrl-u0001', 'utf8-ff'])
@pytest.mark.parametrize('transport', ['h2c', 'h2tls'])
def test_bad_body_400_over_h2(server, name, transport):
    mark = server.errlog_mark()
    r = server.post(BAD_BODIES[name], transport)
    assert r.version == '2', r
    env.assert_json_error(r, 400)
    check_tagged(server, mark, name)


@pytest.mark.parametrize('name', list(GOOD_BODIES))
def test_good_body_201(server, name):
    r = server.post(GOOD_BODIES[name])
    assert r.status == 201, r
    assert isinstance(r.json().get('id'), int)


@pytest.mark.parametrize('ctype', ['application/json; charset=utf-8', 'application/json;charset=UTF-8',
                                   'Application/JSON'])
def test_json_content_type_variants_201(server, ctype):
    r = server.post(j({'user': 'ann', 'text': 'ctype ok'}), content_type=ctype)
    assert r.status == 201, r


@pytest.mark.parametrize('ctype', ['text/plain', 'application/x-www-form-urlencoded',
                                   'multipart/form-data; boundary=x', 'application/jsonx',
                                   'text/json-ish', None])
def test_media_type_415(server, ctype):
    mark = server.errlog_mark()
    r = server.post(j({'user': 'ann', 'text': 'hi'}), content_type=ctype)
    env.assert_json_error(r, 415)
    check_tagged(server, mark, f'content type {ctype}')


@pytest.mark.parametrize('transport', ['h2c', 'h2tls'])
def test_media_type_415_over_h2(server, transport):
    r = server.post(j({'user': 'ann', 'text': 'hi'}), transport, content_type='text/plain')
    env.assert_json_error(r, 415)


def test_max_bytes_boundary(server):
    r = server.post(body_of_size(MAX_BYTES))
    assert r.status == 201, r
    mark = server.errlog_mark()
    r = server.post(body_of_size(MAX_BYTES + 1))
    env.assert_json_error(r, 413)
    check_tagged(server, mark, 'body one byte over the limit')


def test_too_large_413(server):
    mark = server.errlog_mark()
    r = server.post(body_of_size(100000))
    env.assert_json_error(r, 413)
    check_tagged(server, mark, '100 kB body')


@pytest.mark.parametrize('tls', [False, True], ids=['h2c', 'h2tls'])
def test_too_large_413_over_h2(server, tls):
    """Over h2 the answer comes before the body is complete, followed by
    RST_STREAM (curl 7.88 drops such answers, hence the h2 client here)."""
    mark = server.errlog_mark()
    conn = env.H2Connection(server.tls_port if tls else server.port, tls=tls)
    try:
        sid = conn.request('POST', '/msgs', {'content-type': 'application/json'},
                           body_of_size(100000))
        r = conn.response(sid)
    finally:
        conn.close()
    env.assert_json_error(r, 413)
    check_tagged(server, mark, '100 kB body over h2')


def test_too_large_chunked_413(server):
    """No Content-Length: the limit holds while reading."""
    body = body_of_size(MAX_BYTES * 3)
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        conn.request('POST', '/msgs', body=iter([body[i:i + 1000]
                                                 for i in range(0, len(body), 1000)]),
                     headers={'Content-Type': 'application/json'}, encode_chunked=True)
        resp = conn.getresponse()
        r = env.Response(resp.status, {k.lower(): v for k, v in resp.getheaders()},
                         resp.read())
    finally:
        conn.close()
    env.assert_json_error(r, 413)


def test_chunked_small_201(server):
    body = j({'user': 'ann', 'text': 'chunked ok'})
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    try:
        conn.request('POST', '/msgs', body=iter([body[:5], body[5:]]),
                     headers={'Content-Type': 'application/json'}, encode_chunked=True)
        resp = conn.getresponse()
        assert resp.status == 201, resp.read()
    finally:
        conn.close()


def test_huge_content_length_413_without_body(server):
    """A Content-Length far over the limit is refused before the body is
    read: the answer comes although no body byte is ever sent."""
    mark = server.errlog_mark()
    with socket.create_connection(('127.0.0.1', server.port), timeout=10) as s:
        s.sendall(b'POST /msgs HTTP/1.1\r\nHost: localhost\r\n'
                  b'Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n')
        t0 = time.monotonic()
        data = b''
        while b'\r\n\r\n' not in data:
            chunk = s.recv(65536)
            if not chunk:
                break
            data += chunk
        elapsed = time.monotonic() - t0
    assert data.startswith(b'HTTP/1.1 413'), data[:300]
    assert elapsed < 5, elapsed
    head = data.split(b'\r\n\r\n', 1)[0].decode('iso-8859-1').lower()
    assert 'content-type: application/json' in head, head
    check_tagged(server, mark, 'huge Content-Length')


@pytest.mark.parametrize('method', ['PUT', 'PATCH', 'OPTIONS'])
def test_method_405(server, method):
    mark = server.errlog_mark()
    r = env.request(server.port, method, '/msgs', body=j({'user': 'ann', 'text': 'hi'}),
                    headers={'Content-Type': 'application/json'})
    env.assert_json_error(r, 405)
    allow = {m.strip().upper() for m in r.headers.get('allow', '').split(',')}
    assert {'GET', 'HEAD', 'POST', 'DELETE'} == allow, r.headers
    check_tagged(server, mark, method)


@pytest.mark.parametrize('query', ['since=abc', 'since=-1', 'since=1x', 'since=1.5',
                                   'since=%2B1', 'since=0x10', 'since=%201',
                                   'since=99999999999999999999'])
@pytest.mark.parametrize('mode', ['ndjson', 'sse'])
def test_bad_since_400(server, query, mode):
    mark = server.errlog_mark()
    hdrs = {'Accept': 'text/event-stream'} if mode == 'sse' else {}
    r = server.get('/msgs?' + query, hdrs)
    env.assert_json_error(r, 400)
    check_tagged(server, mark, query)


@pytest.mark.parametrize('value', ['abc', '-5', '12abc', '1e3'])
@pytest.mark.parametrize('transport', ['h1', 'h2c'])
def test_bad_last_event_id_400(server, value, transport):
    mark = server.errlog_mark()
    r = server.get('/msgs', {'Accept': 'text/event-stream', 'Last-Event-ID': value},
                   transport=transport)
    env.assert_json_error(r, 400)
    check_tagged(server, mark, f'Last-Event-ID {value}')


def test_still_works_after_errors(server):
    """Runs last in this module: after all the refusals a normal POST is
    accepted and a subscriber receives it."""
    last = server.h2chat_status()['H2ChatLastId']
    subs = [server.subscriber('h2c', 'ndjson', since=last),
            server.subscriber('h1', 'sse', since=last)]
    for s in subs:
        assert s.wait_headers() == 200, s.summary()
    msg_id, _ = server.post_msg('ann', 'still alive \u00e9')
    for s in subs:
        msgs = s.wait_for(1)
        assert [(m['id'], m['user'], m['text']) for m in msgs] == \
            [(msg_id, 'ann', 'still alive \u00e9')], s.summary()
    assert not server.errlog_problems(), server.errlog_problems()
