"""htdocs/h2chat-client.js alone in Debian's chromium (same harness as
t/test_browser.py: playwright-core, chat.mjs's lib-* scenarios, over TLS h2),
on a bare page that records what the library hands over:

- resume across `apache2 -k graceful` while a third party posts all along:
  every message exactly once in every tab (a leader, a follower, another
  browser);
- tab sharing: five tabs, one held stream (H2ChatSubscribers), the leader
  tab closes and another resumes, then close() on the new leader hands the
  stream on again; without Web Locks one stream per tab;
- backoff while Apache is stopped: few attempts, waits within a doubling
  ceiling that the client really waits, then (the journal keeps the ids
  across the stop) a resume with since= and no loss.
"""

import json
import threading
import time

import h2chat_env as env
# the browser harness: fixtures (node, quiet_server: no held stream before or
# after each test) and the scenario runner
from test_browser import checked, node, quiet_server, run_scenario  # noqa: F401

# ids go on across a full stop/start only with a journal; a snapshot of 2, so
# that a resume without since= would lose messages (the poster makes ~20/s)
EXTRA_CONF = """
H2ChatJournal @ROOT@/chat.journal
<Location /msgs>
    H2ChatSnapshot 2
</Location>
"""


class Poster:
    """Posts a message every `every` seconds on a thread until stopped; keeps
    the ids (in order) and the first failure."""

    def __init__(self, server, every=0.05):
        self.server, self.every = server, every
        self.ids, self.error = [], None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self._stop.is_set():
            try:
                self.ids.append(self.server.post_msg('poster', f'all along {i}')[0])
            except Exception as e:  # noqa: BLE001 (reported by the test)
                self.error = repr(e)
                return
            i += 1
            self._stop.wait(self.every)

    def start(self):
        self._t.start()
        return self

    def stop(self):
        self._stop.set()
        self._t.join(timeout=15)
        return self.ids


def test_lib_resume_across_graceful(server, node):
    """Three pages (a leader and a follower tab, and another browser) while a
    third party posts every 50 ms across a graceful restart: each page gets
    every message exactly once, in order, no gap or reset."""
    posted, timing = [], {}

    def on_event(ev):
        if ev['event'] == 'ready':
            poster = Poster(server).start()
            time.sleep(0.5)
            timing['old_children'] = server.children()
            gen = server.generation()
            server.graceful(wait=False)
            assert env.wait_until(lambda: server.generation() != gen, 20, 0.1), \
                'no new generation after graceful\n' + server.errlog_tail()
            time.sleep(2)
            ids = poster.stop()
            assert poster.error is None, f'a POST failed during the restart: {poster.error}'
        else:
            assert ev['event'] == 'reconnected', ev
            old = set(timing.pop('old_children'))
            timing['old_children_gone'] = bool(
                env.wait_until(lambda: not (set(server.children()) & old), 20, 0.2))
            timing['subscribers'] = server.wait_subscribers(2, 10)
            ids = [server.post_msg('third', f'after reconnect {i}')[0] for i in range(2)]
        posted.extend(ids)
        return {'ids': ids}

    res, _ = run_scenario(server, node, 'lib-graceful', on_event=on_event, timeout=150)
    print('lib-graceful:', json.dumps(timing), 'posted', len(posted))
    d = res['data']
    assert len(posted) >= 10 and posted == sorted(posted), posted
    assert timing['old_children_gone'], timing
    assert timing['subscribers'] == 2, f'{timing} {server.h2chat_status()}'
    assert d['leaders'] == [True, False, True], d['leaders']
    for i in range(3):
        assert d[f'ids_{i}'] == posted, (i, d[f'ids_{i}'], posted)


def test_lib_tab_sharing(server, node):
    """Five tabs hold one stream; after the leader tab closes, and after
    close() on the next leader, one other tab leads and nothing is lost or
    twice; without Web Locks each tab holds its own."""
    res, _ = run_scenario(server, node, 'lib-tabs', timeout=150)
    d = res['data']
    before = d['subscribers_before']
    assert before == 0, d
    assert all(n == before + 1 for n in d['subscribers_open']), d
    assert d['subscribers_after_handoff'] == [before + 1, before + 1], d
    assert d['subscribers_after_close'] == [before + 1, before + 1], d
    assert len(d['leader_after_close']) == 1, d
    assert d['subscribers_fallback'] == before + 3, d
    assert len(d['new_leader']) == 1, d


def test_lib_backoff_while_down(server, node):
    """Apache stopped for 16 s: the client's attempts spread out (within a
    doubling ceiling, really waited), then it resumes with since= once Apache
    is back, no message lost or twice."""
    posted = []

    def on_event(ev):
        if ev['event'] == 'ready':
            ids = [server.post_msg('up', f'before the stop {i}')[0] for i in range(2)]
        elif ev['event'] == 'stop':
            server.stop()
            ids = []
        else:
            assert ev['event'] == 'start', ev
            server.start()
            ids = [server.post_msg('up', f'after the start {i}')[0] for i in range(3)]
        posted.extend(ids)
        return {'ids': ids}

    res, _ = run_scenario(server, node, 'lib-backoff', on_event=on_event, timeout=150)
    d = res['data']
    print('lib-backoff:', json.dumps({k: d[k] for k in ('attempts_while_down', 'gaps_ms',
                                                          'retries', 'gap_vs_delay')}))
    assert posted == sorted(posted) and len(posted) == 5, posted
    assert d['ids_0'] == posted, (d['ids_0'], posted)
    assert 3 <= d['attempts_while_down'] <= 12, d
    assert checked(res, 'the attempts really wait their delays (observed gap = delay, +-700 ms)')['ok']
