"""Reliability 5: a full history ring.

`H2ChatHistory 50`, 500 POSTs (the ring wraps ten times): every POST's id is
the previous one + 1; the Apache children's memory (sum of VmRSS from /proc)
does not grow between POST 100 and POST 500; resuming from an id that left
the ring gives one gap line with the exact count and then exactly the
messages still held; the boundaries (last evicted id, first held id) too.

H2CHAT_SOAK=1: 5000 POSTs (100 x the ring)."""

import time

import pytest

import h2chat_rel as rel

HISTORY = 50
POSTS = rel.pick(500, 5000)
RSS_GROWTH_KB = 4 * 1024  # "a few MiB"
EXTRA_CONF = f'H2ChatHistory {HISTORY}\n'
RESUMERS = [('h2c', 'ndjson', 'since'), ('h2tls', 'sse', 'last-event-id'),
            ('h1', 'ndjson', 'last-event-id'), ('h1', 'sse', 'since')]


@pytest.fixture(scope='module')
def filled(server):
    """Posts POSTS messages; returns (ids, rss at post 100, rss at the end)."""
    assert server.h2chat_status()['H2ChatLastId'] == 0
    ids, rss = [], {}
    for i in range(POSTS):
        msg_id, _ = server.post_msg('ring', rel.message_text('ring', i, 200),
                                    ('h1', 'h1', 'h2c')[i % 3] if i % 50 == 0 else 'h1')
        ids.append(msg_id)
        if i + 1 in (100, POSTS):
            time.sleep(0.3)
            rss[i + 1] = rel.children_rss_kb(server)
    return ids, rss


def test_ids_continuous(server, filled):
    ids, _ = filled
    assert ids[0] == 1
    holes = [(a, b) for a, b in zip(ids, ids[1:]) if b != a + 1]
    assert not holes, f'ids not continuous: {holes[:10]}'
    st = server.h2chat_status()
    assert st['H2ChatLastId'] == POSTS
    assert st['H2ChatHistoryFill'] == f'{HISTORY}/{HISTORY}', st


def test_rss_flat(server, filled):
    _, rss = filled
    growth = rss[POSTS] - rss[100]
    rel.record('history' + ('_soak' if rel.SOAK else ''), posts=POSTS, history=HISTORY,
               rss_kb_at_post_100=rss[100], rss_kb_at_end=rss[POSTS], rss_growth_kb=growth,
               children=len(server.children()))
    if not rel.SANITIZED:
        assert growth <= RSS_GROWTH_KB, f'children RSS grew {growth} kB from post 100 to {POSTS}'


@pytest.mark.parametrize('transport,mode,how', RESUMERS)
@pytest.mark.parametrize('since', [100, 0, POSTS - HISTORY - 1, POSTS - HISTORY])
def test_resume_from_evicted(server, filled, transport, mode, how, since):
    first_held = POSTS - HISTORY + 1
    kw = {'since': since} if how == 'since' else {'last_event_id': since}
    s = server.subscriber(transport, mode, **kw)
    assert s.wait_headers() == 200, s.summary()
    s.wait_for(HISTORY if since < first_held else POSTS - since, 10)
    time.sleep(0.3)
    gaps = [e for e in s.events if e.get('type') == 'gap']
    held = list(range(max(since + 1, first_held), POSTS + 1))
    assert [m['id'] for m in s.messages] == held, s.summary()
    if since + 1 >= first_held:
        assert not gaps, s.events[:2]
        return
    assert len(gaps) == 1, s.events[:3]
    gap = gaps[0]
    assert gap.get('missed') == first_held - since - 1, gap
    assert gap.get('from') == since + 1 and gap.get('to') == first_held - 1, gap
    assert s.events.index(gap) < s.events.index(s.messages[0]), s.events[:3]
    s.close()


def test_live_after_wraps(server, filled):
    """A subscriber on the wrapped ring still gets new posts, ids go on."""
    s = server.subscriber('h2c', 'ndjson', since=POSTS)
    assert s.wait_headers() == 200
    new_id, _ = server.post_msg('ring', 'after the wraps')
    assert new_id == POSTS + 1
    assert [m['id'] for m in s.wait_for(1)] == [new_id], s.summary()
