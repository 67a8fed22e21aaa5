"""The chat page with rooms (issue #14, acceptance 8) in Debian's chromium:
the `rooms` scenario of t/browser/chat.mjs (same harness as
t/test_browser.py) against a location with H2ChatRooms On.

Two people (two browser contexts) in two rooms: each page shows its room's
messages (from before it came too), the room is the URL's fragment, a room
joined by name or picked in the room bar shows its own messages and none of
the other's; "who is online" (H2ChatPresence members: the names) shows one,
then two, then one again; ann counts once with two tabs in #blue. A second
tab of the same browser on another room shares the browser's one held stream
(two browsers: two streams). A moderator (this test, DELETE over HTTP/1.1,
H2ChatAnonymousDelete On) deletes a message: it vanishes from both pages that
show it. Then it clears the other room: that tab empties, and the stream the
clear ended resumes without losing the message posted right after it to the
room the other tab shows.
"""

import json
import os

import h2chat_env as env
# the browser harness: fixtures (node, quiet_server: no held stream before or
# after each test) and the scenario runner
from test_browser import checked, node, quiet_server, run_scenario  # noqa: F401

# The server names members (H2ChatPresence members): "who is online" shows the
# names (False: the count of streams, as with H2ChatPresence count).
MEMBERS = True

# Two browsers hold a stream each (and a room's snapshot GET for a moment): far
# below the default caps, which stay as they are; the per-address cap is off
# since every browser comes from 127.0.0.1.
EXTRA_CONF = f"""
H2ChatMaxSubscribersPerAddress off
<Location /msgs>
    H2ChatRooms On
    H2ChatAnonymousDelete On
    H2ChatHeartbeat 5
    H2ChatPresence {'members' if MEMBERS else 'count'}
</Location>
"""


def delete(server, path):
    r = env.request(server.port, 'DELETE', path)
    assert r.status == 200, f'DELETE {path}: {r!r}\n{server.errlog_tail(10)}'
    return json.loads(r.body)


def test_rooms_in_two_browsers(server, node, monkeypatch):
    """Acceptance 8: two people in two rooms, switching rooms, who is online,
    a deleted message vanishes, a cleared room empties."""
    monkeypatch.setenv('H2CHAT_MEMBERS', '1' if MEMBERS else '0')
    done = {}

    def on_event(ev):
        if ev['event'] == 'delete':
            done['delete'] = delete(server, f"/msgs/{ev['room']}/{ev['id']}")
            return {'ids': []}
        assert ev['event'] == 'clear', ev
        done['clear'] = delete(server, f"/msgs/{ev['room']}")
        ids = [server.post({'user': 'cy', 'text': 'blue right after the clear'},
                           path='/msgs/blue').json()['id'],
               server.post({'user': 'cy', 'text': 'red after the clear'},
                           path='/msgs/red').json()['id']]
        return {'ids': ids}

    res, _ = run_scenario(server, node, 'rooms', on_event=on_event, timeout=120)
    print('rooms data:', json.dumps(res['data'], ensure_ascii=False)[:3000])
    assert done['delete'] == {'type': 'delete', 'room': 'blue', 'id': res['data']['ids']['rb']}
    assert done['clear'] == {'type': 'clear', 'room': 'red'}
    assert checked(res, 'both in #red: who is online shows two on both pages')['ok']
    assert checked(res, 'two browsers, three tabs, two rooms: two held streams')['ok']
    assert checked(res, "the deleted message vanished from bob's page")['ok']
