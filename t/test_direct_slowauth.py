"""An auth provider that blocks (as LDAP or a database may) never stalls
the TLS fast path's loop (#15): httpd's checks run on the loop's own
threads. t/mod_slowauth.c (built here, loaded only by this test) makes user
"slow" wait 2 s in check_password. While POSTs of "slow" fill every check
thread of both children for seconds, 200 held streams keep receiving
what is posted elsewhere, at once, and the slow POSTs are answered in
the end, each of them."""

import json
import subprocess
import threading
import time

import h2chat_env as env

MPM = {'StartServers': 2, 'ServerLimit': 2, 'MaxRequestWorkers': 64}

EXTRA_CONF = """
LoadModule slowauth_module @ROOT@/mod_slowauth.so
H2ChatMaxSubscribers 400
H2ChatMaxSubscribersPerAddress off
""" + env.fast_vhost('/msgs') + """
<Location /msgs>
    H2ChatSnapshot 0
    AuthType Basic
    AuthName "slow"
    AuthBasicProvider slow
    Require valid-user
</Location>
"""

RECEIVERS = 200
SLOW_POSTS = 16  # 2 s each, 4 check threads per child: ~4 s of every thread


def SETUP(server):
    subprocess.run(['gcc', '-shared', '-fPIC', '-Wall', '-Werror',
                    '-I/usr/include/apache2', '-I/usr/include/apr-1.0',
                    '-o', str(server.root / 'mod_slowauth.so'),
                    str(env.REPO / 't' / 'mod_slowauth.c')], check=True, timeout=60)


def test_a_blocking_provider_stalls_nothing(server):
    auth = env.basic_auth('fast', 'pw')['Authorization']
    subs = [server.subscriber('h2tls', port=server.fast_port, user='fast:pw', lean=True)
            for _ in range(RECEIVERS)]
    assert all(s.wait_headers(30) == 200 for s in subs), [s.summary() for s in subs[:3]]
    assert env.wait_until(
        lambda: server.h2chat_status()['H2ChatDirectSubscribers'] == RECEIVERS, 15)
    answers = []

    def slow_post(i):
        r = env.curl_request(server.port, server.fast_port, 'h2tls', 'POST', '/msgs',
                             {'text': f'slow {i}'},
                             {'Content-Type': 'application/json',
                              **env.basic_auth('slow', 'pw')}, timeout=60)
        answers.append(r.status)

    posters = [threading.Thread(target=slow_post, args=(i,)) for i in range(SLOW_POSTS)]
    for t in posters:
        t.start()
    time.sleep(0.5)  # every check thread is now asleep in the provider
    # a message posted on the main origin reaches every held stream at once
    t0 = time.monotonic()
    r = env.curl_request(server.port, server.tls_port, 'h2tls', 'POST', '/msgs',
                         {'text': 'while auth is slow'},
                         {'Content-Type': 'application/json', 'Authorization': auth})
    assert r.status == 201, r
    nid = json.loads(r.body)['id']
    for s in subs:
        assert s.wait_event(lambda e: e.get('id') == nid, 3), s.summary()
    delivered_s = time.monotonic() - t0
    for t in posters:
        t.join(90)
    assert answers == [201] * SLOW_POSTS, answers
    assert delivered_s < 3, delivered_s  # the checks hold ~4 s of every thread
    for s in subs:
        s.close()
