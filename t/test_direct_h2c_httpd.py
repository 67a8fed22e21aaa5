"""H2ChatDirect's h2c connections run httpd's own request processing too
(`H2ChatDirectRequests httpd`, the default): the loop still takes the
socket (and may hand it to another child), and each request goes to a
check thread with a master connection made from the socket's addresses.
Basic auth answers 401 with the challenge and the same body as httpd's
own path, authz 403, the authenticated name is the message's user, the
access log has a line per refusal, per POST and per held stream. Under
`H2ChatDirectRequests none` a listener keeps the old way: the chat's own
rules only."""

import json
import re

import h2chat_env as env

PATH = '/private/msgs'
EXTRA_CONF = f"""
H2ChatMaxSubscribersPerAddress off
H2ChatDirect {PATH}
{env.auth_location(PATH)}
# a trusted backend's listener: no httpd processing on the loop
Listen 127.0.0.1:@FASTPORT@
<VirtualHost 127.0.0.1:@FASTPORT@>
    Protocols h2c http/1.1
    H2ChatDirect {PATH}
    H2ChatDirectRequests none
</VirtualHost>
"""
USERS = {'alice': 'wonder land', 'bob': 'b0b'}


def SETUP(server):
    env.write_htpasswd(server, USERS)


def loop_and_httpd(server, method='GET', path=PATH, headers=None):
    """The same request through the loop (h2c) and httpd's own path
    (HTTP/1.1 on the same port: never taken by the loop)."""
    return [env.curl_request(server.port, server.tls_port, transport, method, path,
                             None, headers) for transport in ('h2c', 'h1')]


def loop_subscribers(server):
    return server.h2chat_status()['H2ChatDirectSubscribers']


def test_401_with_the_challenge_as_httpd_gives_it(server):
    mark = server.errlog_mark()
    for headers in (None, env.basic_auth('alice', 'wrong')):
        via_loop, via_httpd = loop_and_httpd(server, headers=headers)
        assert via_loop.status == via_httpd.status == 401, (via_httpd, via_loop)
        assert via_loop.version == '2', via_loop
        for field in ('www-authenticate', 'content-type'):
            assert via_loop.headers.get(field) == via_httpd.headers.get(field), field
        assert via_loop.headers['www-authenticate'] == 'Basic realm="h2chat test"'
        assert via_loop.body == via_httpd.body and b'401' in via_loop.body
    # httpd's own log line for the failed password, from both paths
    assert server.errlog_since(mark).count('AH01617') == 2
    assert loop_subscribers(server) == 0


def test_403_from_authz(server):
    via_loop, via_httpd = loop_and_httpd(server, path=PATH + '?forbidden=1',
                                         headers=env.basic_auth('bob', 'b0b'))
    assert via_loop.status == via_httpd.status == 403, (via_httpd, via_loop)
    assert via_loop.body == via_httpd.body


def test_authenticated_name_is_the_messages_user(server):
    last = server.h2chat_status()['H2ChatLastId']
    sub = server.subscriber('h2c', path=PATH, since=last, user='bob:b0b')
    assert sub.wait_headers() == 200, sub.summary()
    assert env.wait_until(lambda: loop_subscribers(server) == 1, 5)
    r = env.curl_request(server.port, server.tls_port, 'h2c', 'POST', PATH,
                         {'user': 'mallory', 'text': 'spoofed?'},
                         {'Content-Type': 'application/json',
                          **env.basic_auth('alice', 'wonder land')})
    assert r.status == 201 and r.version == '2', r
    msgs = sub.wait_for(1)
    assert [(m['id'], m['user']) for m in msgs] == [(json.loads(r.body)['id'], 'alice')]
    sub.close()


def test_access_log_lines(server):
    """A refusal's line at once; a POST's when answered, a held stream's
    when it ends: user, status, bytes sent, the client's address."""
    before = len(server.access_log.read_text())
    refused = env.curl_request(server.port, server.tls_port, 'h2c', 'GET', PATH + '?log=0')
    assert refused.status == 401
    # the loop's own answer, before httpd's check: its line too
    elsewhere = env.curl_request(server.port, server.tls_port, 'h2c', 'GET', '/elsewhere')
    assert elsewhere.status == 404
    sub = server.subscriber('h2c', path=PATH + '?log=1', user='bob:b0b')
    assert sub.wait_headers() == 200
    r = env.curl_request(server.port, server.tls_port, 'h2c', 'POST', PATH + '?log=2',
                         {'text': 'logged'},
                         {'Content-Type': 'application/json',
                          **env.basic_auth('alice', 'wonder land')})
    assert r.status == 201
    sub.wait_for(1)
    sub.close()
    want = [re.compile(r'127\.0\.0\.1 - .*"GET /private/msgs\?log=0 HTTP/2\.0" 401 (\d+)'),
            re.compile(r'127\.0\.0\.1 alice .*"POST /private/msgs\?log=2 HTTP/2\.0" 201 (\d+)'),
            re.compile(r'127\.0\.0\.1 bob .*"GET /private/msgs\?log=1 HTTP/2\.0" 200 (\d+)'),
            re.compile(r'127\.0\.0\.1 - .*"GET /elsewhere HTTP/2\.0" 404 (\d+)')]

    def found():
        text = server.access_log.read_text()[before:]
        return [rx.findall(text) for rx in want]

    assert env.wait_until(lambda: all(len(f) == 1 for f in found()), 5), \
        server.access_log.read_text()[before:]
    (no,), (posted,), (streamed,), (away,) = found()
    assert int(no) == len(refused.body)
    assert int(away) == len(elsewhere.body)
    assert int(posted) == len(r.body), (posted, r.body)
    assert int(streamed) >= len(sub.body), (streamed, len(sub.body))


def test_none_keeps_the_chats_own_rules_only(server):
    """H2ChatDirectRequests none: no auth on that listener's loop requests,
    no access log line; the stream is still the loop's."""
    before = len(server.access_log.read_text())
    sub = server.subscriber('h2c', path=PATH, port=server.fast_port)
    assert sub.wait_headers() == 200, sub.summary()
    assert env.wait_until(lambda: loop_subscribers(server) == 1, 5)
    r = env.curl_request(server.fast_port, server.tls_port, 'h2c', 'POST', PATH,
                         {'user': 'carol', 'text': 'unchecked'},
                         {'Content-Type': 'application/json'})
    assert r.status == 201, r
    assert [m['user'] for m in sub.wait_for(1)] == ['carol']
    sub.close()
    assert 'private/msgs' not in server.access_log.read_text()[before:]
