"""H2ChatDirect spreads connections over the children's loops: the child
that accepted a connection hands it to the least loaded loop of its
generation when that one serves clearly fewer (h2c_balance), so however
the kernel's accept lands them the loops end up near even; server-status
shows each loop's connections (H2ChatDirectPerChild) and the hand-overs
(H2ChatDirectHanded). Handed connections are served like any other (httpd's
request processing runs for them in the child that took them: Require,
the user, the access log), and only the server's own children can hand one
over."""

import array
import re
import socket
import time

import h2chat_env as env

CHILDREN = 4
N = 400

# MinSpareThreads near the total: after a graceful restart httpd starts new
# children only as idle threads run short, and this keeps all four
MPM = {'StartServers': CHILDREN, 'ServerLimit': CHILDREN, 'MinSpareThreads': 32 * CHILDREN - 8,
       'MaxSpareThreads': 32 * CHILDREN, 'MaxRequestWorkers': 32 * CHILDREN}

EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribers 2000
H2ChatMaxSubscribersPerAddress off
<Location /msgs>
    AuthType Basic
    AuthName "h2chat test"
    AuthBasicProvider file
    AuthUserFile "@ROOT@/htpasswd"
    <RequireAny>
        Require method POST
        Require valid-user
    </RequireAny>
</Location>
"""
AUTH = env.basic_auth('bob', 'b0b')


def SETUP(server):
    env.write_htpasswd(server, {'bob': 'b0b'})


def per_child(server):
    st = server.h2chat_status()
    counts = {}
    for part in str(st.get('H2ChatDirectPerChild', '')).split(','):
        if '=' in part:
            pid, n = part.split('=')
            counts[int(pid)] = int(n)
    return counts, st


def hold(server, n):
    conns = [env.RawH2(server.port, headers=AUTH) for _ in range(n)]
    assert env.wait_until(
        lambda: server.h2chat_status().get('H2ChatDirectSubscribers') == n, 20), \
        server.h2chat_status()
    return conns


def assert_even(counts, n, st):
    live = [v for v in counts.values() if v]
    assert sum(counts.values()) == n, (counts, st)
    # the slack of h2c_balance (8 + 1/32) plus what racing workers overshoot
    assert len(live) == CHILDREN and max(live) - min(live) <= 24, (counts, st)


def test_loops_even_and_handed_connections_served(server):
    handed0 = server.h2chat_status().get('H2ChatDirectHanded', 0)
    logged0 = len(server.access_log.read_text())
    # without credentials: httpd's 401, in whichever child the loop is
    refused = [env.RawH2(server.port) for _ in range(8)]
    for c in refused:
        c.pump(lambda c=c: c.status is not None)
        assert c.status == '401', (c.status, c.data[-200:])
        c.close()
    conns = hold(server, N)
    try:
        counts, st = per_child(server)
        assert_even(counts, N, st)
        assert st['H2ChatDirectHanded'] > handed0, st
        for i in range(3):
            server.post_msg('b', f'even {i}')
        for c in conns:
            c.pump(lambda c=c: len(c.messages()) >= 3)
        bad = [c.data[-200:] for c in conns if [m['text'] for m in c.messages()]
               != ['even 0', 'even 1', 'even 2']]
        assert not bad, (len(bad), bad[:3])
    finally:
        for c in conns:
            c.close()
    assert server.wait_subscribers(0, timeout=15) == 0
    # every held stream, handed or not, was bob's, with its log line
    held = re.compile(r'127\.0\.0\.1 bob .*"GET /msgs HTTP/2\.0" 200 ')
    assert env.wait_until(
        lambda: len(held.findall(server.access_log.read_text()[logged0:])) == N, 10), \
        len(held.findall(server.access_log.read_text()[logged0:]))


def test_even_again_after_graceful_restart(server):
    gen = server.generation()
    server.graceful()
    assert server.generation() != gen
    # the old generation's loops take nothing: only the new ones count
    assert env.wait_until(lambda: len(per_child(server)[0]) == CHILDREN, 20), \
        per_child(server)
    conns = hold(server, N)
    try:
        counts, st = per_child(server)
        assert_even(counts, N, st)
    finally:
        for c in conns:
            c.close()
    assert server.wait_subscribers(0, timeout=15) == 0


def test_only_own_children_hand_over(server):
    """A socket sent to a loop's hand-over name by another process (here
    root, the test; children run as www-data) is closed, never served."""
    counts, st = per_child(server)
    pid = next(iter(counts))
    names = [line.split()[-1] for line in open('/proc/net/unix')
             if f'@h2chat-direct/{pid}/' in line]
    assert len(names) == 1, names
    lst = socket.create_server(('127.0.0.1', 0))
    victim = socket.create_connection(lst.getsockname())
    peer, _ = lst.accept()
    # the h2c preface on `victim`'s far end: a loop that took it would answer
    victim.sendall(b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n' + b'\x00\x00\x00\x04\x00\x00\x00\x00\x00')
    # payloads of every size up to 1 KiB, one of them the real message's:
    # without the sender check a zeroed one would be served
    u = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sent = 0
    try:
        for size in range(8, 1025, 8):
            try:
                u.sendmsg([bytes(size)], [(socket.SOL_SOCKET, socket.SCM_RIGHTS,
                                          array.array('i', [peer.fileno()]))],
                          socket.MSG_DONTWAIT, b'\0' + names[0][1:].encode())
                sent += 1
            except BlockingIOError:
                time.sleep(0.05)
    finally:
        u.close()
    assert sent > 60, sent
    peer.close()  # the loop's copy, if it kept one, is the only one left
    victim.settimeout(2)
    try:
        got = victim.recv(100)
    except socket.timeout:
        got = None
    except ConnectionResetError:  # closed with our preface unread
        got = b''
    # closed at once, never a SETTINGS frame from a loop
    assert got == b'', got
    victim.close()
    lst.close()
    assert per_child(server)[1]['H2ChatDirectConnections'] == 0
