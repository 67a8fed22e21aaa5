"""Browsers on the fast path (#15, acceptance 1), in Debian's chromium: the
page on the main TLS origin (mod_http2) learns from the location's answers
(X-H2Chat-Stream, H2ChatStreamURL) that its stream is held on the fast-path
origin (an SSL virtual host with H2ChatDirect: the module's loop) and holds
it there across origins (CORS with credentials for the listed origin);
it posts on its own origin. The `graceful` scenario of t/browser/chat.mjs
(same harness as t/test_browser.py): two people, three tabs, a third party
posting before, during and right after `apache2 -k graceful`: every page
ends with each message once; server-status shows the streams as the
loop's."""

import json

import h2chat_env as env
from test_browser import node, run_scenario  # noqa: F401  (the harness's fixture)

EXTRA_CONF = """
H2ChatMaxSubscribersPerAddress off
AsyncRequestWorkerFactor 50
Listen 127.0.0.1:@FASTPORT@
<VirtualHost 127.0.0.1:@FASTPORT@>
    ServerName 127.0.0.1
    SSLEngine on
    SSLCertificateFile "@CERT@"
    SSLCertificateKeyFile "@KEY@"
    Protocols h2 http/1.1
    H2ChatDirect /msgs
</VirtualHost>
<Location /msgs>
    H2ChatStreamURL https://127.0.0.1:@FASTPORT@/msgs
    H2ChatAllowOrigin https://127.0.0.1:@TLSPORT@
    H2ChatHeartbeat 5
</Location>
"""


def SETUP(server):
    server.extra_conf = server.extra_conf.replace('@TLSPORT@', str(server.tls_port))


def direct_streams(server):
    return server.h2chat_status()['H2ChatDirectSubscribers']


def test_pages_hold_their_streams_on_the_fast_path(server, node):
    posted, seen = [], {}

    def on_event(ev):
        if ev['event'] == 'ready':
            # two browsers: one stream each, both the loop's
            seen['direct_before'] = env.wait_until(lambda: direct_streams(server) == 2, 10)
            gen = server.generation()
            ids = [server.post_msg('third', f'before graceful {i}')[0] for i in range(2)]
            server.graceful(wait=False)
            ids += [server.post_msg('third', f'during graceful {i}')[0] for i in range(3)]
            assert env.wait_until(lambda: server.generation() != gen, 20, 0.1)
            ids += [server.post_msg('third', f'after graceful {i}')[0] for i in range(3)]
        else:
            assert ev['event'] == 'reconnected', ev
            seen['direct_after'] = env.wait_until(lambda: direct_streams(server) == 2, 15)
            ids = [server.post_msg('third', f'after reconnect {i}')[0] for i in range(2)]
        posted.extend(ids)
        return {'ids': ids}

    res, _ = run_scenario(server, node, 'graceful', on_event=on_event)
    print('fast path data:', json.dumps(res['data'], ensure_ascii=False)[:2000], seen)
    assert seen == {'direct_before': True, 'direct_after': True}, \
        (seen, server.h2chat_status())
    assert len(posted) == 10 and posted == sorted(posted), posted
    d = res['data']
    for i in (0, 1, 2):
        assert d[f'ids_{i}'] == posted, (i, d[f'ids_{i}'], posted)
