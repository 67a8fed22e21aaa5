"""H2ChatCoalesce: with a fixed interval T, a message after a quiet spell
is delivered at once; a burst that follows within T waits for the waker
(at most T plus a wake-up), arrives complete, once, in id order."""

import json
import time

EXTRA_CONF = """
H2ChatCoalesce 400
"""

T = 0.4
SPECS = [('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'sse')]


def post(server, text):
    status, _, body = server.post(json.dumps({'user': 'co', 'text': text}))
    assert status == 201, body


def test_quiet_then_burst(server):
    subs = server.subscribers(SPECS)
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs]
    assert server.wait_subscribers(len(subs), timeout=10) == len(subs)
    time.sleep(T + 0.2)  # quiet for longer than T: the next one goes at once
    t0 = time.monotonic()
    post(server, 'first')
    for s in subs:
        assert [m['text'] for m in s.wait_for(1, timeout=5)] == ['first'], s.summary()
    assert time.monotonic() - t0 < T * 0.75, 'a message after a quiet spell waited'

    texts = [f'burst {i}' for i in range(10)]
    t1 = time.monotonic()
    for text in texts:
        post(server, text)
    posted = time.monotonic()
    for s in subs:
        msgs = s.wait_for(11, timeout=5)
        assert [m['text'] for m in msgs] == ['first'] + texts, s.summary()
        ids = [m['id'] for m in msgs]
        assert ids == sorted(set(ids)), ids
    # the last of the burst waited at most T (+ a wake-up) after its POST
    assert time.monotonic() - posted < T + 0.5, (t1, posted, time.monotonic())

    time.sleep(T + 0.2)
    t2 = time.monotonic()
    post(server, 'quiet again')
    for s in subs:
        assert s.wait_for(12, timeout=5)[-1]['text'] == 'quiet again', s.summary()
    assert time.monotonic() - t2 < T * 0.75
    for s in subs:
        s.close()
