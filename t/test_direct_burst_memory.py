"""A resume burst does not leave the direct loop's connections bigger.

nghttp2 writes each DATA frame into a 16 KiB buffer that every session
mallocs once; only the pages frames reach become resident. A stream that
resumes with a long history (every client after a graceful restart or a
killed child) replays it as fast as the window allows: in full 16 KiB
frames that made the whole buffer resident in every connection, for as
long as the connection lives (+12 KiB per subscriber, seen after the
graceful restart at 50,000 in bench/scale.sh). The loop's DATA frames are
capped (H2C_DIRECT_DATA_MAX), so a burst touches what a quiet stream does.

N connections resume from id 0 over a history of M messages of ~3 KB; the
server tree's Pss per connection, once all have read everything, must stay
near what a connection costs anyway (~16 KiB, bench/RESULTS.md)."""

import time

import h2chat_env as env

N = 300
M = 60
TEXT = 'x' * 3000
MAX_KIB_PER_CONN = 27  # measured: 22.9 with the cap, 31.5 with 16 KiB frames

MPM = {'StartServers': 2, 'ServerLimit': 2, 'MinSpareThreads': 40, 'MaxSpareThreads': 64,
       'MaxRequestWorkers': 64}

EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribers 1000
H2ChatMaxSubscribersPerAddress off
H2ChatHistory 100
<Location /msgs>
    H2ChatMaxMessageBytes 8192
</Location>
"""


def tree_pss_kib(pid):
    total = 0
    for p in [pid] + env._children_of(pid):
        try:
            for line in open(f'/proc/{p}/smaps_rollup'):
                if line.startswith('Pss:'):
                    total += int(line.split()[1])
        except OSError:
            pass
    return total


def settled_pss(pid):
    """The minimum of three readings a second apart."""
    vals = []
    for _ in range(3):
        vals.append(tree_pss_kib(pid))
        time.sleep(1)
    return min(vals)


def test_resume_burst_costs_no_more_memory(server):
    for i in range(M):
        server.post_msg('b', f'{i} {TEXT}', transport='h2c')
    before = settled_pss(server.pid)
    conns = [env.RawH2(server.port, '/msgs?since=0') for _ in range(N)]
    try:
        for c in conns:
            c.pump(lambda c=c: c.data.count(b'\n') >= M, timeout=20)
        short = [len(c.data) for c in conns if c.data.count(b'\n') < M]
        assert not short, (len(short), short[:5])
        assert server.h2chat_status()['H2ChatDirectSubscribers'] == N
        after = settled_pss(server.pid)
        per = (after - before) / N
        print(f'Pss {before} -> {after} KiB: {per:.1f} KiB per resumed connection')
        # a sanitized build: the figure only (ASan's shadow memory and redzones
        # double it; t/test_memory.py does the same)
        assert per < MAX_KIB_PER_CONN or env.PRELOAD, per
    finally:
        for c in conns:
            c.close()
    assert server.wait_subscribers(0, timeout=15) == 0
