"""A chat location behind Basic auth: no credentials, no chat; with them
the message's user is the authenticated name, whatever the body says."""


import h2chat_env as env

EXTRA_CONF = """
<Location /private/msgs>
    H2Chat On
    AuthType Basic
    AuthName "h2chat test"
    AuthBasicProvider file
    AuthUserFile "@ROOT@/htpasswd"
    Require valid-user
</Location>
"""
USERS = {'alice': 'wonder land', 'bob': 'b0b'}


def SETUP(server):
    env.write_htpasswd(server, USERS)


basic = env.basic_auth


def test_no_credentials_401(server):
    r = env.request(server.port, 'GET', '/private/msgs')
    assert r.status == 401, r
    assert 'basic' in r.headers.get('www-authenticate', '').lower()
    r = server.post({'user': 'alice', 'text': 'hi'}, path='/private/msgs')
    assert r.status == 401, r
    r = server.post({'user': 'alice', 'text': 'hi'}, path='/private/msgs',
                    headers=basic('alice', 'wrong'))
    assert r.status == 401, r
    s = server.subscriber('h2c', 'ndjson', path='/private/msgs')
    assert s.wait_end(5) and s.status == 401, s.summary()


def test_authenticated_name_wins(server):
    last = server.h2chat_status()['H2ChatLastId']
    subs = [server.subscriber('h2c', 'ndjson', path='/private/msgs', since=last,
                              user='bob:b0b'),
            server.subscriber('h1', 'sse', path='/private/msgs', since=last,
                              user='alice:wonder land')]
    for s in subs:
        assert s.wait_headers() == 200, s.summary()
    posted = []
    r = server.post({'user': 'mallory', 'text': 'spoofed?'}, path='/private/msgs',
                    headers=basic('alice', 'wonder land'))
    assert r.status == 201, r
    posted.append((r.json()['id'], 'alice', 'spoofed?'))
    r = server.post({'text': 'no user field'}, path='/private/msgs',
                    headers=basic('bob', 'b0b'))
    assert r.status == 201, r
    posted.append((r.json()['id'], 'bob', 'no user field'))
    r = server.post({'user': '', 'text': 'empty user field'}, path='/private/msgs',
                    headers=basic('alice', 'wonder land'))
    assert r.status == 201, r
    posted.append((r.json()['id'], 'alice', 'empty user field'))
    r = server.post({'user': 'mallory', 'text': 'over h2'}, 'h2c', path='/private/msgs',
                    user='bob:b0b')
    assert r.status == 201 and r.version == '2', r
    posted.append((r.json()['id'], 'bob', 'over h2'))
    for s in subs:
        msgs = s.wait_for(len(posted))
        assert [(m['id'], m['user'], m['text']) for m in msgs] == posted, s.summary()


def test_public_location_still_uses_body_user(server):
    r = server.post({'user': 'mallory', 'text': 'public'})
    assert r.status == 201, r
    s = server.subscriber('h2c', 'ndjson', since=r.json()['id'] - 1)
    msgs = s.wait_for(1)
    assert [(m['user'], m['text']) for m in msgs] == [('mallory', 'public')], s.summary()
