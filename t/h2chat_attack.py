"""Raw-socket HTTP/2 clients for hostile-peer tests of the direct loop
(H2ChatDirect) and, over TLS, of mod_http2 for comparison.

Frames are built by hand and sent as given (no client library fixes them
up: a library would refuse most of what an attacker sends); HPACK blocks
are hand-encoded (literals without Huffman, so sizes are exact) and the
server's header blocks are decoded with `hpack` (python3-h2's). Reusable
by the reliability tests: `RawH2` is one connection that records every
frame the server sends, `flood()` runs one frame flood until the server
gives up, `Junk` keeps a connection sending bytes as fast as it can.
"""

import os
import select
import socket
import ssl
import struct
import threading
import time

import hpack

PREFACE = b'PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'

# frame types (RFC 9113 6)
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, \
    WINDOW_UPDATE, CONTINUATION = range(10)
# flags
END_STREAM = 0x1
ACK = 0x1
END_HEADERS = 0x4
PADDED = 0x8
PRIORITY_FLAG = 0x20
# error codes (RFC 9113 7)
NO_ERROR = 0x0
PROTOCOL_ERROR = 0x1
INTERNAL_ERROR = 0x2
FLOW_CONTROL_ERROR = 0x3
FRAME_SIZE_ERROR = 0x6
REFUSED_STREAM = 0x7
CANCEL = 0x8
ENHANCE_YOUR_CALM = 0xb
# settings
SETTINGS_INITIAL_WINDOW_SIZE = 0x4

MAX_FRAME = 16384  # SETTINGS_MAX_FRAME_SIZE's default: what servers accept


# --------------------------------------------------------------------------
# Frames

def frame(ftype, flags, sid, payload=b''):
    n = len(payload)
    return struct.pack('>BHBBI', n >> 16, n & 0xFFFF, ftype, flags, sid & 0x7FFFFFFF) + payload


def settings(entries=(), ack=False):
    return frame(SETTINGS, ACK if ack else 0, 0,
                 b''.join(struct.pack('>HI', k, v) for k, v in entries))


def ping(opaque=b'\0' * 8, ack=False):
    return frame(PING, ACK if ack else 0, 0, opaque)


def window_update(sid, increment):
    return frame(WINDOW_UPDATE, 0, sid, struct.pack('>I', increment))


def priority(sid, depends_on=0, weight=16, exclusive=False):
    dep = depends_on | (0x80000000 if exclusive else 0)
    return frame(PRIORITY, 0, sid, struct.pack('>IB', dep, weight - 1))


def rst_stream(sid, code=CANCEL):
    return frame(RST_STREAM, 0, sid, struct.pack('>I', code))


def data(sid, payload=b'', end_stream=False):
    return frame(DATA, END_STREAM if end_stream else 0, sid, payload)


def goaway(last_sid, code, debug=b''):
    return frame(GOAWAY, 0, 0, struct.pack('>II', last_sid, code) + debug)


def headers(sid, block, end_stream=True, end_headers=True):
    flags = (END_STREAM if end_stream else 0) | (END_HEADERS if end_headers else 0)
    return frame(HEADERS, flags, sid, block)


def continuation(sid, block, end_headers=False):
    return frame(CONTINUATION, END_HEADERS if end_headers else 0, sid, block)


def header_frames(sid, block, end_stream=True):
    """A header block as HEADERS + as many CONTINUATION frames as its
    size needs (at most 16 KiB each)."""
    parts = [block[i:i + MAX_FRAME] for i in range(0, len(block), MAX_FRAME)] or [b'']
    out = headers(sid, parts[0], end_stream=end_stream, end_headers=len(parts) == 1)
    for i, part in enumerate(parts[1:], 2):
        out += continuation(sid, part, end_headers=i == len(parts))
    return out


def client_start(entries=()):
    """The client preface and its first SETTINGS."""
    return PREFACE + settings(entries)


# --------------------------------------------------------------------------
# HPACK, by hand (RFC 7541): no Huffman, exact sizes

def hpack_int(value, prefix_bits, first=0):
    """An integer with an N-bit prefix; `first` holds the pattern bits."""
    limit = (1 << prefix_bits) - 1
    if value < limit:
        return bytes([first | value])
    out = [first | limit]
    value -= limit
    while value >= 128:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def hpack_str(s):
    s = s.encode('latin-1') if isinstance(s, str) else s
    return hpack_int(len(s), 7) + s


# static table indexes of the names we send (RFC 7541 Appendix A)
STATIC_NAME = {':authority': 1, ':method': 2, ':path': 4, ':scheme': 6}
STATIC_FULL = {(':method', 'GET'): 2, (':method', 'POST'): 3, (':path', '/'): 4,
               (':scheme', 'http'): 6, (':scheme', 'https'): 7}


def hpack_field(name, value, index=False):
    """One field: fully indexed if the static table has it, else a literal
    (with incremental indexing if `index`, else without indexing; a static
    name is referenced by its index)."""
    if not index and (name, value) in STATIC_FULL:
        return hpack_int(STATIC_FULL[(name, value)], 7, 0x80)
    if index:
        prefix, pattern = 6, 0x40
    else:
        prefix, pattern = 4, 0x00
    if name in STATIC_NAME:
        return hpack_int(STATIC_NAME[name], prefix, pattern) + hpack_str(value)
    return bytes([pattern]) + hpack_str(name) + hpack_str(value)


def request_block(method='GET', path='/msgs', scheme='http', authority='localhost',
                  extra=()):
    """A request's header block: pseudo-headers, then `extra` (name, value)
    pairs in order (duplicates kept), none added to the dynamic table."""
    fields = [(':method', method), (':scheme', scheme), (':path', path),
              (':authority', authority)] + list(extra)
    return b''.join(hpack_field(n, v) for n, v in fields)


INDEXED_62 = b'\xbe'  # indexed field, index 62: the newest dynamic-table entry


def amplified_block(value_len=4000, size=MAX_FRAME, path='/msgs'):
    """The HPACK bomb: a request's pseudo-headers, one literal of
    `value_len` bytes added to the dynamic table, then references to it
    (one byte each, ~4 KB decoded each) until the block is `size` bytes."""
    head = request_block(path=path) + hpack_field('x-bomb', 'b' * value_len, index=True)
    return head + INDEXED_62 * (size - len(head))


# --------------------------------------------------------------------------
# One connection

class Frame:
    __slots__ = ('type', 'flags', 'sid', 'payload', 't')

    def __init__(self, ftype, flags, sid, payload, t):
        self.type, self.flags, self.sid, self.payload, self.t = ftype, flags, sid, payload, t

    def __repr__(self):
        return (f'<Frame type={self.type} flags={self.flags:#x} sid={self.sid} '
                f'len={len(self.payload)}>')


class Stream:
    def __init__(self, sid):
        self.sid = sid
        self.headers = None   # dict of the response header block (lower-case names)
        self.status = None
        self.data = b''
        self.ended = False
        self.rst = None       # RST_STREAM error code
        self.t_sent = time.monotonic()
        self.t_done = None    # answer (headers) or reset

    @property
    def answered(self):
        return self.status is not None or self.rst is not None

    def __repr__(self):
        return (f'<Stream {self.sid} status={self.status} rst={self.rst} ended={self.ended} '
                f'data={self.data[:120]!r}>')


class RawH2:
    """One HTTP/2 connection on a raw socket: h2c with prior knowledge, or
    h2 over TLS (ALPN) with tls=True. Whatever is sent goes out as given;
    every frame the server sends is kept (`frames`) and interpreted:
    response headers, DATA and resets per stream, GOAWAYs, the close (EOF,
    or a reset with `conn_reset`). The server's SETTINGS are acknowledged
    and DATA is given back to the windows, unless `polite` is False.

    source: a local address to bind (127.x.y.z) so the server's log lines
    name this connection."""

    def __init__(self, port, tls=False, host='127.0.0.1', source=None, start=True,
                 polite=True, timeout=10, rcvbuf=None):
        self.port = port
        self.tls = tls
        self.polite = polite
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        # each send() is a segment at once: no Nagle wait behind the
        # server's delayed ACK (40 ms) for a small write after a small write
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        if source:
            sock.bind((source, 0))
        sock.settimeout(timeout)
        sock.connect((host, port))
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname = False
            ctx.verify_mode = ssl.CERT_NONE
            ctx.set_alpn_protocols(['h2'])
            sock = ctx.wrap_socket(sock, server_hostname='localhost')
            assert sock.selected_alpn_protocol() == 'h2', sock.selected_alpn_protocol()
        self.sock = sock
        self.decoder = hpack.Decoder()
        self.decoder.max_header_list_size = 1 << 20
        self.buf = b''
        self.frames = []
        self.streams = {}
        self.goaways = []      # (last stream id, error code, debug data, arrival)
        self.ping_acks = set()  # opaque data of the PINGs the server acknowledged
        self.closed = False    # EOF or reset seen
        self.conn_reset = False
        self.send_error = None
        self.bytes_sent = 0
        self._hblock = None    # (sid, bytes) of a header block awaiting CONTINUATION
        self.next_sid = 1
        if start:
            self.send(client_start())

    # -- sending
    def send(self, payload):
        """Sends all of payload; False (and send_error) if the connection
        refused it (reset, closed, or no room for `timeout` s)."""
        if self.send_error:
            return False
        try:
            self.sock.sendall(payload)
            self.bytes_sent += len(payload)
            return True
        except (OSError, ssl.SSLError) as e:
            self.send_error = e
            return False

    def new_sid(self):
        sid = self.next_sid
        self.next_sid += 2
        return sid

    def request(self, method='GET', path='/msgs', extra=(), body=None, scheme=None,
                end_stream=None, block=None):
        """Sends one request (its header block in one HEADERS frame, any body
        in DATA frames of at most 16 KiB) -> stream id."""
        sid = self.new_sid()
        if block is None:
            block = request_block(method, path, scheme or ('https' if self.tls else 'http'),
                                  f'localhost:{self.port}', extra)
        if end_stream is None:
            end_stream = not body
        self.streams[sid] = Stream(sid)
        out = header_frames(sid, block, end_stream)
        if body:
            for i in range(0, len(body), MAX_FRAME):
                out += data(sid, body[i:i + MAX_FRAME], end_stream=i + MAX_FRAME >= len(body))
        self.send(out)
        return sid

    def track(self, sid):
        self.streams.setdefault(sid, Stream(sid))
        return self.streams[sid]

    # -- reading
    def poll(self, timeout=0.0):
        """Reads what has arrived (waiting at most timeout s for the first
        bytes) and handles its frames. False once the connection is closed."""
        if self.closed:
            return False
        pending = self.tls and self.sock.pending()
        if not pending:
            r, _, _ = select.select([self.sock], [], [], timeout)
            if not r:
                return True
        try:
            chunk = self.sock.recv(262144)
        except ssl.SSLWantReadError:
            return True
        except (ConnectionResetError, BrokenPipeError):
            self.closed = self.conn_reset = True
            return False
        except (OSError, ssl.SSLError):
            self.closed = True
            return False
        if not chunk:
            self.closed = True
            return False
        self.buf += chunk
        self._frames()
        return True

    def _frames(self):
        now = time.monotonic()
        while len(self.buf) >= 9:
            n = int.from_bytes(self.buf[:3], 'big')
            if len(self.buf) < 9 + n:
                break
            ftype, flags = self.buf[3], self.buf[4]
            sid = int.from_bytes(self.buf[5:9], 'big') & 0x7FFFFFFF
            payload = self.buf[9:9 + n]
            self.buf = self.buf[9 + n:]
            f = Frame(ftype, flags, sid, payload, now)
            self.frames.append(f)
            self._handle(f)

    def _handle(self, f):
        if f.type == SETTINGS and not f.flags & ACK and self.polite:
            self.send(settings(ack=True))
        elif f.type == PING and f.flags & ACK:
            self.ping_acks.add(f.payload)
        elif f.type == GOAWAY:
            last, code = struct.unpack('>II', f.payload[:8])
            self.goaways.append((last & 0x7FFFFFFF, code, f.payload[8:], f.t))
        elif f.type == RST_STREAM:
            st = self.track(f.sid)
            st.rst = struct.unpack('>I', f.payload[:4])[0]
            st.t_done = st.t_done or f.t
        elif f.type in (HEADERS, CONTINUATION):
            block = f.payload
            if f.type == HEADERS:
                if f.flags & PADDED:
                    pad = block[0]
                    block = block[1:len(block) - pad]
                if f.flags & PRIORITY_FLAG:
                    block = block[5:]
                self._hblock = (f.sid, block, f.flags & END_STREAM)
            else:
                sid, prev, es = self._hblock
                self._hblock = (sid, prev + block, es)
            if f.flags & END_HEADERS:
                sid, block, es = self._hblock
                self._hblock = None
                st = self.track(sid)
                hdrs = {}
                for k, v in self.decoder.decode(block, raw=True):
                    k, v = k.decode('latin-1'), v.decode('latin-1')
                    hdrs[k] = hdrs[k] + ', ' + v if k in hdrs else v
                if st.headers is None:
                    st.headers = hdrs
                    st.status = int(hdrs.get(':status', 0))
                    st.t_done = st.t_done or f.t
                if es:
                    st.ended = True
        elif f.type == DATA:
            st = self.track(f.sid)
            body = f.payload
            if f.flags & PADDED:
                body = body[1:len(body) - body[0]]
            st.data += body
            if f.flags & END_STREAM:
                st.ended = True
            if self.polite and f.payload:
                self.send(window_update(0, len(f.payload)) +
                          window_update(f.sid, len(f.payload)))

    def wait(self, pred, timeout=5.0):
        """Reads until pred() is true, the connection closes, or timeout s
        pass; returns pred()."""
        deadline = time.monotonic() + timeout
        while not pred():
            left = deadline - time.monotonic()
            if left <= 0 or not self.poll(min(left, 0.2)):
                break
        return pred()

    def answer(self, sid, timeout=5.0, whole=True):
        """Waits for stream sid's answer: its headers (and, with whole, the
        end of its body) or its reset -> Stream."""
        st = self.track(sid)
        self.wait(lambda: st.rst is not None or
                  (st.status is not None and (st.ended or not whole)), timeout)
        return st

    def wait_closed(self, timeout=5.0):
        """Reads until the server closes the connection; True if it did."""
        deadline = time.monotonic() + timeout
        while not self.closed and time.monotonic() < deadline:
            self.poll(min(0.2, deadline - time.monotonic()))
        return self.closed

    @property
    def goaway_codes(self):
        return [g[1] for g in self.goaways]

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# Floods

def _pairs_of_reset_streams(conn, n):
    out = b''
    for _ in range(n):
        sid = conn.new_sid()
        out += headers(sid, request_block(authority=f'localhost:{conn.port}')) + \
            rst_stream(sid, CANCEL)
    return out


# kind -> (setup(conn) -> bytes, batch(conn, n) -> bytes of n frames)
FLOODS = {
    # connection window: the server's is open already, so each moves nothing
    'window_update': (lambda c: b'', lambda c, n: window_update(0, 1) * n),
    # an open POST stream that never gets a byte of its body
    'empty_data': (
        lambda c: headers(1, request_block('POST', extra=[('content-type', 'application/json')],
                                           authority=f'localhost:{c.port}'),
                          end_stream=False),
        lambda c, n: data(1, b'') * n),
    'priority': (lambda c: b'', lambda c, n: priority(3, 0, 16) * n),
    'ping': (lambda c: b'', lambda c, n: ping(b'floodfld') * n),
    'settings': (lambda c: b'', lambda c, n: settings() * n),
    # "rapid reset": HEADERS of a fresh stream, at once RST_STREAM (a pair
    # counts as one frame here)
    'rapid_reset': (lambda c: b'', _pairs_of_reset_streams),
}


class FloodResult:
    def __init__(self, kind):
        self.kind = kind
        self.frames = 0            # flood frames sent when the first GOAWAY was read
        self.probes = 0            # PINGs sent to pace the flood (sync)
        self.goaway_codes = []
        self.goaway_after = None   # seconds from the start to the first GOAWAY
        self.closed = False        # the server closed the connection
        self.closed_after = None   # seconds from the start to the close
        self.conn_reset = False    # ... with a reset rather than a FIN
        self.elapsed = 0.0
        self.peer = None

    def __repr__(self):
        return (f'<Flood {self.kind} from {self.peer}: GOAWAY {self.goaway_codes} after '
                f'{self.frames} frames (+{self.probes} probes), '
                f'{self.goaway_after and round(self.goaway_after, 3)} s; '
                f'closed={self.closed} reset={self.conn_reset} '
                f'({self.closed_after and round(self.closed_after, 3)} s)>')


def flood(port, kind, max_frames=20000, batch=20, source=None, sync=True, close_wait=4.0):
    """Sends frames of one kind (FLOODS) on a new connection, `batch` at a
    time, until the server answers with a GOAWAY or max_frames went out;
    then reads until it closes (at most close_wait s) -> FloodResult.

    sync: each batch is followed by a PING and the next one waits for its
    acknowledgement, so that `frames` is exact to a batch (the PINGs are
    counted apart, in `probes`); without it the frames go out as fast as
    the socket takes them and `frames` is only an upper bound."""
    setup, make = FLOODS[kind]
    res = FloodResult(kind)
    res.peer = source
    conn = RawH2(port, source=source, timeout=5)
    t0 = time.monotonic()
    try:
        conn.send(setup(conn))
        while res.frames < max_frames and not conn.goaways and not conn.closed:
            n = min(batch, max_frames - res.frames)
            frames = make(conn, n)
            probe = b'probe' + res.probes.to_bytes(3, 'big')
            if sync:
                frames += ping(probe)
                res.probes += 1
            if not conn.send(frames):
                break
            res.frames += n
            if sync:
                conn.wait(lambda: probe in conn.ping_acks or conn.goaways, 2.0)
            else:
                conn.poll(0)
        if not conn.goaways:
            conn.wait(lambda: conn.goaways, 2.0)
        if conn.goaways:
            res.goaway_after = conn.goaways[0][3] - t0
        conn.wait_closed(close_wait)
        res.closed = conn.closed
        res.closed_after = time.monotonic() - t0 if conn.closed else None
        res.conn_reset = conn.conn_reset
        res.goaway_codes = conn.goaway_codes
    finally:
        res.elapsed = time.monotonic() - t0
        conn.close()
    return res


# --------------------------------------------------------------------------
# Bytes as fast as possible (read-ahead)

class Junk(threading.Thread):
    """Connects again and again for `duration` s, each time sending the
    preface, SETTINGS and `size` bytes of PING frames as fast as the
    connection takes them, never reading; counts bytes the kernel took,
    connections, and those that took all `size` bytes."""

    def __init__(self, port, size=4_500_000, duration=6.0, source=None, pause=0.0):
        super().__init__(daemon=True)
        self.port, self.size, self.duration, self.source = port, size, duration, source
        self.pause = pause      # between a connection's end and the next
        self.bytes = 0
        self.connections = 0
        self.completed = 0      # connections that took all `size` bytes
        self.errors = 0
        self.stop = threading.Event()
        pings = ping(b'junkjunk') * (65536 // 17)
        body = pings * (size // len(pings) + 1)
        self.payload = client_start() + body[:size - size % 17]

    def run(self):
        deadline = time.monotonic() + self.duration
        while time.monotonic() < deadline and not self.stop.is_set():
            try:
                s = socket.socket()
                if self.source:
                    s.bind((self.source, 0))
                s.settimeout(max(0.5, deadline - time.monotonic()))
                s.connect(('127.0.0.1', self.port))
            except OSError:
                self.errors += 1
                time.sleep(0.05)
                continue
            self.connections += 1
            view = memoryview(self.payload)
            try:
                while view and time.monotonic() < deadline:
                    n = s.send(view[:262144])
                    self.bytes += n
                    view = view[n:]
                if not view:
                    self.completed += 1
            except OSError:
                self.errors += 1
            finally:
                s.close()
            if self.pause:
                time.sleep(self.pause)


def cpu_seconds(pids):
    """utime + stime of the processes (all their threads), in seconds."""
    tck = os.sysconf('SC_CLK_TCK')
    total = 0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/stat') as f:
                rest = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        total += int(rest[11]) + int(rest[12])
    return total / tck


def anon_pss_kb(pids):
    """Pss_Anon summed over the processes (smaps_rollup), in KiB."""
    total = 0
    for pid in pids:
        try:
            with open(f'/proc/{pid}/smaps_rollup') as f:
                for line in f:
                    if line.startswith('Pss_Anon:'):
                        total += int(line.split()[1])
        except OSError:
            continue
    return total
