"""A thousand rooms on 3 children: subscribers on the direct loop (h2c),
mod_http2 (h2 over TLS) and HTTP/1.1, some following one room, some five,
some fifty; each gets exactly its rooms' messages, once, in order, with
their text intact (#14, acceptance 1)."""

import http.client
import json
import time

import h2chat_env as env

ROOMS = [f'r{i:04d}' for i in range(1000)]
PER_ROOM = 2
EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribersPerAddress off
<Location /msgs>
    H2ChatRooms On
    H2ChatMaxRoomsPerStream 64
    H2ChatSnapshot 0
</Location>
"""


def plan():
    """(transport, mode, rooms) of each subscriber."""
    subs = [('h2c', ('ndjson', 'sse')[i % 2], ROOMS[i * 50:(i + 1) * 50])
            for i in range(20)]                       # the direct loop: all 1,000
    subs += [('h2tls', ('ndjson', 'sse')[i % 2], ROOMS[i * 5:(i + 1) * 5])
             for i in range(8)]                       # mod_http2: five each
    subs += [('h1', 'ndjson', [ROOMS[40 + i]]) for i in range(8)]   # one each
    subs += [('h1', 'sse', ROOMS[100 + i * 5:105 + i * 5]) for i in range(4)]
    return subs


def path_of(rooms):
    return f'/msgs/{rooms[0]}' + ('?' + '&'.join(f'room={r}' for r in rooms[1:])
                                  if len(rooms) > 1 else '')


def test_thousand_rooms(server):
    assert len(server.children()) >= 3, server.children()
    subs = []
    for transport, mode, rooms in plan():
        s = server.subscriber(transport, mode, path=path_of(rooms), lean=False)
        subs.append((s, rooms))
    for s, _ in subs:
        assert s.wait_headers(15) == 200, s.summary()
    assert server.wait_subscribers(len(subs), 15) == len(subs)
    # one keep-alive connection posts 2 messages to each room, rooms interleaved
    posted = {r: [] for r in ROOMS}
    conn = http.client.HTTPConnection('127.0.0.1', server.port, timeout=10)
    t0 = time.monotonic()
    for k in range(PER_ROOM):
        for room in ROOMS:
            text = f'{room} #{k} ü € 🙂'
            conn.request('POST', f'/msgs/{room}', body=json.dumps({'user': 'p', 'text': text}),
                         headers={'Content-Type': 'application/json'})
            resp = conn.getresponse()
            body = resp.read()
            assert resp.status == 201, (resp.status, body)
            posted[room].append((json.loads(body)['id'], text))
    conn.close()
    took = time.monotonic() - t0
    st = server.h2chat_status()
    assert st['H2ChatRooms'] >= len(ROOMS), st
    for s, rooms in subs:
        want = sorted((i, r, t) for r in rooms for i, t in posted[r])
        s.wait_for(len(want), 30)
    time.sleep(1)
    for s, rooms in subs:
        want = sorted((i, r, t) for r in rooms for i, t in posted[r])
        got = [(m['id'], m['room'], m['text']) for m in s.messages]
        assert got == want, (s.summary(), len(got), len(want))
    for s, _ in subs:
        s.close()
    print(f'2,000 posts to 1,000 rooms in {took:.1f} s; {len(subs)} subscribers')
