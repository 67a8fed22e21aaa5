"""Graceful restart: held streams end promptly, history and ids go on, and
a client that resumes with its last id loses nothing and sees nothing twice."""

import time

import h2chat_env as env

# (transport, mode, how the client resumes)
CLIENTS = [('h2c', 'ndjson', 'since'), ('h2tls', 'ndjson', 'since'),
           ('h1', 'sse', 'last-event-id'), ('h2c', 'sse', 'last-event-id'),
           ('h1', 'ndjson', 'since'), ('h2tls', 'sse', 'last-event-id')] * 2
ENDS_WITHIN = 8.0


class Client:
    """A chat client that reconnects with the last id it saw."""

    def __init__(self, server, transport, mode, how, since):
        self.server, self.transport, self.mode, self.how = server, transport, mode, how
        self.streams = []
        self.connect(since)

    def connect(self, last):
        kw = {'since': last} if self.how == 'since' else {'last_event_id': last}
        self.streams.append(self.server.subscriber(self.transport, self.mode, **kw))

    @property
    def current(self):
        return self.streams[-1]

    @property
    def messages(self):
        return [m for s in self.streams for m in s.messages]

    def last_id(self):
        msgs = self.messages
        return msgs[-1]['id'] if msgs else None

    def summary(self):
        return f'{self.transport}/{self.mode}/{self.how}: ' + \
            ' | '.join(s.summary() for s in self.streams)


def wait_all(clients, n, timeout=10):
    deadline = time.monotonic() + timeout
    for c in clients:
        c.current.wait_for(n - (len(c.messages) - len(c.current.messages)),
                           max(0.1, deadline - time.monotonic()))


def test_graceful_restart_resume(server):
    start = server.h2chat_status()['H2ChatLastId']
    clients = [Client(server, t, m, how, start) for t, m, how in CLIENTS]
    for c in clients:
        assert c.current.wait_headers() == 200, c.summary()
    assert server.wait_subscribers(len(clients)) == len(clients)

    before = [server.post_msg('ann', f'before restart {i}', ('h1', 'h2c', 'h2tls')[i % 3])[0]
              for i in range(5)]
    wait_all(clients, len(before))
    old_children = set(server.children())
    gen = server.generation()

    t0 = time.monotonic()
    server.graceful(wait=False)
    during = [server.post_msg('bob', f'during restart {i}')[0] for i in range(3)]

    # every held stream ends promptly, on its own
    for c in clients:
        c.current.wait_end(max(0.1, ENDS_WITHIN - (time.monotonic() - t0)))
    open_ones = [c.summary() for c in clients if not c.current.ended]
    assert not open_ones, f'streams still open {ENDS_WITHIN}s after graceful:\n' + \
        '\n'.join(open_ones)
    assert env.wait_until(lambda: server.generation() != gen, 20, 0.2), 'no new generation'

    # reconnect where each left off
    for c in clients:
        c.connect(c.last_id() if c.last_id() is not None else start)
    for c in clients:
        assert c.current.wait_headers() == 200, c.summary()
    after = [server.post_msg('cy', f'after restart {i}', ('h1', 'h2c', 'h2tls')[i % 3])[0]
             for i in range(5)]

    expected = before + during + after
    assert expected == sorted(expected) and len(set(expected)) == len(expected), expected
    assert min(after) > max(before + during)
    wait_all(clients, len(expected), 15)
    time.sleep(0.5)
    bad = [c.summary() for c in clients if [m['id'] for m in c.messages] != expected]
    assert not bad, f'expected ids {expected}; wrong clients:\n' + '\n'.join(bad)
    for c in clients:
        texts = [m['text'] for m in c.messages]
        assert texts == [f'before restart {i}' for i in range(5)] + \
            [f'during restart {i}' for i in range(3)] + \
            [f'after restart {i}' for i in range(5)], c.summary()

    # the old generation's streams are no longer counted
    assert server.wait_subscribers(len(clients), 10) == len(clients), server.h2chat_status()
    new_children = set(server.children())
    assert env.wait_until(lambda: not (set(server.children()) & old_children), 20, 0.2), \
        f'old children still alive: {old_children & set(server.children())}'
    assert new_children


def test_history_survives_graceful(server):
    """A fresh subscriber after a restart gets the pre-restart messages in
    its snapshot and new ids follow on."""
    st = server.h2chat_status()
    last_before = st['H2ChatLastId']
    assert last_before > 0
    server.graceful()
    assert server.h2chat_status()['H2ChatLastId'] == last_before
    s = server.subscriber('h2c', 'ndjson')
    s.wait_for(min(last_before, 50))
    ids = [m['id'] for m in s.messages]
    assert ids == list(range(max(1, last_before - 49), last_before + 1)), s.summary()
    new_id, _ = server.post_msg('ann', 'first of the new generation')
    assert new_id == last_before + 1
    s.wait_for(len(ids) + 1)
    assert s.messages[-1]['id'] == new_id


def test_two_graceful_restarts_in_a_row(server):
    last = server.h2chat_status()['H2ChatLastId']
    subs = server.subscribers([('h2c', 'ndjson'), ('h1', 'sse')])
    assert all(s.status == 200 for s in subs)
    server.graceful()
    server.graceful()
    for s in subs:
        assert s.wait_end(ENDS_WITHIN), s.summary()
    new_id, _ = server.post_msg('ann', 'after two restarts')
    assert new_id > last
    s = server.subscriber('h2tls', 'ndjson', since=last)
    msgs = s.wait_for(1)
    assert [m['id'] for m in msgs] == [new_id], s.summary()
    assert server.wait_subscribers(1, 10) == 1, server.h2chat_status()
