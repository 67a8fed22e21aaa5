"""A stream of several rooms resumed by the browser's own EventSource
(Debian's chromium, chat.mjs's es-rooms scenario, over TLS h2) across
`apache2 -k graceful` (#14, acceptance 2): the stopping child ends the
stream with a `retry:` hint, EventSource reconnects by itself sending
Last-Event-ID, and that one id resumes both rooms: every message of both
rooms exactly once, in id order, none of the third room, no gap. The
snapshot is 1, so a reconnect that did not resume would lose messages."""

import json
import re
import time

import h2chat_env as env
# the browser harness: fixtures (node, quiet_server) and the scenario runner
from test_browser import node, quiet_server, run_scenario  # noqa: F401

EXTRA_CONF = """
<Location /msgs>
    H2ChatRooms On
    H2ChatSnapshot 1
</Location>
"""


def post(server, room, text):
    r = server.post({'user': 'third', 'text': text}, path=f'/msgs/{room}')
    assert r.status == 201, (r, server.errlog_tail())
    return r.json()['id']


def test_eventsource_resumes_two_rooms_across_graceful(server, node):
    posted = []

    def round_of(tag):
        ids = []
        for i, room in enumerate(('es-a', 'es-b', 'es-other', 'es-b', 'es-a')):
            mid = post(server, room, f'{tag} {i}')
            if room != 'es-other':
                ids.append(mid)
        return ids

    def on_event(ev):
        if ev['event'] == 'ready':
            ids = round_of('before')
            gen = server.generation()
            server.graceful(wait=False)
            ids += round_of('during')
            assert env.wait_until(lambda: server.generation() != gen, 20, 0.1), \
                server.errlog_tail()
            ids += round_of('after')
        else:
            assert ev['event'] == 'reconnected', ev
            ids = round_of('live')
        posted.extend(ids)
        return {'ids': ids}

    mark = server.errlog_mark()
    res, _ = run_scenario(server, node, 'es-rooms', on_event=on_event)
    print('es-rooms data:', json.dumps(res['data']))
    assert [i for i, _ in res['data']['got']] == posted, res['data']
    # the server's side of the resume: the stream after the restart started
    # right after an id the page had (its Last-Event-ID; no since= in the URL)
    starts = [int(n) for n in re.findall(r'H2C0020: subscriber starts at id (\d+) \(sse\)',
                                         server.errlog_since(mark))]
    assert len(starts) == 2 and starts[0] == 1, starts
    assert starts[1] - 1 in posted and starts[1] > posted[0], (starts, posted)


def test_since_resumes_two_rooms_across_graceful(server):
    """The same with since=: streams of two rooms on mod_http2 (NDJSON and
    SSE) and HTTP/1.1 end at the restart; each comes back with since= the
    last id it got and has every message of both rooms once, in order, with
    no gap (snapshot 1: only a resume gets them all)."""
    rooms = '/msgs?room=sr-a&room=sr-b'
    specs = [('h2tls', 'ndjson'), ('h2tls', 'sse'), ('h1', 'ndjson')]
    first = [server.subscriber(t, m, path=rooms) for t, m in specs]
    for s in first:
        assert s.wait_headers(10) == 200, s.summary()
    posted = []

    def round_of(tag):
        for i, room in enumerate(('sr-a', 'sr-b', 'sr-other', 'sr-b')):
            mid = post(server, room, f'{tag} {i}')
            if room != 'sr-other':
                posted.append(mid)

    round_of('before')
    for s in first:
        s.wait_for(len(posted), 10)
    server.graceful(wait=False)
    round_of('during')
    for s in first:
        assert s.wait_end(15), s.summary()
    round_of('after')
    again = []
    for (t, m), s in zip(specs, first):
        assert s.messages, s.summary()
        again.append(server.subscriber(t, m, path=rooms, since=s.last_id))
    for s in again:
        assert s.wait_headers(10) == 200, s.summary()
    round_of('live')
    for old, new in zip(first, again):
        new.wait_for(len(posted) - len(old.messages), 10)
        time.sleep(0.3)
        got = [e['id'] for e in old.messages + new.messages if e['id'] >= posted[0]]
        assert got == posted, (old.summary(), new.summary())
        assert not [e for e in new.events if e.get('type') == 'gap'], new.summary()
        new.close()
