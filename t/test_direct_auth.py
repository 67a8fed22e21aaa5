"""H2ChatDirect over TLS runs httpd's own request processing for every
request it serves (on the loop's check threads): Basic auth answers 401
with the challenge and the same body mod_http2's path gives, an authz
refusal 403, the authenticated name is the message's user whatever the
body says, and each refusal has its access log line."""

import json
import re
import time

import h2chat_env as env

EXTRA_CONF = """
H2ChatMaxSubscribersPerAddress off
""" + env.fast_vhost('/private/msgs') + env.auth_location('/private/msgs')
USERS = {'alice': 'wonder land', 'bob': 'b0b'}
PATH = '/private/msgs'


def SETUP(server):
    env.write_htpasswd(server, USERS)


def both(server, method='GET', path=PATH, body=None, headers=None):
    """The same request through mod_http2 (main TLS host) and the loop."""
    return [env.curl_request(server.port, port, 'h2tls', method, path, body, headers)
            for port in (server.tls_port, server.fast_port)]


def test_401_with_the_challenge_as_mod_http2_gives_it(server):
    mark = server.errlog_mark()
    for headers in (None, env.basic_auth('alice', 'wrong')):
        via_http2, via_loop = both(server, headers=headers)
        assert via_loop.status == via_http2.status == 401, (via_http2, via_loop)
        for field in ('www-authenticate', 'content-type'):
            assert via_loop.headers.get(field) == via_http2.headers.get(field), field
        assert via_loop.headers['www-authenticate'] == 'Basic realm="h2chat test"'
        assert via_loop.body == via_http2.body and b'401' in via_loop.body
    # httpd's own log lines for the failed password, from both paths
    assert server.errlog_since(mark).count('AH01617') == 2


def test_403_from_authz(server):
    via_http2, via_loop = both(server, path=PATH + '?forbidden=1',
                               headers=env.basic_auth('bob', 'b0b'))
    assert via_loop.status == via_http2.status == 403, (via_http2, via_loop)
    assert via_loop.body == via_http2.body


def test_authenticated_name_is_the_messages_user(server):
    last = server.h2chat_status()['H2ChatLastId']
    sub = server.subscriber('h2tls', path=PATH, since=last, user='bob:b0b',
                            port=server.fast_port)
    assert sub.wait_headers() == 200, sub.summary()
    assert env.wait_until(
        lambda: server.h2chat_status()['H2ChatDirectSubscribers'] == 1, 5)
    posted = []
    for port in (server.tls_port, server.fast_port):
        r = env.curl_request(server.port, port, 'h2tls', 'POST', PATH,
                             {'user': 'mallory', 'text': f'spoofed? {port}'},
                             {'Content-Type': 'application/json',
                              **env.basic_auth('alice', 'wonder land')})
        assert r.status == 201, r
        posted.append(json.loads(r.body)['id'])
    msgs = sub.wait_for(2)
    assert [(m['id'], m['user']) for m in msgs] == [(i, 'alice') for i in posted]
    sub.close()


def test_refusals_have_their_access_log_line(server):
    before = server.access_log.read_text() if server.access_log.exists() else ''
    r = env.curl_request(server.port, server.fast_port, 'h2tls', 'GET', PATH + '?log=1')
    assert r.status == 401
    line = re.compile(r'"GET /private/msgs\?log=1 HTTP/2\.0" 401 (\d+) ')
    assert env.wait_until(
        lambda: len(line.findall(server.access_log.read_text()[len(before):])) == 1, 5), \
        server.access_log.read_text()[len(before):]
    # the bytes of httpd's error page, as sent
    assert line.findall(server.access_log.read_text()[len(before):]) == [str(len(r.body))]


def test_the_loops_own_answers_have_their_access_log_line(server):
    """What the loop answers before httpd's check (a path not the chat's,
    a CORS preflight, a header list or a :path past httpd's limits) has its
    line too, with the status and the bytes sent; a :path past the limit
    never came whole: "-"."""
    before = len(server.access_log.read_text())
    answers = [
        env.curl_request(server.port, server.fast_port, 'h2tls', 'GET', '/elsewhere?log=3'),
        env.curl_request(server.port, server.fast_port, 'h2tls', 'OPTIONS', PATH + '?log=4',
                         headers={'Origin': 'https://other.example',
                                  'Access-Control-Request-Method': 'POST'}),
        env.curl_request(server.port, server.fast_port, 'h2tls', 'GET', PATH + '?log=5',
                         headers={'X-Big': 'b' * 9000}),
        env.curl_request(server.port, server.fast_port, 'h2tls', 'GET',
                         PATH + '?log=6&' + 'p' * 9000)]
    assert [r.status for r in answers] == [404, 204, 431, 414], answers
    want = [re.compile(r'"GET /elsewhere\?log=3 HTTP/2\.0" 404 (\S+)'),
            re.compile(r'"OPTIONS /private/msgs\?log=4 HTTP/2\.0" 204 (\S+)'),
            re.compile(r'"GET /private/msgs\?log=5 HTTP/2\.0" 431 (\S+)'),
            re.compile(r'"GET - HTTP/2\.0" 414 (\S+)')]

    def found():
        text = server.access_log.read_text()[before:]
        return [rx.findall(text) for rx in want]

    assert env.wait_until(lambda: all(len(f) == 1 for f in found()), 5), \
        server.access_log.read_text()[before:]
    # %b: the body's bytes as sent, "-" for none
    assert [f[0] for f in found()] == [str(len(r.body)) if r.body else '-' for r in answers]


def test_the_loop_is_not_held_by_a_check(server):
    """Checks run on their own threads: a held stream keeps receiving while
    requests are being checked (here: many refused ones in a row)."""
    sub = server.subscriber('h2tls', path=PATH, user='bob:b0b', port=server.fast_port)
    assert sub.wait_headers() == 200
    for i in range(20):
        r = env.curl_request(server.port, server.fast_port, 'h2tls', 'GET', PATH)
        assert r.status == 401
    t0 = time.monotonic()
    nid = json.loads(env.curl_request(
        server.port, server.tls_port, 'h2tls', 'POST', PATH, {'text': 'still here'},
        {'Content-Type': 'application/json', **env.basic_auth('bob', 'b0b')}).body)['id']
    assert sub.wait_event(lambda e: e.get('id') == nid, 5), sub.summary()
    assert time.monotonic() - t0 < 5
    sub.close()


def test_requests_let_through_have_their_access_log_line(server):
    """A POST's line when it is answered, a held stream's when it ends: the
    user, the status, the bytes sent, as mod_http2's lines for them."""
    before = len(server.access_log.read_text())
    sub = server.subscriber('h2tls', path=PATH + '?logged=1', user='bob:b0b',
                            port=server.fast_port)
    assert sub.wait_headers() == 200
    r = env.curl_request(server.port, server.fast_port, 'h2tls', 'POST', PATH + '?logged=2',
                         {'text': 'logged'},
                         {'Content-Type': 'application/json',
                          **env.basic_auth('alice', 'wonder land')})
    assert r.status == 201
    sub.wait_for(1)
    sub.close()
    post = re.compile(r'127\.0\.0\.1 alice .*"POST /private/msgs\?logged=2 HTTP/2\.0" 201 (\d+)')
    held = re.compile(r'127\.0\.0\.1 bob .*"GET /private/msgs\?logged=1 HTTP/2\.0" 200 (\d+)')

    def lines():
        text = server.access_log.read_text()[before:]
        return post.findall(text), held.findall(text)

    assert env.wait_until(lambda: all(len(found) == 1 for found in lines()), 5), \
        server.access_log.read_text()[before:]
    (posted,), (streamed,) = lines()
    assert int(posted) == len(r.body), (posted, r.body)
    assert int(streamed) >= len(sub.body), (streamed, len(sub.body))
