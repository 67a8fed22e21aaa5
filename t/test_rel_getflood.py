"""Reliability 7 (scale): thousands of GETs /msgs from one address.

FLOOD GETs over HTTP/1.1 from 127.0.0.1, each on its own connection, at
most 200 waiting for an answer at a time (a raw selector client: a process
per connection would make the client the bottleneck). Up to
H2ChatMaxSubscribers are held; every other one gets 503 + Retry-After + a
JSON error, nothing held beyond the cap. During the flood the page
(GET /) and POSTs keep working over h1, h2c and h2 TLS; afterwards every
held stream receives a new message, and the count returns to zero when
they leave.

Short: cap 200, at least 2,000 GETs and 8 s. H2CHAT_SOAK=1: cap 1,000, at
least 6,000 GETs and 30 s."""

import json
import selectors
import socket
import threading
import time

import h2chat_env as env
import h2chat_rel as rel

CAP = rel.pick(200, 1000)
FLOOD = rel.pick(2000, 6000)
MIN_S = rel.pick(8, 30)  # go on flooding at least this long: the page and POSTs meanwhile
WINDOW = 200  # GETs waiting for their answer at once
# (the flood comes from 127.0.0.1: the server-wide cap is the one tested)
EXTRA_CONF = (f'H2ChatMaxSubscribers {CAP}\nH2ChatMaxSubscribersPerAddress off\n'
              'H2MinWorkers 8\n<Location /msgs>\n    H2ChatSnapshot 0\n</Location>\n')
# a held HTTP/1.1 stream keeps its MPM thread: room for the cap and the flood
# (mod_http2 takes ThreadsPerChild as its H2MinWorkers: it must stay below
# H2MaxWorkers, or h2 answers nothing: AH02911)
MPM = {'StartServers': 4, 'ServerLimit': 4, 'ThreadsPerChild': rel.pick(100, 400),
       'ThreadLimit': rel.pick(100, 400), 'MaxRequestWorkers': rel.pick(400, 1600),
       'MinSpareThreads': 25, 'MaxSpareThreads': rel.pick(400, 1600)}


class Conn:
    def __init__(self, port, i):
        self.i = i
        self.buf = b''
        self.status = None
        self.headers = {}
        self.body = b''
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setblocking(False)
        self.sock.connect_ex(('127.0.0.1', port))
        self.sent = False

    def head_done(self):
        if self.status is not None:
            return True
        end = self.buf.find(b'\r\n\r\n')
        if end < 0:
            return False
        lines = self.buf[:end].decode('latin-1').split('\r\n')
        self.status = int(lines[0].split()[1])
        for line in lines[1:]:
            k, _, v = line.partition(':')
            self.headers[k.strip().lower()] = v.strip()
        self.body = self.buf[end + 4:]
        return True

    def refused_done(self):
        n = int(self.headers.get('content-length', '-1'))
        return n >= 0 and len(self.body) >= n


def flood(port, n, min_s):
    """At least n GETs, and more until min_s seconds have passed -> (held
    Conns, refused Conns, other Conns, GETs sent)."""
    sel = selectors.DefaultSelector()
    req = b'GET /msgs HTTP/1.1\r\nHost: localhost\r\nAccept: application/x-ndjson\r\n\r\n'
    held, refused, other = [], [], []
    started = waiting = 0
    t0 = time.monotonic()
    deadline = t0 + min_s + rel.pick(120, 400)

    def more():
        return started < n or time.monotonic() - t0 < min_s
    while (more() or waiting) and time.monotonic() < deadline:
        while more() and waiting < WINDOW:
            c = Conn(port, started)
            sel.register(c.sock, selectors.EVENT_WRITE, c)
            started += 1
            waiting += 1
        for key, ev in sel.select(1.0):
            c = key.data
            if not c.sent:
                err = c.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR)
                if err:
                    sel.unregister(c.sock)
                    c.sock.close()
                    c.status = -err
                    other.append(c)
                    waiting -= 1
                    continue
                c.sock.send(req)
                c.sent = True
                sel.modify(c.sock, selectors.EVENT_READ, c)
                continue
            try:
                data = c.sock.recv(65536)
            except OSError:
                data = b''
            if data:
                if c.status is None:
                    c.buf += data
                    if not c.head_done():
                        continue
                else:
                    c.body += data
                if c.status == 200:
                    sel.unregister(c.sock)
                    held.append(c)
                    waiting -= 1
                elif c.refused_done():
                    sel.unregister(c.sock)
                    c.sock.close()
                    refused.append(c)
                    waiting -= 1
                continue
            sel.unregister(c.sock)
            c.sock.close()
            other.append(c)
            waiting -= 1
    sel.close()
    return held, refused, other, started


def read_until(conns, needle, timeout):
    """Reads every held stream until each has `needle` -> how many have it."""
    sel = selectors.DefaultSelector()
    for c in conns:
        if needle not in c.body:
            sel.register(c.sock, selectors.EVENT_READ, c)
    deadline = time.monotonic() + timeout
    while sel.get_map() and time.monotonic() < deadline:
        for key, _ in sel.select(0.5):
            c = key.data
            try:
                data = c.sock.recv(65536)
            except OSError:
                data = b''
            c.body += data
            if not data or needle in c.body:
                sel.unregister(c.sock)
    sel.close()
    return sum(needle in c.body for c in conns)


def test_get_flood_one_address(server):
    page = (env.HTDOCS / 'index.html').read_bytes()
    before = server.h2chat_status()
    side = {'page': [], 'post': []}
    stop = threading.Event()

    def meanwhile():
        k = 0
        while not stop.is_set():
            transport = ('h1', 'h2c', 'h2tls')[k % 3]
            try:
                t0 = time.monotonic()
                r = server.get('/', transport=transport)
                side['page'].append((transport, r.status, r.body == page,
                                     time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001 -- a failure is a finding, not a crash
                side['page'].append((transport, repr(e), False, time.monotonic() - t0))
            try:
                t0 = time.monotonic()
                r = server.post({'user': 'side', 'text': f'during flood {k}'},
                                transport=transport)
                side['post'].append((transport, r.status, time.monotonic() - t0))
            except Exception as e:  # noqa: BLE001
                side['post'].append((transport, repr(e), time.monotonic() - t0))
            k += 1
            time.sleep(0.05)

    th = threading.Thread(target=meanwhile, daemon=True)
    th.start()
    t0 = time.monotonic()
    held, refused, other, started = flood(server.port, FLOOD, MIN_S)
    took = time.monotonic() - t0
    stop.set()
    th.join(30)
    status = server.h2chat_status()
    bad_refusals = []
    for c in refused:
        try:
            ok = (c.status == 503 and c.headers.get('retry-after', '').isdigit() and
                  c.headers.get('content-type', '').startswith('application/json') and
                  json.loads(c.body.decode()).get('error'))
        except ValueError:
            ok = False
        if not ok:
            bad_refusals.append((c.status, c.headers, c.body[:200]))
    mid, _ = server.post_msg('after', 'to every held stream')
    needle = f'"id":{mid},'.encode()
    got = read_until(held, needle, 30)
    for c in held:
        c.sock.close()
    left = server.wait_subscribers(0, 20)
    figures = {
        'cap': CAP, 'gets': started, 'held': len(held), 'refused_503': len(refused),
        'other': [c.status for c in other][:10], 'flood_s': round(took, 1),
        'refused_cap_counter': status['H2ChatRefusedCap'] - before['H2ChatRefusedCap'],
        'subscribers_at_end_of_flood': status['H2ChatSubscribers'],
        'held_got_message_after': got,
        'page_fetches': len(side['page']),
        'page_ok': sum(1 for p in side['page'] if p[1] == 200 and p[2]),
        'page_max_s': round(max((p[3] for p in side['page']), default=0), 3),
        'posts': len(side['post']), 'posts_201': sum(1 for p in side['post'] if p[1] == 201),
        'post_max_s': round(max((p[2] for p in side['post']), default=0), 3),
        'subscribers_after_close': left,
    }
    rel.record('getflood' + ('_soak' if rel.SOAK else ''), **figures)
    assert started >= FLOOD and not other, figures
    assert len(held) == CAP and len(refused) == started - CAP, figures
    assert not bad_refusals, bad_refusals[:3]
    assert status['H2ChatSubscribers'] == CAP, status
    assert figures['refused_cap_counter'] == started - CAP, figures
    assert side['page'] and figures['page_ok'] == len(side['page']), side['page']
    assert side['post'] and figures['posts_201'] == len(side['post']), side['post']
    assert got == CAP, figures
    assert left == 0, server.h2chat_status()
