"""Presence: a room's count is the streams that hold it on every child,
whatever their transport (H2ChatPresence count, the default; here members,
which keeps the counts and adds who). Each held
stream is told its rooms' counts when it starts and when they change (at
most once a second); GET <room>?presence answers the count now. A child
killed with -9 takes its streams out of the counts within a few seconds.
With members, a person (?user=, or the authenticated user) is one member
however many streams, transports and children hold them: a join with the
first, a leave with the last, also when a child is killed."""

import time

import pytest

import h2chat_env as env
import h2chat_rel as rel

EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribersPerAddress off
<Location /msgs>
    H2ChatRooms On
    H2ChatHeartbeat 5
    H2ChatPresence members
</Location>
<LocationMatch "^/msgs/vip(/|$)">
    AuthType Basic
    AuthName "vip"
    AuthBasicProvider file
    AuthUserFile "@ROOT@/htpasswd"
    Require valid-user
</LocationMatch>
<Location /quiet>
    H2Chat On
    H2ChatPresence off
</Location>
"""

# h2c: the direct loop; h2tls: mod_http2 (two threads a stream); h1
SPREAD = [('h2c', 'ndjson'), ('h2c', 'sse'), ('h2tls', 'ndjson'), ('h1', 'sse'),
          ('h1', 'ndjson'), ('h1', 'ndjson')]


USERS = {'alice': 'a11ce'}


def SETUP(server):
    env.write_htpasswd(server, USERS)


def count(server, room):
    r = server.get(f'/msgs/{room}?presence')
    assert r.status == 200, r
    obj = r.json()
    assert obj['room'] == room, obj
    return obj['count']


def last_presence(s, room):
    seen = [e['count'] for e in s.events if e.get('type') == 'presence' and
            e.get('room') == room]
    return seen[-1] if seen else None


def wait_count(server, room, n, timeout=5):
    return env.wait_until(lambda: count(server, room) == n, timeout, 0.1)


def test_counts_across_transports_and_children(server):
    assert count(server, 'p') == 0
    subs = [server.subscriber(t, m, path='/msgs/p') for t, m in SPREAD]
    for s in subs:
        assert s.wait_headers(10) == 200, s.summary()
    t0 = time.monotonic()
    assert wait_count(server, 'p', len(subs), 1.5), count(server, 'p')
    assert time.monotonic() - t0 < 1.5
    per_child = [n for n in rel.per_child(server).values() if n]
    assert len(per_child) >= 2, rel.per_child(server)  # more than one child holds them
    # every stream is told the count, within about a second of the last join
    for s in subs:
        assert s.wait_event(lambda e: e.get('type') == 'presence' and
                            e.get('count') == len(subs), 4), s.summary()
    for s in subs[:2]:
        s.close()
    assert wait_count(server, 'p', len(subs) - 2, 3), count(server, 'p')
    for s in subs[2:]:
        assert s.wait_event(lambda e: e.get('type') == 'presence' and
                            e.get('count') == len(subs) - 2, 4), s.summary()
        # never more than one presence line a second per stream
        stamps = [e for e in s.events if e.get('type') == 'presence']
        assert len(stamps) <= 2 + (time.monotonic() - t0) + 1, stamps
    for s in subs[2:]:
        s.close()
    assert wait_count(server, 'p', 0, 3)


def test_stream_of_several_rooms_told_each(server):
    a = server.subscriber('h2c', 'ndjson', path='/msgs?room=q1&room=q2')
    b = server.subscriber('h1', 'ndjson', path='/msgs/q2')
    for s in (a, b):
        assert s.wait_headers(10) == 200
    assert a.wait_event(lambda e: e.get('type') == 'presence' and e.get('room') == 'q2'
                        and e.get('count') == 2, 4), a.summary()
    assert last_presence(a, 'q1') == 1, a.summary()
    r = server.get('/msgs?room=q1&room=q2&presence')
    # (members: this location lists who; these streams named nobody)
    assert r.status == 200 and r.json() == [{'room': 'q1', 'count': 1, 'members': []},
                                            {'room': 'q2', 'count': 2, 'members': []}], r
    r = env.curl_request(server.port, server.tls_port, 'h2c', 'GET', '/msgs/q2?presence')
    assert r.status == 200 and r.json() == {'room': 'q2', 'count': 2, 'members': []}, r  # direct
    for s in (a, b):
        s.close()


def test_presence_off_tells_nothing(server):
    s = server.subscriber('h1', 'ndjson', path='/quiet')
    assert s.wait_headers(10) == 200
    other = server.subscriber('h1', 'ndjson', path='/quiet')
    assert other.wait_headers(10) == 200
    time.sleep(2.5)
    assert not [e for e in s.events if e.get('type') == 'presence'], s.summary()
    s.close()
    other.close()


def test_killed_child_leaves_the_count(server):
    subs = [server.subscriber('h1', 'ndjson', path='/msgs/k') for _ in range(9)]
    for s in subs:
        assert s.wait_headers(10) == 200
    assert wait_count(server, 'k', 9, 3)
    held = {pid: n for pid, n in rel.per_child(server).items() if n}
    victim = max(held, key=held.get)
    rel.kill_pid(server, victim)
    t0 = time.monotonic()
    # the victim's clients see their connection end (other streams it held
    # were not in this room)
    assert env.wait_until(lambda: any(s.ended for s in subs), 5)
    time.sleep(0.5)
    survivors = [s for s in subs if not s.ended]
    assert 0 < len(survivors) < 9, [s.summary() for s in subs]
    assert wait_count(server, 'k', len(survivors), 6), (count(server, 'k'), held)
    took = time.monotonic() - t0
    assert took < 6, took
    # the streams of the other children are told the new count
    for s in survivors:
        assert s.wait_event(lambda e: e.get('type') == 'presence' and
                            e.get('count') == len(survivors), 4), s.summary()
    for s in subs:
        s.close()
    assert wait_count(server, 'k', 0, 3)


def test_graceful_restart_leaves_no_phantoms(server):
    """Streams a graceful restart ends leave their rooms' counts (the old
    generation lets go as its streams end); new ones count as before."""
    subs = [server.subscriber(t, m, path='/msgs/g') for t, m in SPREAD]
    for s in subs:
        assert s.wait_headers(10) == 200
    assert wait_count(server, 'g', len(subs), 3)
    server.graceful()
    assert env.wait_until(lambda: all(s.ended for s in subs), 15), \
        [s.summary() for s in subs if not s.ended]
    assert wait_count(server, 'g', 0, 6), count(server, 'g')
    again = [server.subscriber('h1', 'ndjson', path='/msgs/g') for _ in range(3)]
    for s in again:
        assert s.wait_headers(10) == 200
    assert wait_count(server, 'g', 3, 3)
    for s in again:
        s.close()


def members(server, room, headers=None):
    r = server.get(f'/msgs/{room}?presence', headers=headers)
    assert r.status == 200, r
    return sorted(r.json()['members'])


def said(s, room):
    """(kind, user) of the member lines a stream got for room, in order;
    a members list as ('members', sorted names)."""
    out = []
    for e in s.events:
        if e.get('room') != room:
            continue
        if e.get('type') in ('join', 'leave'):
            out.append((e['type'], e['user']))
        elif e.get('type') == 'members':
            out.append(('members', tuple(sorted(e['members']))))
    return out


def view(s, room):
    """The members a stream knows of now: its last list, with the joins and
    leaves since."""
    names = set()
    for kind, who in said(s, room):
        if kind == 'members':
            names = set(who)
        elif kind == 'join':
            names.add(who)
        else:
            names.discard(who)
    return sorted(names)


def test_members_one_person_many_streams(server):
    """Three streams of ann (the direct loop, mod_http2, HTTP/1.1, on
    whichever children) are one member: one join, and a leave only with the
    last; a watcher (no ?user=) is counted, not listed; ?presence lists who."""
    room = 'm1'
    w = server.subscriber('h1', 'ndjson', path=f'/msgs/{room}')
    assert w.wait_headers(10) == 200
    assert w.wait_event(lambda e: e.get('type') == 'members', 3), w.summary()
    ann = [server.subscriber(t, m, path=f'/msgs/{room}?user=ann')
           for t, m in (('h2c', 'ndjson'), ('h2tls', 'sse'), ('h1', 'ndjson'))]
    bob = server.subscriber('h2c', 'sse', path=f'/msgs/{room}?user=bob')
    for s in ann + [bob]:
        assert s.wait_headers(10) == 200, s.summary()
    assert env.wait_until(lambda: members(server, room) == ['ann', 'bob'], 3), \
        members(server, room)
    assert count(server, room) == 5
    assert w.wait_event(lambda e: e.get('type') == 'join' and e['user'] == 'bob', 3)
    time.sleep(1.2)
    assert said(w, room) == [('members', ()), ('join', 'ann'), ('join', 'bob')], w.summary()
    # bob's stream started with a list that has ann (and himself, or his join)
    first = [e for e in bob.events if e.get('type') == 'members']
    assert first and 'ann' in first[0]['members'], bob.summary()
    ann[0].close()
    ann[1].close()
    time.sleep(2.2)
    assert members(server, room) == ['ann', 'bob']
    assert ('leave', 'ann') not in said(w, room), w.summary()
    ann[2].close()
    assert w.wait_event(lambda e: e.get('type') == 'leave' and e['user'] == 'ann', 3), \
        w.summary()
    assert members(server, room) == ['bob']
    assert said(w, room).count(('join', 'ann')) == 1
    bob.close()
    w.close()


def test_members_authenticated_user_counts(server):
    """Where the room's URL authenticates, the member is r->user, whatever
    ?user= says; a bad ?user= elsewhere is refused (400, H2C0063)."""
    alice = env.basic_auth('alice', USERS['alice'])
    s = server.subscriber('h1', 'ndjson', path='/msgs/vip?user=mallory', extra_headers=alice)
    assert s.wait_headers(10) == 200, s.summary()
    assert env.wait_until(lambda: members(server, 'vip', alice) == ['alice'], 3)
    mark = server.errlog_mark()
    for bad in ('', 'a%0Ab', 'x' * 65, '%FF'):
        r = server.get(f'/msgs/m2?user={bad}')
        env.assert_json_error(r, 400)
    assert server.wait_errlog(r'H2C0063: .*400', mark), server.errlog_since(mark)
    s.close()


def test_members_killed_child_leave(server):
    """kill -9 of a child: people whose every stream it held leave (their
    leave reaches the surviving streams), the others stay, within a few
    seconds."""
    room = 'mk'
    people = [f'p{i}' for i in range(6)]
    subs = {p: [server.subscriber('h1', 'ndjson', path=f'/msgs/{room}?user={p}')
                for _ in range(2 if i % 2 else 1)] for i, p in enumerate(people)}
    for s in [s for v in subs.values() for s in v]:
        assert s.wait_headers(10) == 200, s.summary()
    assert env.wait_until(lambda: members(server, room) == people, 3), members(server, room)
    held = {pid: n for pid, n in rel.per_child(server).items() if n}
    victim = max(held, key=held.get)
    # watchers, one at a time (each one's child seen in the per-child
    # counts), until two sit on other children than the victim
    watchers, elsewhere = [], 0
    for i in range(24):
        before = rel.per_child(server)
        w = server.subscriber(('h1', 'h2c', 'h2tls')[i % 3], 'ndjson', path=f'/msgs/{room}')
        assert w.wait_headers(10) == 200, w.summary()
        assert env.wait_until(lambda: rel.per_child(server) != before, 3)
        grew = [pid for pid, n in rel.per_child(server).items() if n > before.get(pid, 0)]
        watchers.append(w)
        elsewhere += grew != [victim]
        if elsewhere >= 2:
            break
    assert elsewhere >= 2, rel.per_child(server)
    rel.kill_pid(server, victim)
    assert env.wait_until(lambda: any(s.ended for v in subs.values() for s in v), 5)
    time.sleep(0.5)
    stay = sorted(p for p, v in subs.items() if any(not s.ended for s in v))
    gone = sorted(set(people) - set(stay))
    assert gone and stay, (gone, stay)
    assert env.wait_until(lambda: members(server, room) == stay, 6), \
        (members(server, room), stay)
    live = [w for w in watchers if not w.ended]
    assert live
    for w in live:
        # what the stream was told adds up to who stays: the leaves, or (a
        # stream whose first look came after the kill) a list without them
        assert env.wait_until(lambda w=w: view(w, room) == stay, 4), (said(w, room), stay)
        assert not [p for k, p in said(w, room) if k == 'leave' and p in stay], w.summary()
    for s in [s for v in subs.values() for s in v] + watchers:
        s.close()
    assert env.wait_until(lambda: members(server, room) == [], 5)
