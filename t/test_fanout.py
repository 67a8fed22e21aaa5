"""Fan-out: 30+ subscribers, each on its own connection, spread over the
children of the event MPM, over h2c, h2 (TLS) and HTTP/1.1 (SSE); 20 POSTs
each on a new connection; every subscriber gets exactly those 20, once, in
id order, byte for byte."""

import json
import time

import h2chat_env as env

PER_TRANSPORT = 11
SPECS = [('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse')] * PER_TRANSPORT

TEXTS = [
    'plain hello',
    '<b>&amp;</b>',
    'quotes "double" and \'single\'',
    'back\\slash \\n not a newline \\u0041 \\',
    'caf\u00e9 \u00e9\u00e8\u00ea',
    '\u65e5\u672c\u8a9e \u65e5\u672c',
    'emoji \U0001F600\U0001F389',
    'line1\nline2\n\nline4\n',
    'tab\tseparated\tvalues\t',
    '</script><script>alert("x")</script>',
    'mixed "<\u00e9>" \\ \t \n \U0001F600 \'',
    '  leading and trailing spaces  ',
    '{"type":"message","id":1,"user":"evil"}',
    'data: fake sse\n\nid: 999\nevent: gap\n\n',
    'x' * 1000,
    'separators \u2028 and \u2029',
    'zero width \u200b joiner \u200d',
    'RTL \u05e9\u05dc\u05d5\u05dd \u0645\u0631\u062d\u0628\u0627',
    '%00 %41 + &amp; ?since=1 \\"',
    'last message \u2713',
]
USERS = ['ann', 'bob', 'Zo\u00eb', '\u5c71\u7530', 'o\'neil "q"']
POST_TRANSPORTS = ['h1', 'h2c', 'h2tls']
MAX_FILLERS = 56  # stays under the default cap, 3/4 of MaxRequestWorkers
# up to 33 + 56 streams from 127.0.0.1: more than the default per-address
# cap (half the server-wide one)
EXTRA_CONF = 'H2ChatMaxSubscribersPerAddress off\n'


def test_fanout(server):
    assert len(TEXTS) == 20
    children = server.children()
    assert len(children) >= 3, f'expected >= 3 children, got {children}'
    assert server.h2chat_status().get('H2ChatLastId') == 0, 'fresh server expected'

    subs = server.subscribers(SPECS)
    expect_version = {'h2c': '2', 'h2tls': '2', 'h1': '1.1'}
    for s in subs:
        assert s.status == 200, s.summary()
        assert s.version == expect_version[s.transport], s.summary()
        ctype = s.headers.get('content-type', '')
        if s.mode == 'sse':
            assert ctype.split(';')[0] == 'text/event-stream', ctype
        else:
            assert ctype.replace(' ', '').lower() == 'application/x-ndjson;charset=utf-8', ctype
        if s.transport == 'h1':
            assert s.headers.get('transfer-encoding', '').lower() == 'chunked', s.headers
    # The kernel hands new connections to whichever child accepts first, so
    # the 33 may land on two children only. More held HTTP/1.1 streams (each
    # occupies a worker thread) fill those up until a third child accepts.
    children_wanted = min(3, len(children))
    holders = server.connection_holders()
    while len(holders) < children_wanted and len(subs) < len(SPECS) + MAX_FILLERS:
        subs += server.subscribers([('h1', 'ndjson')] * 4)
        holders = server.connection_holders()
    assert len(holders) >= children_wanted, \
        f'connections held by {holders} only (children {children})'
    for s in subs:
        assert s.status == 200, s.summary()
    n = server.wait_subscribers(len(subs), timeout=10)
    assert n == len(subs), f'H2ChatSubscribers {n}, expected {len(subs)}'
    assert sum(server.connection_holders().values()) >= len(subs)

    expected = []
    last_id = 0
    for i, text in enumerate(TEXTS):
        user = USERS[i % len(USERS)]
        body = json.dumps({'user': user, 'text': text}, ensure_ascii=bool(i % 2))
        r = server.post(body.encode('utf-8'), POST_TRANSPORTS[i % 3])
        assert r.status == 201, f'POST #{i}: {r!r}'
        assert r.headers.get('content-type', '').startswith('application/json'), r
        reply = r.json()
        assert isinstance(reply.get('id'), int) and reply['id'] > last_id, (reply, last_id)
        assert isinstance(reply.get('time'), int)
        assert abs(reply['time'] - env.now_ms()) < 60000, reply
        last_id = reply['id']
        expected.append((reply['id'], user, text, reply['time']))

    deadline = time.monotonic() + 20
    for s in subs:
        s.wait_for(len(expected), max(0.1, deadline - time.monotonic()))
    time.sleep(0.5)  # room for duplicates to show up

    failures = []
    for s in subs:
        got = [(m.get('id'), m.get('user'), m.get('text'), m.get('time')) for m in s.messages]
        if got != expected or s.bad_lines or s.ended:
            failures.append(s.summary())
            continue
        for m in s.messages:
            if s.mode == 'sse':
                assert m['_sse_id'] == str(m['id']), m
                assert m['_sse_event'] in (None, 'message'), m
            else:
                assert m['type'] == 'message', m
    assert not failures, f'{len(failures)}/{len(subs)} subscribers wrong:\n' + \
        '\n'.join(failures[:5]) + '\nexpected ids ' + str([e[0] for e in expected])

    st = server.h2chat_status()
    assert st.get('H2ChatLastId') == last_id, st
    assert st.get('H2ChatPublished') == len(TEXTS), st
