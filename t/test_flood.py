"""Flood control and cross-site posts: H2ChatRateLimit (per client address,
shared by all children) answers 429 with Retry-After; another address is
not affected; H2ChatAllowOrigin refuses other origins with 403; a form
post (text/plain) is refused with 415."""

import http.client
import json
import time

import h2chat_env as env

EXTRA_CONF = """
<Location /msgs>
    H2ChatRateLimit 2 3
</Location>
<Location /strict/msgs>
    H2Chat On
    H2ChatAllowOrigin https://chat.example https://other.example
</Location>
"""

BODY = json.dumps({'user': 'fl', 'text': 'x'})


def post_from(server, source, body=BODY, path='/msgs', headers=None):
    """POST on a new HTTP/1.1 connection from loopback address `source`."""
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10,
                                      source_address=(source, 0))
    try:
        hdrs = {'Content-Type': 'application/json'}
        hdrs.update(headers or {})
        conn.request('POST', path, body=body.encode(), headers=hdrs)
        r = conn.getresponse()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, r.read()
    finally:
        conn.close()


def test_burst_then_429_across_children(server):
    # each POST on its own connection: they land on different children,
    # the limit is shared
    got = [post_from(server, '127.0.0.3')[0] for _ in range(3)]
    assert got == [201, 201, 201], got
    mark = server.errlog_mark()
    status, hdrs, body = post_from(server, '127.0.0.3')
    assert status == 429, (status, body)
    assert hdrs['content-type'].startswith('application/json')
    assert json.loads(body)['error']
    retry = int(hdrs['retry-after'])
    assert 1 <= retry <= 2, retry
    assert 'H2C0019' in server.errlog_since(mark)
    assert server.h2chat_status()['H2ChatRefusedRate'] >= 1
    time.sleep(retry + 0.1)
    assert post_from(server, '127.0.0.3')[0] == 201


def test_flood_from_one_address_spares_the_others(server):
    # from the last id: a snapshot of earlier tests' messages would satisfy
    # the wait_for below before 'calm' arrives (flaky)
    sub = server.subscriber('h2c', 'ndjson', since=server.h2chat_status()['H2ChatLastId'])
    assert sub.wait_headers() == 200
    flood = [post_from(server, '127.0.0.4')[0] for _ in range(30)]
    assert flood.count(201) <= 4 and flood.count(429) >= 26, flood
    # another address posts normally, right after, and is delivered
    t0 = time.monotonic()
    status, _, body = post_from(server, '127.0.0.5', json.dumps({'user': 'ok', 'text': 'calm'}))
    assert status == 201, body
    # the snapshot holds earlier messages too: wait for this one itself
    sub.wait_event(lambda e: e.get('text') == 'calm', timeout=5)
    assert sub.messages and sub.messages[-1]['text'] == 'calm', sub.summary()
    assert time.monotonic() - t0 < 5
    sub.close()


def test_allow_origin(server):
    mark = server.errlog_mark()
    status, hdrs, body = post_from(server, '127.0.0.6', path='/strict/msgs',
                                   headers={'Origin': 'https://evil.example'})
    assert status == 403 and json.loads(body)['error'], (status, body)
    assert 'H2C0023' in server.errlog_since(mark)
    for origin in ('https://chat.example', 'https://other.example', None):
        headers = {'Origin': origin} if origin else {}
        status, _, body = post_from(server, '127.0.0.6', path='/strict/msgs', headers=headers)
        assert status == 201, (origin, status, body)


def test_cross_site_form_post_refused(server):
    status, _, body = post_from(server, '127.0.0.7', body='user=a&text=b',
                                headers={'Content-Type': 'application/x-www-form-urlencoded',
                                         'Origin': 'https://evil.example'})
    assert status == 415, (status, body)
    status, _, body = post_from(server, '127.0.0.7', body=BODY,
                                headers={'Content-Type': 'text/plain'})
    assert status == 415, (status, body)
