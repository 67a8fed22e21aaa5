"""An auth provider that blocks (as LDAP or a database may) never stalls
the TLS fast path's loop (#15): httpd's checks run on the loop's own
threads. t/mod_slowauth.c (built here, loaded only by this test) makes user
"slow" wait 2 s in check_password. While POSTs of "slow" fill every check
thread of both children for seconds, 200 held streams keep receiving
what is posted elsewhere, at once, and the slow POSTs are answered in
the end, each of them. The access log lines of what the loop answers
before the check wait for those threads too, up to a bound: past it they
are dropped and said (H2C0064), never queued without end."""

import json
import re
import subprocess
import threading
import time

import h2chat_attack as h2
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
SLOW_FLOOD_POSTS = 40  # ~10 s of every thread


def SETUP(server):
    subprocess.run(['gcc', '-shared', '-fPIC', '-Wall', '-Werror',
                    '-I/usr/include/apache2', '-I/usr/include/apr-1.0',
                    '-o', str(server.root / 'mod_slowauth.so'),
                    str(env.REPO / 't' / 'mod_slowauth.c')], check=True, timeout=60)


def slow_posters(server, n, answers):
    """n POSTs of user "slow" (2 s each in the provider), each on its own
    connection and thread, not yet started; their statuses go to answers."""
    def post(i):
        r = env.curl_request(server.port, server.fast_port, 'h2tls', 'POST', '/msgs',
                             {'text': f'slow {i}'},
                             {'Content-Type': 'application/json',
                              **env.basic_auth('slow', 'pw')}, timeout=60)
        answers.append(r.status)
    return [threading.Thread(target=post, args=(i,)) for i in range(n)]


def test_a_blocking_provider_stalls_nothing(server):
    auth = env.basic_auth('fast', 'pw')['Authorization']
    subs = [server.subscriber('h2tls', port=server.fast_port, user='fast:pw', lean=True)
            for _ in range(RECEIVERS)]
    assert all(s.wait_headers(30) == 200 for s in subs), [s.summary() for s in subs[:3]]
    assert env.wait_until(
        lambda: server.h2chat_status()['H2ChatDirectSubscribers'] == RECEIVERS, 15)
    answers = []

    posters = slow_posters(server, SLOW_POSTS, answers)
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


def test_early_answers_log_lines_are_bounded_while_checks_wait(server):
    """12,000 requests for another path (404, answered by the loop before
    any check) on 30 connections while every check thread sleeps in the
    provider: their log lines queue up to 4,096 jobs per child, the rest
    are dropped and counted with H2C0064 (one child at least gets 6,000);
    every line not dropped is written once the threads are free, and the
    loop answered every request at once."""
    conns, per_conn, batch = 30, 400, 100
    flood = conns * per_conn
    mark = server.errlog_mark()
    before = len(server.access_log.read_text())
    answers = []

    # 40 connections over 2 children: each child's 4 threads busy ~10 s
    posters = slow_posters(server, SLOW_FLOOD_POSTS, answers)
    for t in posters:
        t.start()
    time.sleep(0.5)
    for k in range(conns):
        # windows wide open at the start: no WINDOW_UPDATE per answer (the
        # loop's budget counts those), so each connection is under it
        conn = h2.RawH2(server.fast_port, tls=True, start=False, polite=False)
        conn.send(h2.client_start([(h2.SETTINGS_INITIAL_WINDOW_SIZE, 2 ** 31 - 1)]) +
                  h2.window_update(0, 2 ** 31 - 1 - 65535))
        try:
            for first in range(0, per_conn, batch):
                sids = [conn.request('GET', f'/elsewhere?flood={k}.{first + i}')
                        for i in range(batch)]
                for sid in sids:
                    conn.answer(sid, timeout=10)
                assert [conn.streams[sid].status for sid in sids] == [404] * batch, \
                    (k, first, conn.goaways, conn.closed)
        finally:
            conn.close()
    # all answered while the threads still slept (else nothing was queued)
    assert len(answers) < SLOW_FLOOD_POSTS, answers
    for t in posters:
        t.join(90)
    assert answers == [201] * SLOW_FLOOD_POSTS, answers
    line = re.compile(r'"GET /elsewhere\?flood=[\d.]+ HTTP/2\.0" 404 ')

    def written():
        return len(line.findall(server.access_log.read_text()[before:]))

    said = re.compile(r'\[pid (\d+):[^]]*\] H2C0064: (\d+) access log lines')

    def dropped():
        """Per child, the highest count it said: its drops are in
        [said, 2 x said) (it speaks at each power of two)."""
        top = {}
        for pid, count in said.findall(server.errlog_since(mark)):
            top[pid] = max(top.get(pid, 0), int(count))
        return top

    assert env.wait_until(dropped, 10), server.errlog_since(mark)[-2000:]
    # every line not dropped is written once the threads are free: the
    # queue held at most 4,096 per child (a child whose threads woke
    # during the flood wrote more, and dropped less)
    assert env.wait_until(
        lambda: written() > flood - sum(2 * d for d in dropped().values()), 30), \
        (written(), dropped())
    time.sleep(1)
    n, top = written(), dropped()
    time.sleep(1)
    assert written() == n
    assert flood - sum(2 * d - 1 for d in top.values()) <= n <= \
        flood - sum(top.values()), (n, top)
    assert n >= 4096 - SLOW_FLOOD_POSTS, n
