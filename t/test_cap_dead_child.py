"""A child killed with kill -9 while the server is at H2ChatMaxSubscribers:
its streams must stop counting at once, so its clients' reconnects are
served (not 503), also when the MPM starts no replacement child (whose
child_init used to be what freed the dead child's row).

The MPM keeps enough spare threads in the surviving children that it does
not start a new one after the kill; the module must notice the dead child
on its own (on the refusal path of the cap, /proc says it is gone or a
zombie)."""

import time

import h2chat_env as env
import h2chat_rel as rel

CAP = 12
# every stream comes from 127.0.0.1: the server-wide cap is tested here,
# not the per-address one (default 6 here; t/test_peraddr.py)
EXTRA_CONF = f'H2ChatMaxSubscribers {CAP}\nH2ChatMaxSubscribersPerAddress off\n'
MPM = {'StartServers': 3, 'ServerLimit': 4, 'ThreadsPerChild': 25, 'ThreadLimit': 25,
       'MaxRequestWorkers': 100, 'MinSpareThreads': 1, 'MaxSpareThreads': 100}


def test_dead_childs_streams_stop_counting(server):
    subs = [server.subscriber('h1' if i % 2 else 'h2c', 'ndjson') for i in range(CAP)]
    for s in subs:
        assert s.wait_headers() == 200, s.summary()
    assert server.wait_subscribers(CAP) == CAP
    over = server.subscriber('h1', 'ndjson')
    assert over.wait_end(10) and over.status == 503, over.summary()

    held = rel.per_child(server)
    victim = max(held, key=held.get)
    k = held[victim]
    assert k > 0, held
    before = set(server.children())
    rel.kill_pid(server, victim)
    t0 = time.monotonic()
    assert env.wait_until(lambda: sum(s.ended for s in subs) == k, 10), \
        [s.summary() for s in subs if s.ended]
    # the killed child's clients come back right away
    again = [server.subscriber('h1', 'ndjson') for _ in range(k)]
    status = [s.wait_headers() for s in again]
    took = time.monotonic() - t0
    replaced = sorted(set(server.children()) - before)
    rel.record('cap_dead_child', cap=CAP, killed_child_held=k, reconnect_status=status,
               all_served_s_after_kill=round(took, 2), replacement_children=len(replaced))
    assert status == [200] * k, (
        f'MODULE BUG: reconnects after kill -9 of a child holding {k} of {CAP} '
        f'refused: {status}; {server.h2chat_status()}')
    assert server.wait_subscribers(CAP) == CAP, server.h2chat_status()
    # and the cap still holds
    over = server.subscriber('h2c', 'ndjson')
    assert over.wait_end(10) and over.status == 503, over.summary()
    for s in subs + again:
        s.close()
    assert server.wait_subscribers(0, 10) == 0, server.h2chat_status()
