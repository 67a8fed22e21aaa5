"""Memory: held streams that only get heartbeats do not make the server grow.

N held GET /msgs streams per transport, `H2ChatHeartbeat 1`, no posts, for
END_S seconds:
- h2c:    h2c prior knowledge through mod_http2 to the handler (python-h2,
          one stream per connection, as browsers hold them);
- h1:     HTTP/1.1 to the handler (a raw socket per stream);
- direct: h2c prior knowledge to a server with `H2ChatDirect /msgs`, the
          module's own loop (python-h2, several streams per connection,
          as a proxy in front of it sends them).
Each transport has its own server, so growth is told apart per transport;
the three run at the same time, so the file takes one run (~2.5 min).
Each server tree (parent and children) is measured on its own from
/proc/PID/smaps_rollup at FIRST_S and at END_S after every stream is held
and must grow by less than MAX_GROWTH_KIB in between. Every stream must
have had heartbeats all along (the path under test ran) and still be held
at the end.

The clients are cheap: one python thread reads every socket (selectors),
parses just enough (python-h2 frames, the HTTP/1.1 head) and counts
heartbeat lines, so 600 streams cost the 2-core box little.

Nothing talks to a server between the two measurements: a request served
by a thread that has not run before touches new stack and pool pages.
server-status is read before the first and after the last."""

import selectors
import socket
import threading
import time

import pytest

import h2chat_env as env

N = 200  # held streams per transport
HEARTBEAT = 1  # seconds: H2ChatHeartbeat, the smallest allowed
# The first measurement waits until what comes with starting is in place
# (threads' first stacks and pools, allocator arenas, the first
# heartbeats); what grows after it grows with time. The issue asks for
# minute 0.5 to the end, the end at 2 minutes or later.
FIRST_S = 30
END_S = 120
# The bound. A cost of B bytes per stream and heartbeat shows as
# N * (END_S - FIRST_S) * B: the ~90 bytes of r->pool the handler kept per
# heartbeat (two small strings) made ~1.6 MiB, while 256 KiB leaves 200
# streams ~1.3 KiB each in 90 s for noise (a late stack page, allocator
# slack) and nothing per heartbeat (< 15 bytes).
MAX_GROWTH_KIB = 256
# Each measurement is the minimum of SAMPLES readings 1 s apart, so a
# heartbeat in flight or a page freed a moment later does not count.
SAMPLES = 3
# Streams per h2 connection. Through mod_http2 one, as the page holds them
# (docs/protocol.md, "One browser, one stream"). With several on a connection,
# mod_http2 itself grows: httpd 2.4.71's on_send_data_cb creates (and
# destroys) a brigade in the session pool for every DATA frame, 32 bytes
# the pool keeps while the connection lives (measured: 5 streams per
# connection, ~27 bytes per heartbeat, linear for 10 minutes; 1 per
# connection, flat). That is not this module's, and would hide its own.
# (mod_http2 also runs only 6 streams of a connection at first.) The
# direct loop takes many per connection, as from a proxy.
STREAMS_PER_CONN = {'h2c': 1, 'direct': 10}

TRANSPORTS = ('h2c', 'h1', 'direct')
MARK = b'"type":"heartbeat"'

# H2MinWorkers: mod_http2 takes ThreadsPerChild for it, and above
# H2MaxWorkers (64 in the base config) a child does not end on
# graceful-stop: the parent kills it ~20 s later.
COMMON_CONF = f"""
H2ChatMaxSubscribers {N + 20}
# N streams from 127.0.0.1 per server
H2ChatMaxSubscribersPerAddress off
H2MinWorkers 16
<Location /msgs>
    H2ChatHeartbeat {HEARTBEAT}
    H2ChatSnapshot 0
</Location>
"""
# Two children each. The MPM never reaps a child (MaxSpareThreads =
# MaxRequestWorkers) and every child could hold all N streams by itself,
# however the kernel spreads the connections.
FIXED = {'StartServers': 2, 'ServerLimit': 2, 'MinSpareThreads': 1,
         'MaxConnectionsPerChild': 0}


def mpm(threads):
    return dict(FIXED, ThreadsPerChild=threads, ThreadLimit=threads,
                MaxRequestWorkers=2 * threads, MaxSpareThreads=2 * threads)


SERVERS = {
    # a held h2 stream keeps an h2 worker (H2MaxWorkers is per child) and
    # its connection an MPM thread
    'h2c': (mpm(N + 24), f'H2MaxWorkers {N + 24}\n'),
    # a held HTTP/1.1 stream keeps an MPM thread
    'h1': (mpm(N + 24), ''),
    # the loop holds its streams without threads: a few for the rest
    'direct': (mpm(32), 'H2ChatDirect /msgs\n'),
}


# --------------------------------------------------------------------------
# Memory of a server tree

ROLLUP_KEYS = ('Pss', 'Pss_Anon', 'Pss_Shmem', 'Pss_File')


def tree_pss(server):
    """The smaps_rollup Pss figures (KiB) summed over the parent and its
    children, and the pids read."""
    pids = [server.pid] + server.children()
    out = dict.fromkeys(ROLLUP_KEYS, 0)
    for pid in pids:
        with open(f'/proc/{pid}/smaps_rollup') as f:
            for line in f:
                key, _, rest = line.partition(':')
                if key in out:
                    out[key] += int(rest.split()[0])
    return out, pids


def measure(servers):
    """Per server: the minimum of SAMPLES readings of each figure."""
    best = {name: dict.fromkeys(ROLLUP_KEYS, None) for name in servers}
    pids = {}
    for i in range(SAMPLES):
        if i:
            time.sleep(1)
        for name, srv in servers.items():
            figures, pids[name] = tree_pss(srv)
            for k, v in figures.items():
                best[name][k] = v if best[name][k] is None else min(best[name][k], v)
    return best, pids


def own_kb(fig):
    """Pss without file-backed pages. The Pss of a file page (apache2,
    modules, libc, libcrypto) is divided among every process on the
    machine that maps it, so it moves when other Apache servers start or
    stop (other worktrees' suites run beside this one); a leak is
    anonymous memory (Pss_Anon), and the shared segment (Pss_Shmem) is
    mapped by this server alone."""
    return fig['Pss_Anon'] + fig['Pss_Shmem']


# --------------------------------------------------------------------------
# Clients: one thread reads them all

class Stream:
    """What one held stream got: its status and heartbeat lines."""

    def __init__(self):
        self.status = None
        self.beats = 0
        self.last_beat = None  # monotonic
        self.ended = None      # why it ended, if it did
        self._tail = b''

    def feed(self, data, now):
        buf = self._tail + data
        n = buf.count(MARK)
        if n:
            self.beats += n
            self.last_beat = now
        self._tail = buf[-(len(MARK) - 1):]  # a mark split across reads


class H2Conn:
    """One h2c prior-knowledge connection with `n` held GET /msgs."""

    def __init__(self, port, n):
        import h2.config
        import h2.connection
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
        self.conn.initiate_connection()
        self.streams = {}
        for _ in range(n):
            sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(sid, [(':method', 'GET'), (':path', '/msgs'),
                                         (':scheme', 'http'),
                                         (':authority', f'localhost:{port}')],
                                   end_stream=True)
            self.streams[sid] = Stream()
        self.sock.sendall(self.conn.data_to_send())

    def on_data(self, data, now):
        import h2.events
        for ev in self.conn.receive_data(data):
            st = self.streams.get(getattr(ev, 'stream_id', None))
            if isinstance(ev, h2.events.ResponseReceived) and st:
                st.status = int(dict(ev.headers)[':status'])
            elif isinstance(ev, h2.events.DataReceived):
                if st:
                    st.feed(ev.data, now)
                self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
            elif isinstance(ev, h2.events.StreamEnded) and st:
                st.ended = st.ended or 'END_STREAM'
            elif isinstance(ev, h2.events.StreamReset) and st:
                st.ended = st.ended or f'RST_STREAM {int(ev.error_code)}'
            elif isinstance(ev, h2.events.ConnectionTerminated):
                self.on_close(f'GOAWAY {int(ev.error_code)}')
        out = self.conn.data_to_send()
        if out:
            self.sock.sendall(out)

    def on_close(self, why='connection closed'):
        for st in self.streams.values():
            st.ended = st.ended or why


class H1Conn:
    """One HTTP/1.1 connection with a held GET /msgs (chunked)."""

    def __init__(self, port):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        self.sock.sendall(b'GET /msgs HTTP/1.1\r\nHost: localhost\r\n\r\n')
        self.streams = {1: Stream()}
        self._head = b''
        self._tail = b''

    def on_data(self, data, now):
        st = self.streams[1]
        if st.status is None:
            self._head += data
            if b'\r\n\r\n' not in self._head:
                return
            head, data = self._head.split(b'\r\n\r\n', 1)
            st.status = int(head.split(b' ', 2)[1])
        st.feed(data, now)
        self._tail = (self._tail + data)[-7:]
        if self._tail == b'\r\n0\r\n\r\n':  # the last chunk
            st.ended = st.ended or 'last chunk'

    def on_close(self, why='connection closed'):
        self.streams[1].ended = self.streams[1].ended or why


class Reader(threading.Thread):
    """Reads every connection's socket in one thread until stopped."""

    def __init__(self, conns):
        super().__init__(daemon=True)
        self.sel = selectors.DefaultSelector()
        for c in conns:
            self.sel.register(c.sock, selectors.EVENT_READ, c)
        self.halt = threading.Event()
        self.errors = []

    def run(self):
        while not self.halt.is_set():
            for key, _ in self.sel.select(0.5):
                conn = key.data
                try:
                    data = conn.sock.recv(65536)
                except OSError as e:
                    data, why = b'', f'recv: {e}'
                else:
                    why = 'connection closed'
                try:
                    if data:
                        conn.on_data(data, time.monotonic())
                        continue
                except Exception as e:  # noqa: BLE001 - a protocol error ends this one
                    why = f'client error: {e!r}'
                    self.errors.append(why)
                self.sel.unregister(conn.sock)
                conn.on_close(why)

    def stop(self):
        self.halt.set()
        self.join(timeout=5)


def open_streams(transport, port):
    if transport == 'h1':
        return [H1Conn(port) for _ in range(N)]
    per = STREAMS_PER_CONN[transport]
    return [H2Conn(port, min(per, N - i)) for i in range(0, N, per)]


# --------------------------------------------------------------------------
# The run: all three transports at once, measured per server

@pytest.fixture(scope='module')
def nodes(cert):
    """The three servers (conftest's no_crash watches `nodes`)."""
    servers = {t: env.H2ChatServer(f'test_memory_{t}', COMMON_CONF + SERVERS[t][1],
                                   SERVERS[t][0], cert=cert) for t in TRANSPORTS}
    try:
        for srv in servers.values():
            srv.start()
        yield list(servers.values())
    finally:
        for srv in servers.values():
            srv.stop()


def held_counts(srv):
    """server-status: held streams, and of them the direct loop's."""
    st = srv.h2chat_status()
    return st.get('H2ChatSubscribers'), st.get('H2ChatDirectSubscribers')


@pytest.fixture(scope='module')
def run(nodes):
    servers = dict(zip(TRANSPORTS, nodes))
    conns = {t: open_streams(t, servers[t].port) for t in TRANSPORTS}
    streams = {t: [s for c in conns[t] for s in c.streams.values()] for t in TRANSPORTS}
    reader = Reader([c for cs in conns.values() for c in cs])
    reader.start()
    out = {'streams': streams, 'reader': reader}
    try:
        # held: a 200 and a first heartbeat (or an answer that says no)
        held = env.wait_until(lambda: all(s.ended or (s.status is not None and
                                                      (s.status != 200 or s.beats))
                                          for ss in streams.values() for s in ss), 60, 0.2)
        held = held and all(s.status == 200 and not s.ended
                            for ss in streams.values() for s in ss)
        t0 = time.monotonic()
        out['held_at_start'] = {t: sum(1 for s in ss if s.status == 200 and s.beats)
                                for t, ss in streams.items()}
        out['status_start'] = {t: held_counts(srv) for t, srv in servers.items()}
        if held:
            time.sleep(max(0.0, t0 + FIRST_S - time.monotonic()))
            out['beats_first'] = {t: [s.beats for s in ss] for t, ss in streams.items()}
            out['first'], out['pids_first'] = measure(servers)
            t1 = time.monotonic()
            time.sleep(max(0.0, t0 + END_S - time.monotonic()))
            out['end'], out['pids_end'] = measure(servers)
            out['window_s'] = time.monotonic() - t1
            out['beats_end'] = {t: [s.beats for s in ss] for t, ss in streams.items()}
            out['end_t'] = time.monotonic()
            out['status_end'] = {t: held_counts(srv) for t, srv in servers.items()}
        yield out
    finally:
        reader.stop()
        for cs in conns.values():
            for c in cs:
                c.sock.close()


def report(run, transport):
    first, end = run['first'][transport], run['end'][transport]
    grow = {k: end[k] - first[k] for k in ROLLUP_KEYS}
    beats = sum(e - f for e, f in zip(run['beats_end'][transport],
                                      run['beats_first'][transport]))
    per_beat = own_kb(grow) * 1024 / beats if beats else float('nan')
    return (f'{transport}: Pss_Anon+Pss_Shmem {own_kb(first)} -> {own_kb(end)} KiB '
            f'({own_kb(grow):+} KiB, limit {MAX_GROWTH_KIB}) over {run["window_s"]:.0f} s; '
            f'Pss {grow["Pss"]:+} KiB (Anon {grow["Pss_Anon"]:+}, Shmem {grow["Pss_Shmem"]:+}, '
            f'File {grow["Pss_File"]:+}); {beats} heartbeats on {N} streams in between, '
            f'{per_beat:.0f} bytes each')


@pytest.mark.parametrize('transport', TRANSPORTS)
def test_held_streams_do_not_grow(run, nodes, transport):
    srv = dict(zip(TRANSPORTS, nodes))[transport]
    streams = run['streams'][transport]
    assert run['held_at_start'][transport] == N, (
        f'{transport}: {run["held_at_start"][transport]} of {N} streams held with a '
        f'heartbeat; statuses {sorted(set(s.status for s in streams), key=str)}; '
        f'ended {[s.ended for s in streams if s.ended][:5]}\n{srv.errlog_tail()}')
    if 'first' not in run:
        pytest.fail(f'not measured: not every stream was held ({run["held_at_start"]})')
    held, direct = run['status_start'][transport]
    assert held == N and (transport != 'direct' or direct == N), run['status_start']

    # the heartbeat path ran on every stream, all the time
    window = END_S - FIRST_S
    during = [e - f for e, f in zip(run['beats_end'][transport],
                                    run['beats_first'][transport])]
    assert min(during) >= window // (2 * HEARTBEAT), (
        f'{transport}: a stream got only {min(during)} heartbeats in {window} s')
    late = [run['end_t'] - s.last_beat for s in streams]
    assert max(late) < 5 * HEARTBEAT, f'{transport}: no heartbeat for {max(late):.1f} s'
    # and every stream is still held
    assert not [s.ended for s in streams if s.ended], \
        f'{transport}: ended: {[s.ended for s in streams if s.ended][:5]}'
    assert not run['reader'].errors, run['reader'].errors[:5]
    assert run['status_end'][transport][0] == N, run['status_end']
    assert run['pids_first'][transport] == run['pids_end'][transport], \
        'a child was replaced during the run: its memory does not compare'
    assert not srv.errlog_problems(), srv.errlog_problems()[:5]

    msg = report(run, transport)
    print(msg)
    if env.PRELOAD:  # a sanitized build: figures only (t/README.md)
        return
    growth = own_kb({k: run['end'][transport][k] - run['first'][transport][k]
                     for k in ROLLUP_KEYS})
    assert growth < MAX_GROWTH_KIB, msg
