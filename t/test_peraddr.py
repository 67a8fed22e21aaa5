"""H2ChatMaxSubscribersPerAddress: one client address may hold at most N
streams, across all children and both paths (the handler: h2c and h2 over
TLS through mod_http2, HTTP/1.1; the direct loop, `H2ChatDirect`).

With H2ChatMaxSubscribers 40 and H2ChatMaxSubscribersPerAddress 3: 127.0.0.2
holds 3 streams over a mix of transports; its 4th gets 503 + Retry-After: 5
+ a JSON error + the H2C0028 log line on every transport, while 127.0.0.3
still gets in; once one of 127.0.0.2's streams ends, 127.0.0.2 gets in
again. HEAD holds nothing and is not counted. kill -9 of a child that holds
127.0.0.2's streams frees their share of the address's count at once (its
clients reconnect and are served), and the limit still holds afterwards.

The clients bind their sockets to 127.0.0.x (curl --interface); the server
listens on 127.0.0.1. The direct loop has a listener of its own (a second
port with `H2ChatDirect /msgs`), so that h2c on the main port still goes to
the handler through mod_http2."""

import json
import os
import re
import subprocess
import time

import h2chat_env as env
import h2chat_rel as rel

CAP = 40
PER_ADDR = 3
DIRECT_PORT = env.free_port()
EXTRA_CONF = f"""
H2ChatMaxSubscribers {CAP}
H2ChatMaxSubscribersPerAddress {PER_ADDR}
Listen 127.0.0.1:{DIRECT_PORT}
<VirtualHost 127.0.0.1:{DIRECT_PORT}>
    H2ChatDirect /msgs
</VirtualHost>
"""
# a few spare threads per child: the MPM need not start a child while
# streams are held, and the kill below leaves the others serving
MPM = {'StartServers': 3, 'ServerLimit': 4, 'ThreadsPerChild': 25, 'ThreadLimit': 25,
       'MaxRequestWorkers': 100, 'MinSpareThreads': 1, 'MaxSpareThreads': 100}

HOG = '127.0.0.2'
OTHER = '127.0.0.3'
MESSAGE = 'too many subscribers from this address, retry later'

# transport id -> (h2chat_env transport, port: None for the server's own)
TRANSPORTS = {'handler-h2c': ('h2c', None), 'handler-h2tls': ('h2tls', None),
              'handler-h1': ('h1', None), 'direct-h2c': ('h2c', DIRECT_PORT)}


def _bucket(addr):
    """The address's bucket in the segment's per-address table (h2c_seg.c:
    FNV-1a of the address text, modulo 4096)."""
    h = 2166136261
    for b in addr.encode():
        h = ((h ^ b) * 16777619) & 0xFFFFFFFF
    return h % 4096


# two addresses of one bucket share a count: these must not
assert len({_bucket(a) for a in ('127.0.0.1', HOG, OTHER)}) == 3


def subscribe(server, transport, source):
    kind, port = TRANSPORTS[transport]
    return server.subscriber(kind, source=source, port=port)


def hold(server, transports, source=HOG):
    subs = [subscribe(server, t, source) for t in transports]
    for t, s in zip(transports, subs):
        assert s.wait_headers() == 200, (t, s.summary(), server.errlog_tail())
    return subs


def assert_refused(server, s, source, mark):
    """503, Retry-After: 5, a JSON error, and the H2C0028 line for it."""
    assert s.wait_end(10), f'refused stream still open: {s.summary()}'
    assert s.status == 503, s.summary()
    assert s.headers.get('retry-after') == '5', s.headers
    ctype = s.headers.get('content-type', '')
    assert ctype.split(';')[0].strip() == 'application/json', s.headers
    assert json.loads(s.body.decode()) == {'error': MESSAGE}, s.body
    assert s.messages == []
    addr = re.escape(source)
    line = (rf'H2C0028: 503 {MESSAGE}.*client {addr}[:,]|'
            rf'(client|remote) {addr}:\d+\] H2C0028: 503 {MESSAGE}')
    assert server.wait_errlog(line, mark), server.errlog_since(mark)


def refused_address(server):
    return server.h2chat_status()['H2ChatRefusedAddress']


def idle(server):
    # a handler's stream ends up to 2 s after its client
    assert server.wait_subscribers(0, timeout=10) == 0, server.h2chat_status()


def get_in(server, transport, source, within=6):
    """A GET from `source` that gets in within `within` s (a handler's
    stream may take 2 s to leave after its client)."""
    deadline = time.monotonic() + within
    while True:
        s = subscribe(server, transport, source)
        if s.wait_headers() == 200:
            return s
        s.close()
        assert time.monotonic() < deadline, (s.summary(), server.h2chat_status())
        time.sleep(0.3)


def head(server, transport, source):
    """HEAD from `source` with curl -> status."""
    kind, port = TRANSPORTS[transport]
    opts, url = env.curl_args(kind, port or server.port, port or server.tls_port, '/msgs')
    res = subprocess.run([env.CURL, '-s', '-o', '/dev/null', '-w', '%{http_code}', '--head',
                          '--max-time', '5', '--interface', source] + opts + [url],
                         capture_output=True, timeout=15)
    return int(res.stdout or 0)


def test_limits_shown(server):
    st = server.h2chat_status()
    assert st['H2ChatMaxSubscribers'] == CAP, st
    assert st['H2ChatMaxSubscribersPerAddress'] == PER_ADDR, st
    assert st['H2ChatRefusedAddress'] == 0, st


def test_fourth_from_one_address_refused_on_every_transport(server):
    idle(server)
    held = hold(server, ['handler-h2c', 'handler-h2tls', 'direct-h2c'])
    assert server.wait_subscribers(PER_ADDR) == PER_ADDR
    before = refused_address(server)
    for transport in TRANSPORTS:
        mark = server.errlog_mark()
        assert_refused(server, subscribe(server, transport, HOG), HOG, mark)
    assert refused_address(server) - before == len(TRANSPORTS)
    assert server.h2chat_status()['H2ChatRefusedCap'] == 0  # far from the cap
    # HEAD holds nothing: answered, not refused, not counted
    assert head(server, 'handler-h1', HOG) == 200
    assert head(server, 'direct-h2c', HOG) == 200
    # another address is not affected (up to its own limit)
    others = hold(server, ['handler-h1', 'direct-h2c', 'handler-h2tls'], OTHER)
    assert server.wait_subscribers(PER_ADDR + len(others)) == PER_ADDR + len(others)
    for s in others:
        s.close()
    # the held ones still get messages
    msg_id, _ = server.post_msg('ann', 'to the three')
    for s in held:
        assert [m['id'] for m in s.wait_for(1)] == [msg_id], s.summary()
    for s in held:
        s.close()


def test_a_closed_stream_makes_room(server):
    """One of the address's streams ends: the address gets in again, then
    is at its limit again. Each transport's stream is the one that ends
    once."""
    for leaving in TRANSPORTS:
        idle(server)
        rest = [t for t in TRANSPORTS if t != leaving][:PER_ADDR - 1]
        held = hold(server, [leaving] + rest)
        mark = server.errlog_mark()
        assert_refused(server, subscribe(server, 'handler-h1', HOG), HOG, mark)
        held[0].close()
        back = get_in(server, 'direct-h2c' if leaving != 'direct-h2c' else 'handler-h1',
                      HOG)
        mark = server.errlog_mark()
        assert_refused(server, subscribe(server, 'handler-h2tls', HOG), HOG, mark)
        for s in held[1:] + [back]:
            s.close()


def _hog_holders(server):
    """pid -> the connections from HOG to our ports that this child holds."""
    ports = {server.port, server.tls_port, DIRECT_PORT}
    hog = ''.join(f'{int(p):02X}' for p in reversed(HOG.split('.')))  # /proc order
    inodes = set()
    with open('/proc/net/tcp') as f:
        next(f)
        for line in f:
            cols = line.split()
            local, remote, state, inode = cols[1], cols[2], cols[3], cols[9]
            if (state == '01' and int(local.rsplit(':', 1)[1], 16) in ports
                    and remote.split(':')[0] == hog):
                inodes.add(inode)
    held = {}
    for pid in server.children():
        try:
            n = sum(1 for fd in os.listdir(f'/proc/{pid}/fd')
                    if os.readlink(f'/proc/{pid}/fd/{fd}')[8:-1] in inodes)
        except OSError:
            continue
        if n:
            held[pid] = n
    return held


def test_killed_child_frees_its_share(server):
    """kill -9 of a child that holds k of the address's streams: the k
    clients come back at once and are served (the dead child's counts stop
    counting before anyone is refused), and the limit still holds."""
    idle(server)
    held = hold(server, ['handler-h1', 'direct-h2c', 'handler-h1'])
    assert server.wait_subscribers(PER_ADDR) == PER_ADDR
    assert env.wait_until(lambda: sum(_hog_holders(server).values()) == PER_ADDR, 5), \
        _hog_holders(server)
    holders = _hog_holders(server)
    victim = max(holders, key=holders.get)
    k = holders[victim]
    rel.kill_pid(server, victim)
    assert env.wait_until(lambda: sum(s.ended for s in held) == k, 10), \
        [s.summary() for s in held]
    t0 = time.monotonic()
    again = [subscribe(server, 'handler-h1' if i % 2 else 'direct-h2c', HOG)
             for i in range(k)]
    status = [s.wait_headers() for s in again]
    rel.record('peraddr_dead_child', per_address=PER_ADDR, killed_child_held=k,
               reconnect_status=status, all_served_s_after_kill=round(time.monotonic() - t0, 2))
    assert status == [200] * k, (
        f'reconnects after kill -9 of a child holding {k} of {HOG}\'s {PER_ADDR} '
        f'streams: {status}; {server.h2chat_status()}\n{server.errlog_tail()}')
    assert server.wait_subscribers(PER_ADDR) == PER_ADDR, server.h2chat_status()
    # and the limit still holds
    mark = server.errlog_mark()
    assert_refused(server, subscribe(server, 'handler-h2tls', HOG), HOG, mark)
    for s in held + again:
        s.close()
    idle(server)


def test_default_is_half_the_cap(cert):
    """Not set: half of H2ChatMaxSubscribers, rounded up."""
    srv = env.H2ChatServer('peraddr_default', 'H2ChatMaxSubscribers 7\n', cert=cert)
    try:
        srv.start()
        st = srv.h2chat_status()
        assert st['H2ChatMaxSubscribers'] == 7 and st['H2ChatMaxSubscribersPerAddress'] == 4, st
        held = [srv.subscriber('h2c', source=HOG) for _ in range(4)]
        assert [s.wait_headers() for s in held] == [200] * 4, [s.summary() for s in held]
        over = srv.subscriber('h1', source=HOG)
        assert over.wait_end(10) and over.status == 503, over.summary()
        assert json.loads(over.body.decode()) == {'error': MESSAGE}
    finally:
        srv.stop()
