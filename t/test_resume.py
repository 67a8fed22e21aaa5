"""Snapshot and resume: a new subscriber first gets the last H2ChatSnapshot
messages; `?since=<id>` or `Last-Event-ID: <id>` gives exactly the messages
after <id> instead; when some of them already left the history
(H2ChatHistory), a gap line says how many were missed, then the rest."""

import time

import pytest

HISTORY = 10
SNAPSHOT = 4
EXTRA_CONF = f"""
H2ChatHistory {HISTORY}
<Location /msgs>
    H2ChatSnapshot {SNAPSHOT}
</Location>
"""

# (transport, mode, how to resume)
RESUMERS = [('h2c', 'ndjson', 'since'), ('h2tls', 'ndjson', 'since'),
            ('h1', 'ndjson', 'since'), ('h1', 'sse', 'last-event-id'),
            ('h2c', 'sse', 'last-event-id'), ('h2tls', 'sse', 'since'),
            ('h2c', 'ndjson', 'last-event-id')]


def ids(msgs):
    return [m['id'] for m in msgs]


def post_n(server, n, tag):
    return [server.post_msg('resumer', f'{tag} #{i}')[0] for i in range(n)]


def resume(server, transport, mode, how, last):
    if how == 'since':
        return server.subscriber(transport, mode, since=last)
    return server.subscriber(transport, mode, last_event_id=last)


def settle(subs, n, timeout=10):
    deadline = time.monotonic() + timeout
    for s in subs:
        assert s.wait_headers(max(0.1, deadline - time.monotonic())) == 200, s.summary()
        s.wait_for(n, max(0.1, deadline - time.monotonic()))
    time.sleep(0.3)  # anything extra shows up now


@pytest.fixture(scope='module')
def posted(server):
    """Ids of the messages posted before the tests (fewer than the history)."""
    return post_n(server, 8, 'before')


def test_snapshot(server, posted):
    subs = [server.subscriber(t, m) for t, m, _ in RESUMERS[:4]]
    settle(subs, SNAPSHOT)
    for s in subs:
        assert ids(s.messages) == posted[-SNAPSHOT:], s.summary()
        assert not [e for e in s.events if e.get('type') == 'gap'], s.summary()
    new = post_n(server, 1, 'live')
    for s in subs:
        s.wait_for(SNAPSHOT + 1)
    time.sleep(0.3)
    for s in subs:
        assert ids(s.messages) == posted[-SNAPSHOT:] + new, s.summary()


@pytest.mark.parametrize('transport,mode,how', RESUMERS)
def test_resume_exact(server, posted, transport, mode, how):
    """Resuming from an id inside the history: exactly the later messages,
    more of them than the snapshot would give, then the live ones."""
    last = server.h2chat_status()['H2ChatLastId']
    since = last - 6  # 6 missing messages > SNAPSHOT, all in the history
    s = resume(server, transport, mode, how, since)
    settle([s], 6)
    assert ids(s.messages) == list(range(since + 1, last + 1)), s.summary()
    assert not [e for e in s.events if e.get('type') == 'gap'], s.summary()
    new = post_n(server, 2, f'live {transport} {mode} {how}')
    s.wait_for(8)
    time.sleep(0.3)
    assert ids(s.messages) == list(range(since + 1, last + 1)) + new, s.summary()
    for m in s.messages[-2:]:
        assert m['text'].startswith('live ') and m['user'] == 'resumer'


@pytest.mark.parametrize('transport,mode,how', RESUMERS[:4])
def test_resume_up_to_date(server, posted, transport, mode, how):
    """Resuming from the last id: nothing (no snapshot), then live messages."""
    last = server.h2chat_status()['H2ChatLastId']
    s = resume(server, transport, mode, how, last)
    assert s.wait_headers() == 200, s.summary()
    time.sleep(0.5)
    assert s.messages == [], s.summary()
    new = post_n(server, 1, 'after up-to-date')
    s.wait_for(1)
    time.sleep(0.3)
    assert ids(s.messages) == new, s.summary()


@pytest.mark.parametrize('transport,mode,how', RESUMERS)
def test_resume_gap(server, posted, transport, mode, how):
    """Resuming from before the history start: a gap event with the number of
    missed messages, then every message still held, then live ones."""
    since = server.h2chat_status()['H2ChatLastId']
    post_n(server, HISTORY + 5, 'flood')  # since+1 .. since+5 leave the history
    st = server.h2chat_status()
    last = st['H2ChatLastId']
    first_held = last - HISTORY + 1
    assert st.get('H2ChatHistoryFill') == f'{HISTORY}/{HISTORY}', st
    s = resume(server, transport, mode, how, since)
    settle([s], HISTORY)
    gaps = [e for e in s.events if e.get('type') == 'gap']
    assert len(gaps) == 1, s.summary() + f' events={s.events[:3]}'
    gap = gaps[0]
    missed = first_held - since - 1
    assert gap.get('missed') == missed, gap
    assert gap.get('from') == since + 1, gap
    assert gap.get('to') == first_held - 1, gap
    if mode == 'ndjson':
        assert 'id' not in gap, gap
    if mode == 'sse':
        assert gap['_sse_event'] == 'gap', gap
    # the gap comes first, before any message
    first_msg = next(i for i, e in enumerate(s.events) if e.get('type') == 'message')
    assert s.events.index(gap) < first_msg, s.events[:3]
    assert ids(s.messages) == list(range(first_held, last + 1)), s.summary()
    new = post_n(server, 1, 'after gap')
    s.wait_for(HISTORY + 1)
    time.sleep(0.3)
    assert ids(s.messages) == list(range(first_held, last + 1)) + new, s.summary()


def test_resume_since_zero_after_eviction(server, posted):
    """since=0 once the first messages are gone: a gap from 1, then the history."""
    st = server.h2chat_status()
    last = st['H2ChatLastId']
    assert last > HISTORY
    s = server.subscriber('h2c', 'ndjson', since=0)
    settle([s], HISTORY)
    gaps = [e for e in s.events if e.get('type') == 'gap']
    assert len(gaps) == 1 and gaps[0].get('missed') == last - HISTORY, s.events[:2]
    assert gaps[0].get('from') == 1, gaps[0]
    assert ids(s.messages) == list(range(last - HISTORY + 1, last + 1)), s.summary()


def test_sse_ids_resume_where_left(server, posted):
    """An SSE client that reconnects with the Last-Event-ID of the last event
    it saw gets what it missed meanwhile, nothing twice."""
    s = server.subscriber('h1', 'sse')
    settle([s], SNAPSHOT)
    seen = list(s.messages)
    s.close()
    missed = post_n(server, 3, 'while away')
    s2 = server.subscriber('h1', 'sse', last_event_id=seen[-1]['_sse_id'])
    settle([s2], 3)
    assert ids(s2.messages) == missed, s2.summary()
