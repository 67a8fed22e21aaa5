"""Moderation: DELETE <location>/<room>/<id> removes a message and tells
every stream of the room ({"type":"delete","room":..,"id":..}, SSE `event:
delete`); DELETE <location>/<room> clears the room and ends its streams.
Who may is Apache's config (<Limit DELETE> + Require); without an
authenticated user only with H2ChatAnonymousDelete On (the direct loop runs
no httpd auth). The entries are logged in their room, so a resume, a
snapshot and a journal replay all see the message gone."""

import os
import pwd
import time

import pytest

import h2chat_env as env

EXTRA_CONF = """
H2ChatDirect /anon
H2ChatHistory 10
H2ChatMaxSubscribersPerAddress off
H2ChatJournal @ROOT@/journal/chat.journal
H2ChatJournalSync always
<Location /msgs>
    H2ChatRooms On
    H2ChatSnapshot 5
    H2ChatHeartbeat 2
    AuthType Basic
    AuthName "moderators"
    AuthBasicProvider file
    AuthUserFile "@ROOT@/htpasswd"
    <Limit DELETE>
        Require user boss
    </Limit>
</Location>
<Location /anon>
    H2Chat On
    H2ChatRooms On
    H2ChatSnapshot 5
    H2ChatHeartbeat 2
    H2ChatAnonymousDelete On
</Location>
<Location /plain>
    H2Chat On
</Location>
<Location /solo>
    H2Chat On
    H2ChatAnonymousDelete On
</Location>
"""
USERS = {'boss': 'b0ss', 'worker': 'w0rk'}


def SETUP(server):
    env.write_htpasswd(server, USERS)
    d = server.root / 'journal'
    d.mkdir()
    pw = pwd.getpwnam('www-data')
    os.chown(d, pw.pw_uid, pw.pw_gid)


def basic(user):
    return env.basic_auth(user, USERS[user])


# (transport, mode, location): the direct loop (h2c) serves /anon only, and
# runs no httpd auth; mod_http2 (h2 over TLS) and HTTP/1.1 serve /msgs
TRANSPORTS = [('h2c', 'ndjson', '/anon'), ('h2c', 'sse', '/anon'),
              ('h2tls', 'ndjson', '/msgs'), ('h2tls', 'sse', '/msgs'),
              ('h1', 'ndjson', '/msgs'), ('h1', 'sse', '/msgs')]


def post(server, loc, room, text, transport='h1'):
    r = server.post({'user': 'u', 'text': text}, transport=transport,
                    path=f'{loc}/{room}' if room else loc)
    assert r.status == 201, (r, server.errlog_tail())
    return r.json()['id']


def delete(server, path, transport='h1', user='boss'):
    return env.curl_request(server.port, server.tls_port, transport, 'DELETE', path,
                            headers=basic(user) if user else None, timeout=5)


def sub(server, transport, mode, path, **kw):
    s = server.subscriber(transport, mode, path=path, **kw)
    assert s.wait_headers(10) == 200, s.summary()
    return s


def kinds(s, kind):
    return [e for e in s.events if e.get('type') == kind]


@pytest.mark.parametrize('transport,mode,loc', TRANSPORTS)
def test_delete_a_message(server, transport, mode, loc):
    """The message leaves the history (snapshot, resume) and every stream of
    its room gets the delete, in its place after the messages before it;
    SSE names the event and gives it an id (the resume token); the error log
    says who deleted what."""
    room = f'del-{transport}-{mode}'
    user = None if loc == '/anon' else 'boss'
    s = sub(server, transport, mode, f'{loc}/{room}')
    m1 = post(server, loc, room, 'rude words')
    m2 = post(server, loc, room, 'kind words')
    s.wait_for(2)
    mark = server.errlog_mark()
    r = delete(server, f'{loc}/{room}/{m1}', transport, user)
    assert r.status == 200, (r, server.errlog_tail())
    assert r.json() == {'type': 'delete', 'room': room, 'id': m1}, r.json()
    got = s.wait_event(lambda e: e.get('type') == 'delete', 5)
    assert [(e['room'], e['id']) for e in got] == [(room, m1)], s.summary()
    if mode == 'sse':
        assert got[0]['_sse_event'] == 'delete' and int(got[0]['_sse_id']) > m2, got
    who = 'anonymous' if user is None else 'boss'
    assert server.wait_errlog(rf'H2C0062: room {room}: message {m1} deleted by {who}', mark), \
        server.errlog_since(mark)
    # gone from the history: a new stream's snapshot, a resume from before it
    for kw in ({}, {'since': m1 - 1} if mode == 'ndjson' else {'last_event_id': m1 - 1}):
        n = sub(server, transport, mode, f'{loc}/{room}', **kw)
        n.wait_event(lambda e: e.get('type') == 'delete', 5)
        time.sleep(0.2)
        assert [m['id'] for m in n.messages] == [m2], (kw, n.summary())
        assert [e['id'] for e in kinds(n, 'delete')] == [m1], n.summary()
        assert not n.ended, n.summary()
        n.close()
    # deleting it again, or the delete entry itself: nothing there
    r = delete(server, f'{loc}/{room}/{m1}', transport, user)
    env.assert_json_error(r, 404)
    assert str(m1) in r.json()['error'] and room in r.json()['error'], r.json()
    s.close()


@pytest.mark.parametrize('transport,mode,loc', TRANSPORTS)
def test_clear_a_room(server, transport, mode, loc):
    """DELETE <room>: its history goes, every stream following it (alone or
    with other rooms) gets the clear and ends; other rooms keep theirs; a
    new stream of the room starts from nothing and is not ended by the clear
    it finds there."""
    room, other = f'clr-{transport}-{mode}', f'keep-{transport}-{mode}'
    user = None if loc == '/anon' else 'boss'
    alone = sub(server, transport, mode, f'{loc}/{room}')
    both = sub(server, transport, mode, f'{loc}?room={room}&room={other}')
    post(server, loc, room, 'one')
    kept = post(server, loc, other, 'stays')
    both.wait_for(2)
    r = delete(server, f'{loc}/{room}', transport, user)
    assert r.status == 200, (r, server.errlog_tail())
    assert r.json() == {'type': 'clear', 'room': room}, r.json()
    for s in (alone, both):
        assert s.wait_end(5), s.summary()
        assert [e['room'] for e in kinds(s, 'clear')] == [room], s.summary()
    n = sub(server, transport, mode, f'{loc}?room={room}&room={other}')
    n.wait_for(1)
    n.wait_event(lambda e: e.get('type') == 'clear', 5)
    time.sleep(0.3)
    assert [m['id'] for m in n.messages] == [kept], n.summary()
    assert not n.ended, n.summary()
    after = post(server, loc, room, 'fresh start')
    assert [m['id'] for m in n.wait_for(2)] == [kept, after], n.summary()
    n.close()
    r = delete(server, f'{loc}/never-{transport}-{mode}', transport, user)
    env.assert_json_error(r, 404)


@pytest.mark.parametrize('transport', ['h2tls', 'h1'])
def test_who_may_delete(server, transport):
    """Apache decides: <Limit DELETE> Require user boss asks others for
    credentials (401) and leaves GET and POST alone; a location without
    authentication refuses every DELETE (403, H2C0060) unless it says
    H2ChatAnonymousDelete On; nothing is removed by a refused DELETE."""
    room = f'who-{transport}'
    mid = post(server, '/msgs', room, 'precious')
    assert delete(server, f'/msgs/{room}/{mid}', transport, None).status == 401
    assert delete(server, f'/msgs/{room}/{mid}', transport, 'worker').status == 401
    mark = server.errlog_mark()
    pid = post(server, '/plain', None, 'plain precious')
    r = delete(server, f'/plain?id={pid}', transport, None)
    env.assert_json_error(r, 403)
    assert 'H2ChatAnonymousDelete' in r.json()['error'], r.json()
    assert server.wait_errlog(r'H2C0060: .*403', mark), server.errlog_since(mark)
    s = sub(server, transport, 'ndjson', f'/msgs/{room}')
    s.wait_for(1)
    assert [m['id'] for m in s.messages] == [mid], s.summary()
    p = sub(server, transport, 'ndjson', '/plain', since=pid - 1)
    assert [m['id'] for m in p.wait_for(1)][:1] == [pid], p.summary()
    # the boss may; a bad target is a 400, whoever asks
    r = delete(server, f'/msgs/{room}?id=abc', transport)
    env.assert_json_error(r, 400)
    r = delete(server, f'/msgs/{room}/{mid}', transport)
    assert r.status == 200, r
    assert s.wait_event(lambda e: e.get('type') == 'delete', 5), s.summary()
    s.close()
    p.close()


def test_default_room_by_id(server):
    """The location's own room has no path of its own messages
    (<location>/17 is room "17"): ?id= names one."""
    mid = post(server, '/msgs', None, 'own room')
    other = post(server, '/msgs', None, 'own room 2')
    r = delete(server, f'/msgs?id={mid}')
    assert r.status == 200 and r.json() == {'type': 'delete', 'id': mid}, r
    s = sub(server, 'h1', 'ndjson', '/msgs', since=mid - 1)
    s.wait_for(1)
    time.sleep(0.2)
    assert [m['id'] for m in s.messages] == [other], s.summary()
    s.close()


def test_without_rooms_only_the_location(server):
    """Without H2ChatRooms a DELETE names the location itself (or ?id=): a
    path under it is 404 and clears nothing."""
    mid = post(server, '/solo', None, 'solo one')
    r = delete(server, '/solo/typo', user=None)
    env.assert_json_error(r, 404)
    assert '/solo?id=<id>' in r.json()['error'], r.json()
    s = sub(server, 'h1', 'ndjson', '/solo', since=mid - 1)
    assert [m['id'] for m in s.wait_for(1)] == [mid], s.summary()
    assert delete(server, f'/solo?id={mid}', user=None).status == 200
    assert s.wait_event(lambda e: e.get('type') == 'delete', 5), s.summary()
    s.close()


def test_journal_keeps_moderation(server):
    """After a full restart the journal's replay keeps the deleted message
    out and the cleared room empty; the text left the file at once (the
    journal compacts after a moderation)."""
    server.close_subscribers()
    env.wait_until(lambda: server.h2chat_status()['H2ChatSubscribers'] == 0, 10)
    gone = post(server, '/msgs', 'jr', 'secret to be deleted xyzzy')
    stay = post(server, '/msgs', 'jr', 'public')
    post(server, '/msgs', 'jr-clear', 'cleared plugh')
    assert delete(server, f'/msgs/jr/{gone}').status == 200
    assert delete(server, '/msgs/jr-clear').status == 200
    data = (server.root / 'journal' / 'chat.journal').read_bytes()
    assert b'xyzzy' not in data and b'plugh' not in data
    server.stop()
    server.start()
    s = sub(server, 'h1', 'ndjson', '/msgs?room=jr&room=jr-clear', since=gone - 1)
    s.wait_event(lambda e: e.get('type') == 'clear', 5)
    time.sleep(0.3)
    assert [m['id'] for m in s.messages] == [stay], s.summary()
    assert [e['id'] for e in kinds(s, 'delete')] == [gone], s.summary()
    assert not s.ended, s.summary()
    s.close()
