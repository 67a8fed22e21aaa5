"""H2ChatReconnectSpread: restarts without a reconnect storm.

A graceful restart ends every held stream of the old children at once. Each
stream's last event is then a reconnect hint with its own delay, uniform in
[0, W): SSE `retry: <ms>` (the EventSource's reconnection time) and the blank
line, NDJSON `{"type":"reconnect","retry":<ms>}`. On every transport: h2c
(the H2ChatDirect loop), h2 over TLS (mod_http2) and HTTP/1.1 (the handler),
both formats. The streams still end at once (the child does not wait out the
window), a client that resumes with Last-Event-ID loses and repeats nothing,
`auto` gives W = 1 s for a few streams, a fixed SECONDS bounds the delays, and
`off` sends no hint."""

import json
import re
import time

import h2chat_env as env

COMBOS = [('h2c', 'ndjson'), ('h2c', 'sse'), ('h2tls', 'ndjson'), ('h2tls', 'sse'),
          ('h1', 'ndjson'), ('h1', 'sse')]
PER_COMBO = 20        # held streams per transport and format (auto)
PER_COMBO_SMALL = 8   # ... for the fixed window and off
# The streams end this soon after `apache2 -k graceful` whatever the window
# (test_graceful's bound): the hint spreads the clients, not the server.
ENDS_WITHIN = 8.0
FIXED_S = 30          # well past auto's 10 s cap and ENDS_WITHIN

# h2c on the main port is the direct loop's; h2 over TLS is mod_http2's;
# HTTP/1.1 the handler's. 120 streams from 127.0.0.1, threads for the h2
# and HTTP/1.1 ones in both generations while the old one stops.
BASE_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribers 400
# 120 streams from 127.0.0.1 (t/test_peraddr.py tests the per-address cap)
H2ChatMaxSubscribersPerAddress off
"""
EXTRA_CONF = BASE_CONF
MPM = {'StartServers': 3, 'ServerLimit': 8, 'ThreadsPerChild': 64, 'ThreadLimit': 64,
       'MaxRequestWorkers': 512, 'MinSpareThreads': 64, 'MaxSpareThreads': 512}

HINT_LOG = re.compile(r'H2C0029: child stopping: its (\d+) held streams end; (?:clients '
                      r'are told to reconnect within (\d+) ms|no reconnect hint)')


def configure(server, line):
    """A new configuration (`H2ChatReconnectSpread ...` or none), applied by
    a graceful restart; the children that stop in the next one have it."""
    server.extra_conf = BASE_CONF + line + '\n'
    server.write_conf()
    server.graceful(wait=True)
    assert server.wait_subscribers(0, 10) == 0, server.h2chat_status()


def hold(server, per_combo, last):
    """per_combo streams of every transport and format, resuming after id
    `last` (no snapshot); returns them once all are held."""
    subs = [server.subscriber(t, m, last_event_id=last)
            for t, m in COMBOS for _ in range(per_combo)]
    deadline = time.monotonic() + 30
    for s in subs:
        assert s.wait_headers(max(0.1, deadline - time.monotonic())) == 200, s.summary()
    assert server.wait_subscribers(len(subs), 20) == len(subs), server.h2chat_status()
    return subs


def restart(server, subs):
    """apache2 -k graceful: every stream of the old children ends within
    ENDS_WITHIN. Returns the error-log text of the restart."""
    mark = server.errlog_mark()
    gen = server.generation()
    t0 = time.monotonic()
    server.graceful(wait=False)
    for s in subs:
        s.wait_end(max(0.1, ENDS_WITHIN - (time.monotonic() - t0)))
    still = [s.summary() for s in subs if not s.ended]
    assert not still, f'{len(still)} streams open {ENDS_WITHIN} s after graceful:\n' + \
        '\n'.join(still[:5])
    assert env.wait_until(lambda: server.generation() != gen, 20, 0.2), 'no new generation'
    return server.errlog_since(mark)


def hint_bytes(s, retry):
    if s.mode == 'sse':
        return f'retry: {retry}\n\n'.encode()
    return json.dumps({'type': 'reconnect', 'retry': retry}, separators=(',', ':')).encode() \
        + b'\n'


def check_hints(subs, window_ms):
    """Each stream's last event, and the last bytes of its body, is one
    reconnect hint with a delay in [0, window_ms); returns the delays."""
    bad, retries = [], []
    for s in subs:
        hints = [e for e in s.events if e.get('type') == 'reconnect']
        if len(hints) != 1 or s.events[-1] is not hints[0]:
            bad.append(f'not one hint, last: {s.events[-3:]}: {s.summary()}')
            continue
        r = hints[0]['retry']
        if not (isinstance(r, int) and 0 <= r < window_ms):
            bad.append(f'retry {r!r} not in [0, {window_ms}): {s.summary()}')
        elif not s.body.endswith(hint_bytes(s, r)):
            bad.append(f'body does not end with the hint: {s.body[-80:]!r}: {s.summary()}')
        elif s.mode == 'sse' and b'event: reconnect' in s.body:
            bad.append(f'SSE hint is not the retry field: {s.summary()}')
        retries.append(r)
    assert not bad, f'{len(bad)} of {len(subs)} streams:\n' + '\n'.join(bad[:8])
    return retries


def check_spread(subs, retries, window_ms):
    """The delays differ: nearly all distinct, over most of the window, and
    on every transport and format."""
    assert len(set(retries)) >= 0.7 * len(retries), sorted(retries)
    assert max(retries) - min(retries) >= window_ms // 2, sorted(retries)
    for t, m in COMBOS:
        mine = {s.events[-1]['retry'] for s in subs if (s.transport, s.mode) == (t, m)}
        assert len(mine) > 1, (t, m, mine)


def test_auto_hint_on_every_transport_and_resume(server):
    """Default (auto, a few streams: W = 1 s): every stream of the old
    children ends at once with its own hint; resuming with Last-Event-ID
    then gives every message exactly once."""
    start = server.h2chat_status()['H2ChatLastId']
    subs = hold(server, PER_COMBO, start)
    before = [server.post_msg('ann', f'before {i}', ('h1', 'h2c', 'h2tls')[i % 3])[0]
              for i in range(3)]
    for s in subs:
        assert [m['id'] for m in s.wait_for(len(before))] == before, s.summary()

    log = restart(server, subs)
    retries = check_hints(subs, 1000)
    check_spread(subs, retries, 1000)
    # one line per stopping child: its streams, W = 1 s (auto, far under 5,000)
    told = HINT_LOG.findall(log)
    assert told and all(w == '1000' for _, w in told), log[-3000:]
    assert sum(int(n) for n, _ in told) >= len(subs), told

    # resume where each left off (its last id; the hint carries none)
    during = [server.post_msg('bob', f'during {i}')[0] for i in range(3)]
    again = [server.subscriber(s.transport, s.mode,
                               last_event_id=s.last_id if s.last_id is not None else start)
             for s in subs]
    for s in again:
        assert s.wait_headers(15) == 200, s.summary()
    after = [server.post_msg('cy', f'after {i}', ('h1', 'h2c', 'h2tls')[i % 3])[0]
             for i in range(3)]
    expected = before + during + after
    assert expected == sorted(set(expected)), expected
    wrong = []
    for old, new in zip(subs, again):
        new.wait_for(len(expected) - len(old.messages), 15)
    time.sleep(0.3)  # nothing more may come
    for old, new in zip(subs, again):
        got = [m['id'] for m in old.messages + new.messages]
        if got != expected:
            wrong.append(f'{got} | {old.summary()} | {new.summary()}')
    assert not wrong, f'expected {expected}; {len(wrong)} clients:\n' + '\n'.join(wrong[:5])
    for s in again:
        s.close()
    assert server.wait_subscribers(0, 10) == 0


def test_fixed_window_bounds_the_hints(server):
    """H2ChatReconnectSpread 30: delays in [0, 30 s), spread past auto's
    10 s cap, while the streams still end at once."""
    configure(server, f'H2ChatReconnectSpread {FIXED_S}')
    subs = hold(server, PER_COMBO_SMALL, server.h2chat_status()['H2ChatLastId'])
    t0 = time.monotonic()
    log = restart(server, subs)
    assert time.monotonic() - t0 < ENDS_WITHIN
    window = FIXED_S * 1000
    retries = check_hints(subs, window)
    check_spread(subs, retries, window)
    assert max(retries) > 10000, sorted(retries)  # not auto's window
    told = HINT_LOG.findall(log)
    assert told and all(w == str(window) for _, w in told), log[-3000:]


def test_off_sends_no_hint(server):
    """H2ChatReconnectSpread off: the streams end as before, without a hint."""
    configure(server, 'H2ChatReconnectSpread off')
    last = server.h2chat_status()['H2ChatLastId']
    subs = hold(server, PER_COMBO_SMALL, last)
    mid = server.post_msg('dee', 'last before the restart')[0]
    for s in subs:
        s.wait_for(1)
    log = restart(server, subs)
    bad = [s.summary() for s in subs
           if any(e.get('type') == 'reconnect' for e in s.events) or b'retry' in s.body
           or [m['id'] for m in s.messages] != [mid]]
    assert not bad, '\n'.join(bad[:5])
    told = HINT_LOG.findall(log)
    assert told and all(w == '' for _, w in told), log[-3000:]
    configure(server, '')  # back to the default for whatever runs next
