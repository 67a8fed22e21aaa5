"""Helpers for the reliability tests (t/test_rel_*.py): a paced publisher,
subscribers that resume after their stream ends, figures from /proc, and a
figures file (build/reliability/<test>.json, kept across runs: t/run is
wiped by every session) that RELIABILITY.md quotes.

Every test has a short version (the normal suite) and a full-length one
behind H2CHAT_SOAK=1; `pick(short, soak)` chooses the value."""

import itertools
import json
import os
import random
import re
import signal
import subprocess
import threading
import time
import zlib

import h2chat_env as env

SOAK = os.environ.get('H2CHAT_SOAK', '') not in ('', '0')
# A sanitized build (H2CHAT_PRELOAD set): memory figures are reported but
# not asserted (ASan's quarantine and shadow memory make RSS meaningless).
SANITIZED = bool(env.PRELOAD)
FIGURES_DIR = env.REPO / 'build' / 'reliability'


def pick(short, soak):
    return soak if SOAK else short


def record(name, **figures):
    """Writes (merges) figures of one test into build/reliability/<name>.json
    (<name>_asan.json for a sanitized build) and prints them (shown by
    pytest -s or on failure)."""
    FIGURES_DIR.mkdir(parents=True, exist_ok=True)
    path = FIGURES_DIR / f'{name}{"_asan" if SANITIZED else ""}.json'
    data = {}
    if path.exists():
        try:
            data = json.loads(path.read_text())
        except ValueError:
            data = {}
    data.update(figures)
    data['recorded_at'] = time.strftime('%Y-%m-%d %H:%M:%S')
    data['soak'] = SOAK
    data['sanitized'] = SANITIZED
    path.write_text(json.dumps(data, indent=2, sort_keys=True, default=str))
    print(f'[{name}]', json.dumps(figures, sort_keys=True, default=str))
    return data


def percentile(values, p):
    if not values:
        return None
    v = sorted(values)
    k = min(len(v) - 1, max(0, int(round(p / 100.0 * (len(v) - 1)))))
    return v[k]


def ms(seconds):
    return None if seconds is None else round(seconds * 1000.0, 1)


# --------------------------------------------------------------------------
# /proc figures

def _status_kb(pid, key):
    try:
        with open(f'/proc/{pid}/status') as f:
            for line in f:
                if line.startswith(key + ':'):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def proc_figures(pids):
    """pid -> {'rss_kb', 'threads', 'fds'} for each live pid."""
    out = {}
    for pid in pids:
        try:
            threads = len(os.listdir(f'/proc/{pid}/task'))
            fds = len(os.listdir(f'/proc/{pid}/fd'))
        except OSError:
            continue
        out[pid] = {'rss_kb': _status_kb(pid, 'VmRSS'), 'threads': threads, 'fds': fds}
    return out


def children_rss_kb(server):
    """Sum of VmRSS of the Apache children (kB)."""
    return sum(_status_kb(pid, 'VmRSS') for pid in server.children())


def children_mem_kb(server):
    """Sums over the Apache children (kB): VmRSS and its parts RssAnon
    (private heap / stacks: where a leak shows), RssShmem (shared memory the
    child has touched: the message ring, SSL session cache, scoreboard) and
    RssFile."""
    out = {'rss': 0, 'anon': 0, 'shmem': 0, 'file': 0}
    for pid in server.children():
        for key, name in (('rss', 'VmRSS'), ('anon', 'RssAnon'), ('shmem', 'RssShmem'),
                          ('file', 'RssFile')):
            out[key] += _status_kb(pid, name)
    return out


def per_child(server):
    """H2ChatSubscribersPerChild as {pid: held}."""
    raw = server.h2chat_status().get('H2ChatSubscribersPerChild', '')
    out = {}
    for part in str(raw).split(','):
        if '=' in part:
            pid, n = part.split('=', 1)
            out[int(pid)] = int(n)
    return out


# --------------------------------------------------------------------------
# Publisher

def message_text(tag, seq, size=0):
    text = f'{tag} #{seq}'
    if size > len(text):
        text += ' ' + ('abcdefghijklmnopqrstuvwxyz0123456789' * (size // 36 + 1))[:size - len(text) - 1]
    return text


class Publisher:
    """Posts {'user': user, 'text': message_text(tag, seq, size)} at `rate`
    per second (seq 0, 1, ...), each on a new HTTP/1.1 connection, from
    `threads` threads (so one slow POST does not hold the others back).
    `count` stops after that many. Records every POST: seq, status, id,
    t0 (monotonic, before sending), t1 (answer), error."""

    def __init__(self, server, rate, tag='pub', size=0, threads=1, count=None,
                 user='publisher', timeout=10):
        self.server, self.rate, self.tag, self.size = server, rate, tag, size
        self.nthreads, self.count, self.user, self.timeout = threads, count, user, timeout
        self.records = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._next = 0
        self._threads = []
        self.t_start = None

    def start(self):
        self.t_start = time.monotonic()
        for _ in range(self.nthreads):
            t = threading.Thread(target=self._run, daemon=True)
            t.start()
            self._threads.append(t)
        return self

    def _take(self):
        with self._lock:
            if self.count is not None and self._next >= self.count:
                return None
            seq = self._next
            self._next += 1
            return seq

    def _run(self):
        while not self._stop.is_set():
            seq = self._take()
            if seq is None:
                return
            due = self.t_start + seq / float(self.rate)
            delay = due - time.monotonic()
            if delay > 0 and self._stop.wait(delay):
                return
            text = message_text(self.tag, seq, self.size)
            rec = {'seq': seq, 'text': text, 'status': None, 'id': None,
                   't0': time.monotonic(), 't1': None, 'error': None}
            try:
                r = env.post(self.server.port, {'user': self.user, 'text': text},
                             timeout=self.timeout)
                rec['status'] = r.status
                if r.status == 201:
                    rec['id'] = r.json()['id']
                else:
                    rec['error'] = r.body[:200]
            except Exception as e:  # noqa: BLE001 - a failed POST is a figure
                rec['error'] = repr(e)
            rec['t1'] = time.monotonic()
            with self._lock:
                self.records.append(rec)

    def stop(self):
        self._stop.set()
        for t in self._threads:
            t.join(timeout=self.timeout + 5)

    def wait_done(self, timeout):
        deadline = time.monotonic() + timeout
        for t in self._threads:
            t.join(timeout=max(0.1, deadline - time.monotonic()))
        return not any(t.is_alive() for t in self._threads)

    @property
    def ok(self):
        with self._lock:
            return sorted((r for r in self.records if r['status'] == 201),
                          key=lambda r: r['id'])

    @property
    def failed(self):
        with self._lock:
            return [r for r in self.records if r['status'] != 201]

    def sent_at(self):
        """id -> monotonic time the POST was sent."""
        return {r['id']: r['t0'] for r in self.ok}


# --------------------------------------------------------------------------
# Subscribers that resume

class ResumingClient:
    """A chat client as the page is one: one held stream (a harness
    Subscriber, i.e. one curl process and connection); when the stream ends
    it reconnects with the last id it has (`?since=` or `Last-Event-ID`).
    Reconnecting is done by `poll()` (see Supervisor)."""

    WAIT_INTERVAL = 0.05

    def __init__(self, server, transport, mode, how, since, max_time=240, lean=False):
        assert how in ('since', 'last-event-id')
        self.server, self.transport, self.mode, self.how = server, transport, mode, how
        self.first_since = since
        self.max_time = max_time
        self.lean = lean
        self.streams = []
        self.refused = 0        # answers other than 200 (e.g. 503 at the cap)
        self.stopped = False
        self._retry_at = 0.0
        self.connect(since)

    def connect(self, last):
        kw = {'since': last} if self.how == 'since' else {'last_event_id': last}
        self.streams.append(self.open_stream(**kw))

    def open_stream(self, **resume):
        return self.server.subscriber(self.transport, self.mode, max_time=self.max_time,
                                      lean=self.lean, **resume)

    @property
    def current(self):
        return self.streams[-1]

    @property
    def reconnects(self):
        return len(self.streams) - 1

    @property
    def messages(self):
        return [m for s in self.streams for m in s.messages]

    def ids(self):
        return [m['id'] for m in self.messages]

    def events_of(self, kind):
        return [e for s in self.streams for e in s.events if e.get('type') == kind]

    def bad_lines(self):
        return [b for s in self.streams for b in s.bad_lines]

    def last_id(self):
        for s in reversed(self.streams):
            if s.messages:
                return s.messages[-1]['id']
        return self.first_since

    def poll(self):
        """Reconnects if the current stream ended. Returns True if it did."""
        if self.stopped:
            return False
        s = self.current
        if not s.ended:
            return False
        now = time.monotonic()
        if s.status != 200:
            if now < self._retry_at:
                return False
            self.refused += 1
            self._retry_at = now + 0.5
        self.connect(self.last_id())
        return True

    def wait_ids(self, last, timeout):
        """Waits until the last message id seen is >= last."""
        return env.wait_until(lambda: (self.last_id() or 0) >= last, timeout,
                              self.WAIT_INTERVAL)

    def close(self):
        self.stopped = True
        for s in self.streams:
            s.close()

    def summary(self):
        ids = self.ids()
        return (f'{self.transport}/{self.mode}/{self.how} streams={len(self.streams)} '
                f'refused={self.refused} n={len(ids)} first={ids[:3]} last={ids[-3:]} '
                f'gaps={self.events_of("gap")[:2]} resets={self.events_of("reset")[:2]} '
                f'cur={self.current.summary()[:300]}')


class Supervisor:
    """Reconnects every ResumingClient whose stream ended, every 50 ms."""

    def __init__(self, clients, interval=0.05):
        self.clients = clients
        self.interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self):
        self._thread.start()
        return self

    def _run(self):
        while not self._stop.wait(self.interval):
            for c in list(self.clients):
                try:
                    c.poll()
                except Exception:  # noqa: BLE001 - retried on the next round
                    pass

    def stop(self):
        self._stop.set()
        self._thread.join(timeout=5)


# The mix of client kinds used by the tests: (transport, mode, how).
MIX = [('h2c', 'ndjson', 'since'), ('h2tls', 'ndjson', 'since'), ('h1', 'sse', 'last-event-id'),
       ('h2c', 'sse', 'last-event-id'), ('h1', 'ndjson', 'since'),
       ('h2tls', 'sse', 'last-event-id')]


def make_clients(server, n, since, max_time=240, batch=20, timeout=60, lean=False):
    """n ResumingClients of the MIX kinds, started `batch` at a time; waits
    until every one has its 200."""
    clients = []
    deadline = time.monotonic() + timeout
    for i in range(0, n, batch):
        group = [ResumingClient(server, *MIX[k % len(MIX)], since=since, max_time=max_time,
                                lean=lean)
                 for k in range(i, min(n, i + batch))]
        for c in group:
            c.current.wait_headers(max(0.1, deadline - time.monotonic()))
        clients += group
    return clients


def check_exactly_once(clients, expected):
    """[(client summary, problem)] for clients whose ids differ from
    `expected` or that saw a gap, a reset or an unparsable line."""
    bad = []
    for c in clients:
        ids = c.ids()
        problems = []
        if ids != expected:
            dup = len(ids) - len(set(ids))
            missing = sorted(set(expected) - set(ids))
            extra = sorted(set(ids) - set(expected))
            order = ids != sorted(ids)
            problems.append(f'ids differ: {len(ids)} vs {len(expected)} expected, '
                            f'dup={dup} missing={missing[:10]}{"..." if len(missing) > 10 else ""} '
                            f'extra={extra[:10]} out_of_order={order}')
        if c.events_of('gap') or c.events_of('reset'):
            problems.append('gap/reset lines')
        if c.bad_lines():
            problems.append(f'bad lines {c.bad_lines()[:2]}')
        if problems:
            bad.append((c.summary(), '; '.join(problems)))
    return bad


def text_ok(msg, text):
    """Whether a received message carries `text` (lean subscribers keep a
    crc32 of it only)."""
    if '_text_crc' in msg:
        return msg['_text_crc'] == zlib.crc32(text.encode('utf-8'))
    return msg.get('text') == text


def kill_pid(server, pid, sig=signal.SIGKILL):
    """kill -9 of an Apache child; the no_crash fixture ignores the
    'exit signal Killed' line of this pid."""
    server.expected_kills.add(pid)
    os.kill(pid, sig)


def jitter(a, b):
    return random.uniform(a, b)


# --------------------------------------------------------------------------
# Clients that stop reading

class StuckClient:
    """A subscriber that sends its GET and then never reads its socket.

    kind 'h2c': python-h2 over cleartext, SETTINGS_INITIAL_WINDOW_SIZE
    `window` and no WINDOW_UPDATE ever (never reads, so never ACKs either):
    the server may send `window` bytes on the stream, then mod_http2 holds
    the rest, then the handler's writes block.
    kind 'h1': HTTP/1.1 with SO_RCVBUF `rcvbuf` set before connecting: the
    kernel buffers fill, then the handler's writes block.

    `drain()` (after the test) reads what is left and says how the server
    ended the stream: 'reset' (RST_STREAM), 'ended' (END_STREAM / last
    chunk), 'closed' (connection closed without either), 'open'."""

    def __init__(self, port, kind, path='/msgs', window=16, rcvbuf=1024):
        import socket
        self.kind = kind
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.sock.settimeout(10)
        self.sock.connect(('127.0.0.1', port))
        if kind == 'h2c':
            import h2.config
            import h2.connection
            import h2.settings
            self.conn = h2.connection.H2Connection(
                config=h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
            self.conn.local_settings = h2.settings.Settings(
                client=True, initial_values={
                    h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window,
                    h2.settings.SettingCodes.ENABLE_PUSH: 0})
            self.conn.initiate_connection()
            self.sid = self.conn.get_next_available_stream_id()
            self.conn.send_headers(self.sid, [(':method', 'GET'), (':path', path),
                                              (':scheme', 'http'),
                                              (':authority', f'localhost:{port}')],
                                   end_stream=True)
            self.sock.sendall(self.conn.data_to_send())
        elif kind == 'h1':
            self.sock.sendall(f'GET {path} HTTP/1.1\r\nHost: localhost\r\n\r\n'.encode())
        else:
            raise ValueError(kind)

    def drain(self, timeout=10):
        """Reads (and for h2 ACKs) until the stream is over or `timeout`
        passes -> (how it ended, body bytes received)."""
        import h2.events
        self.sock.settimeout(0.5)
        deadline = time.monotonic() + timeout
        got, how = 0, 'open'
        raw = b''
        while time.monotonic() < deadline and how == 'open':
            try:
                data = self.sock.recv(65536)
            except OSError as e:
                if 'timed out' in str(e):
                    continue
                how = f'closed ({e.__class__.__name__})'
                break
            if not data:
                how = 'closed'
                break
            if self.kind == 'h1':
                raw += data
                got += len(data)
                if raw.endswith(b'\r\n0\r\n\r\n'):
                    how = 'ended'
                continue
            for ev in self.conn.receive_data(data):
                if isinstance(ev, h2.events.DataReceived):
                    got += len(ev.data)
                    self.conn.acknowledge_received_data(ev.flow_controlled_length, ev.stream_id)
                elif isinstance(ev, h2.events.StreamEnded) and ev.stream_id == self.sid:
                    how = 'ended'
                elif isinstance(ev, h2.events.StreamReset) and ev.stream_id == self.sid:
                    how = f'reset (error code {int(ev.error_code)})'
                elif isinstance(ev, h2.events.ConnectionTerminated):
                    how = f'goaway (error code {int(ev.error_code)})'
            try:
                self.sock.sendall(self.conn.data_to_send())
            except OSError:
                pass
        return how, got

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# Many subscribers, cheaply

class BulkSubscriber:
    """A held GET in a curl process that writes the stream to a file (-N:
    flushed after every write) and nothing in Python reads it while it
    runs: for loads of hundreds or thousands of subscribers, where a
    Python reader thread per stream would make the client the bottleneck.
    `ids()` parses the file afterwards; `last_id()` reads its tail."""

    _serial = itertools.count()

    def __init__(self, server, transport, mode, since=None, max_time=900, name='bulk',
                 last_event_id=None):
        self.server, self.transport, self.mode = server, transport, mode
        d = server.root / 'bulk'
        d.mkdir(exist_ok=True)
        n = next(BulkSubscriber._serial)
        self.head_path = d / f'{name}-{n}.head'
        self.body_path = d / f'{name}-{n}.body'
        path = '/msgs' if since is None else f'/msgs?since={since}'
        opts, url = env.curl_args(transport, server.port, server.tls_port, path)
        args = [env.CURL, '-s', '-N', '--max-time', str(max_time), '-D', str(self.head_path),
                '-o', str(self.body_path)] + opts
        if mode == 'sse':
            args += ['-H', 'Accept: text/event-stream']
        if last_event_id is not None:
            args += ['-H', f'Last-Event-ID: {last_event_id}']
        self.proc = subprocess.Popen(args + [url], stdin=subprocess.DEVNULL,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    @property
    def status(self):
        try:
            first = self.head_path.read_bytes().split(b'\r\n', 1)[0].split()
            return int(first[1]) if len(first) > 1 else None
        except (OSError, ValueError):
            return None

    @property
    def ended(self):
        return self.proc.poll() is not None

    def _events(self, data):
        out = []
        if self.mode == 'sse':
            for block in data.split(b'\n\n')[:-1]:
                for line in block.split(b'\n'):
                    if line.startswith(b'data: '):
                        try:
                            out.append(json.loads(line[6:]))
                        except ValueError:
                            out.append({'type': 'bad', 'raw': line[:100]})
            return out
        for line in data.split(b'\n')[:-1]:
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    out.append({'type': 'bad', 'raw': line[:100]})
        return out

    def events(self):
        try:
            return self._events(self.body_path.read_bytes())
        except OSError:
            return []

    def ids(self):
        return [e['id'] for e in self.events() if e.get('type', 'message') == 'message'
                and 'id' in e and 'text' in e]

    def last_id(self, tail=16384):
        """Id of the last complete message in the file (None if none)."""
        try:
            with open(self.body_path, 'rb') as f:
                f.seek(0, os.SEEK_END)
                size = f.tell()
                f.seek(max(0, size - tail))
                data = f.read()
        except OSError:
            return None
        data = data[:data.rfind(b'\n\n' if self.mode == 'sse' else b'\n') + 1]  # complete ones
        found = re.findall(rb'"type":"message","id":(\d+)', data)
        return int(found[-1]) if found else None

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)


class ResumingBulk(ResumingClient):
    """ResumingClient's behaviour (reconnect with the last id when the
    stream ends) on BulkSubscribers: for soak loads. Same interface as far
    as Supervisor and check_exactly_once go."""

    WAIT_INTERVAL = 0.2  # reading the files is dearer than a Python reader

    def __init__(self, server, transport, mode, how, since, max_time=900):
        super().__init__(server, transport, mode, how, since, max_time=max_time)

    def open_stream(self, **resume):
        return BulkSubscriber(self.server, self.transport, self.mode, max_time=self.max_time,
                              **resume)

    @property
    def messages(self):
        return [e for s in self.streams for e in s.events()
                if e.get('type') == 'message' and 'id' in e]

    def events_of(self, kind):
        return [e for s in self.streams for e in s.events() if e.get('type') == kind]

    def bad_lines(self):
        return [e.get('raw') for e in self.events_of('bad')]

    def last_id(self):
        for s in reversed(self.streams):
            lid = s.last_id()
            if lid is not None:
                return lid
        return self.first_since

    def summary(self):
        ids = self.ids()
        return (f'bulk {self.transport}/{self.mode}/{self.how} streams={len(self.streams)} '
                f'refused={self.refused} n={len(ids)} first={ids[:3]} last={ids[-3:]} '
                f'files={[str(x.body_path.name) for x in self.streams][:4]}')


def make_bulk_clients(server, n, since, max_time=900, timeout=120):
    """n ResumingBulk clients of the MIX kinds; waits until each has an
    answer (status)."""
    clients = []
    for k in range(n):
        clients.append(ResumingBulk(server, *MIX[k % len(MIX)], since=since, max_time=max_time))
        if k % 50 == 49:
            time.sleep(0.2)
    env.wait_until(lambda: all(c.current.status for c in clients), timeout, 0.5)
    return clients


def graceful_rounds(server, make_client, rounds=3):
    """Four resuming clients (NDJSON with since=, SSE with Last-Event-ID,
    twice each; make_client(mode, how) makes one) through `rounds` graceful
    restarts with posts before and after each: every client ends with every
    message once, in order, after one reconnect a round at least."""
    clients = [make_client(mode, how)
               for mode, how in [('ndjson', 'since'), ('sse', 'last-event-id')] * 2]
    for c in clients:
        c.current.wait_headers()
    posted = []
    for round_ in range(rounds):
        posted += [server.post_msg('gr', f'g{round_}.{i}')[0] for i in range(5)]
        server.graceful()
        posted += [server.post_msg('gr', f'after{round_}.{i}')[0] for i in range(3)]
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            for c in clients:
                c.poll()
            if all((c.last_id() or 0) >= posted[-1] for c in clients):
                break
            time.sleep(0.05)
    for c in clients:
        ids = [i for i in c.ids() if i >= posted[0]]
        assert ids == posted, (c.transport, c.mode, c.reconnects, ids, posted)
        assert c.reconnects >= rounds
        c.close()


def stuck_reader_round(server, healthy, mark):
    """A reader that stopped (its connection just sent its GET) while ~3 MB
    are posted: no POST waits for it, `healthy` gets every message promptly,
    the stuck one is dropped after `Timeout` (5 s; H2C0024) and the loop
    goes on serving `healthy`."""
    t0 = time.monotonic()
    big = 'x' * 50000
    sent = []
    for i in range(60):  # ~3 MB: more than the socket buffers hold
        t = time.monotonic()
        sent.append(server.post_msg('stuck', f'{i} {big}')[0])
        assert time.monotonic() - t < 2, 'a POST waited for the stuck reader'
    assert healthy.wait_event(lambda e: e.get('id') == sent[-1], 10), healthy.summary()
    assert [m['id'] for m in healthy.messages][-60:] == sent
    assert server.wait_errlog(r'H2C0024: .*direct', mark, timeout=15), \
        server.errlog_since(mark)
    dropped_after = time.monotonic() - t0
    assert 4 <= dropped_after <= 15, dropped_after
    assert server.wait_subscribers(1, timeout=5) == 1
    nid, _ = server.post_msg('stuck', 'after')
    assert healthy.wait_for(len(healthy.messages) + 1)[-1]['id'] == nid
