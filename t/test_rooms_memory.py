"""Rooms within bounds: H2ChatMemory and H2ChatMaxRooms. When memory runs
out, rooms nobody follows give their history back, least recently written
first; a room with streams keeps its messages; when nothing may give back,
a new room or message is refused (503, JSON, tag), nothing accepted is
lost. server-status shows what happened. And H2ChatJournal keeps rooms
across a full restart: each message back in its room."""

import os
import pwd
import time

import h2chat_env as env

HISTORY = 100
EXTRA_CONF = f"""
H2ChatHistory {HISTORY}
H2ChatMemory 64K
H2ChatMaxRooms 6
H2ChatMaxSubscribersPerAddress off
H2ChatJournal @ROOT@/journal/chat.journal
H2ChatJournalSync always
<Location /msgs>
    H2ChatRooms On
    H2ChatSnapshot 1000
</Location>
"""
CHUNK = 128
TEXT = 'x' * 200  # a message line of ~290 bytes: 3 chunks


def SETUP(server):
    d = server.root / 'journal'
    d.mkdir()
    pw = pwd.getpwnam('www-data')
    os.chown(d, pw.pw_uid, pw.pw_gid)


def post(server, room, text=TEXT, transport='h1'):
    return server.post({'user': 'u', 'text': text}, transport=transport,
                       path=f'/msgs/{room}')


def fill(server, room, n, text=TEXT):
    ids = []
    for i in range(n):
        r = post(server, room, f'{room} {i} {text}')
        assert r.status == 201, (r, server.errlog_tail())
        ids.append(r.json()['id'])
    return ids


def history(server, room, transport='h1'):
    """What a new stream of the room gets at once: (message ids, gap events)."""
    s = server.subscriber(transport, 'ndjson', path=f'/msgs/{room}', since=0)
    assert s.wait_headers(10) == 200, s.summary()
    time.sleep(0.5)
    s.close()
    return [m['id'] for m in s.messages], [e for e in s.events if e.get('type') == 'gap']


def test_idle_rooms_give_back_least_recent_first(server):
    """64K is ~512 chunks, ~170 messages of 3: a held room keeps its 40
    while three idle rooms take turns; the least recently written loses
    its history first, and says so to a later resume (a gap)."""
    keep = server.subscriber('h1', 'ndjson', path='/msgs/keep')
    assert keep.wait_headers(10) == 200
    kept = fill(server, 'keep', 40)
    old = fill(server, 'old', 40)
    mid = fill(server, 'mid', 40)
    st0 = server.h2chat_status()
    assert st0['H2ChatEvicted'] == 0, st0
    new = fill(server, 'new', 60)  # past the memory: 'old' gives back first
    st = server.h2chat_status()
    assert st['H2ChatEvicted'] > 0, st
    assert st['H2ChatMemoryUsed'] <= st['H2ChatMemory'] == 64 * 1024, st
    got_old, gaps_old = history(server, 'old')
    got_mid, gaps_mid = history(server, 'mid')
    got_keep, gaps_keep = history(server, 'keep')
    got_new, _ = history(server, 'new')
    assert got_keep == kept and not gaps_keep, (got_keep, gaps_keep)
    assert got_new == new
    # 'old' went first, and more of it than of 'mid'
    assert len(got_old) < len(got_mid) <= len(mid), (len(got_old), len(got_mid))
    assert got_old == old[len(old) - len(got_old):]
    assert gaps_old and gaps_old[0]['room'] == 'old' and gaps_old[0]['to'] >= old[0], gaps_old
    # the live stream of the held room lost nothing either
    keep.wait_for(40)
    assert [m['id'] for m in keep.messages] == kept, keep.summary()
    keep.close()
    assert st['H2ChatEvicted'] == (len(old) - len(got_old)) + (len(mid) - len(got_mid))


def test_full_of_held_rooms_refuses(server):
    """H2ChatMaxRooms 6 (the location's own among them): with every record
    held by a room with a stream, a new room is refused, on GET and POST,
    and on the direct path of the handler (h1, h2 TLS) alike."""
    server.close_subscribers()
    env.wait_until(lambda: server.h2chat_status()['H2ChatSubscribers'] == 0, 10)
    holders = [server.subscriber('h1', 'ndjson', path=f'/msgs/held{i}') for i in range(5)]
    for s in holders:
        assert s.wait_headers(10) == 200, s.summary()
    st = server.h2chat_status()
    assert st['H2ChatRooms'] == 6, st  # idle rooms gave their records
    assert st['H2ChatRoomsReclaimed'] >= 3, st
    before = st['H2ChatRefusedRooms']
    for transport in ('h1', 'h2tls'):
        mark = server.errlog_mark()
        r = env.curl_request(server.port, server.tls_port, transport, 'GET', '/msgs/another')
        env.assert_json_error(r, 503)
        assert r.headers.get('retry-after'), r.headers
        assert server.wait_errlog(r'H2C0057: .*503', mark), server.errlog_since(mark)
        r = post(server, 'another', 'x', transport=transport)
        env.assert_json_error(r, 503)
    assert server.h2chat_status()['H2ChatRefusedRooms'] == before + 4
    # a held room takes messages as before
    assert post(server, 'held0', 'still here').status == 201
    holders[0].wait_for(1)
    # one leaves: its room (with a message) is idle, and gives its record
    holders[1].close()
    env.wait_until(lambda: server.h2chat_status()['H2ChatSubscribers'] == 4, 10)
    assert post(server, 'another', 'now it fits').status == 201
    for s in holders:
        s.close()


def test_memory_full_of_held_rooms_refuses(server):
    """All the memory held by rooms with streams: a room that writes gives
    back its own oldest (never another held room's), and a message for an
    empty held room, which has nothing to give, is refused (503 H2C0058)."""
    server.close_subscribers()
    env.wait_until(lambda: server.h2chat_status()['H2ChatSubscribers'] == 0, 10)
    a = server.subscriber('h1', 'ndjson', path='/msgs/full-a')
    b = server.subscriber('h1', 'ndjson', path='/msgs/full-b')
    c = server.subscriber('h1', 'ndjson', path='/msgs/full-c')
    for s in (a, b, c):
        assert s.wait_headers(10) == 200
    ids_a = fill(server, 'full-a', 100)  # history 100: 300 chunks
    ids_b = fill(server, 'full-b', 80)   # 240 more: past the 512
    got_b = history(server, 'full-b')[0]
    assert got_b == ids_b[len(ids_b) - len(got_b):] and len(got_b) < 80, len(got_b)
    assert history(server, 'full-a')[0] == ids_a
    before = server.h2chat_status()['H2ChatRefusedRooms']
    mark = server.errlog_mark()
    r = post(server, 'full-c', 'no room for me ' + TEXT * 3)  # 7 chunks: more than are free
    env.assert_json_error(r, 503)
    assert server.wait_errlog(r'H2C0058: .*503', mark), server.errlog_since(mark)
    assert server.h2chat_status()['H2ChatRefusedRooms'] == before + 1
    assert history(server, 'full-a')[0] == ids_a
    # the live streams got every message that was accepted
    a.wait_for(100)
    b.wait_for(80)
    assert [m['id'] for m in a.messages] == ids_a
    assert [m['id'] for m in b.messages] == ids_b
    assert not c.messages
    for s in (a, b, c):
        s.close()


def test_journal_keeps_rooms(server):
    """A full stop/start replays the journal: each message back in its room
    with its id, the location's own too. The replay fills the memory there
    is (64K here, less than the journal holds): as always, rooms without
    streams (none has one during the replay) give back least recently
    written first, so the newest stay, and an older room keeps its newest."""
    server.close_subscribers()
    env.wait_until(lambda: server.h2chat_status()['H2ChatSubscribers'] == 0, 10)
    ids_j = fill(server, 'journal-room', 3, 'j')
    own = server.post_msg('u', 'to the location')[0]
    before_a = history(server, 'full-a')[0]
    server.stop()
    server.start()
    assert history(server, 'journal-room')[0] == ids_j
    got_a, gaps_a = history(server, 'full-a')
    assert got_a and got_a == before_a[len(before_a) - len(got_a):], (got_a, before_a)
    if len(got_a) < len(before_a):
        assert gaps_a and gaps_a[0]['room'] == 'full-a', gaps_a
    s = server.subscriber('h1', 'ndjson', since=own - 1)
    s.wait_for(1)
    assert s.messages[0]['id'] == own and 'room' not in s.messages[0], s.summary()
    s.close()
    assert server.h2chat_status()['H2ChatLastId'] == own
    assert 'H2C0031' in server.errlog_text()  # the replay said what it did
