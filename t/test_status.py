"""mod_status integration: the HTML page has a mod_h2chat section and
?auto has H2Chat* lines whose numbers agree with what the test did."""

import re
import time

import h2chat_env as env

HISTORY = 1000  # default H2ChatHistory


def test_fresh_server_lines(server):
    st = server.h2chat_status()
    for key in ('H2ChatSubscribers', 'H2ChatPublished', 'H2ChatLastId', 'H2ChatHistoryFill'):
        assert key in st, f'{key} missing from ?auto: {st}'
    assert st['H2ChatSubscribers'] == 0
    assert st['H2ChatPublished'] == 0
    assert st['H2ChatLastId'] == 0
    assert st['H2ChatHistoryFill'] == f'0/{HISTORY}'
    # H2ChatMaxSubscribersPerAddress by default: half the cap, rounded up
    assert st['H2ChatMaxSubscribersPerAddress'] == (st['H2ChatMaxSubscribers'] + 1) // 2, st
    refused = [k for k in st if k.startswith('H2ChatRefused')]
    assert refused, st
    for k in refused:
        assert st[k] == 0, st


def test_auto_format(server):
    r = env.request(server.port, 'GET', '/server-status?auto')
    lines = [line for line in r.body.decode().splitlines() if line.startswith('H2Chat')]
    assert lines
    for line in lines:
        assert re.fullmatch(r'H2Chat[A-Za-z]+: \S+', line), line


def test_numbers_follow_activity(server):
    st0 = server.h2chat_status()
    subs = server.subscribers([('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse')])
    assert all(s.status == 200 for s in subs)
    assert server.wait_subscribers(3) == 3
    ids = [server.post_msg('ann', f'status {i}')[0] for i in range(4)]
    st = server.h2chat_status()
    assert st['H2ChatPublished'] == st0['H2ChatPublished'] + 4, st
    assert st['H2ChatLastId'] == ids[-1], st
    fill, cap = st['H2ChatHistoryFill'].split('/')
    assert int(cap) == HISTORY and int(fill) == min(st['H2ChatLastId'], HISTORY), st
    # refused requests do not count as published
    r = server.post({'user': '', 'text': 'x'})
    assert r.status == 400
    assert server.h2chat_status()['H2ChatPublished'] == st['H2ChatPublished']
    for s in subs:
        s.close()
    assert server.wait_subscribers(0, 5) == 0


def test_html_section(server):
    subs = server.subscribers([('h2c', 'ndjson'), ('h1', 'sse')])
    assert server.wait_subscribers(2) == 2
    r = env.request(server.port, 'GET', '/server-status')
    assert r.status == 200
    html = r.body.decode('utf-8', 'replace')
    assert re.search(r'mod_h2chat', html), html[-2000:]
    # the section shows the live numbers, not only a title
    section = html[html.index('mod_h2chat'):]
    last = server.h2chat_status()['H2ChatLastId']
    assert re.search(r'\b2\b', section[:3000]), section[:3000]
    assert re.search(rf'\b{last}\b', section[:3000]), section[:3000]
    for s in subs:
        s.close()
    time.sleep(0.1)
