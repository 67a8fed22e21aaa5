"""Test environment for mod_h2chat: a real Apache httpd (event MPM, several
children) with mod_http2 and mod_ssl, and curl / http.client / h2 clients.

Modelled on httpd's own test/modules/http2 suite: pytest drives real
servers and real HTTP clients; nothing is mocked. Each subscriber is its own
curl process, hence its own TCP connection, as browsers do.
"""

import base64
import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
import zlib
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
RUN_DIR = REPO / 't' / 'run'
APACHE = '/usr/sbin/apache2'
MODULES_DIR = Path('/usr/lib/apache2/modules')
# H2CHAT_MODULE: test another build of the module (e.g. one with ASan).
MODULE_SO = Path(os.environ.get('H2CHAT_MODULE', REPO / '.libs' / 'mod_h2chat.so'))
# H2CHAT_PRELOAD: LD_PRELOAD for apache2 only (libasan for a SANITIZE=1 build).
PRELOAD = os.environ.get('H2CHAT_PRELOAD', '')
HTDOCS = REPO / 'htdocs'
CURL = shutil.which('curl') or '/usr/bin/curl'

# Modules the test server loads besides mod_h2chat. log_config is compiled
# into Debian's apache2, so it is loaded only where it is a shared module.
APACHE_MODULES = ['mpm_event', 'authz_core', 'authz_host', 'authz_user',
                  'authn_core', 'authn_file', 'auth_basic', 'mime', 'dir',
                  'status', 'ssl', 'http2', 'socache_shmcb', 'log_config']

TAG_RE = re.compile(r'H2C\d{4}:')



def node_binary(major, what):
    """The node on PATH if it is at least `major`; else the test fails (a
    missing dependency is not a skip). what: who needs it, for the message."""
    import pytest
    node = shutil.which('node')
    if not node:
        pytest.fail(f'node is not installed: {what} need Node.js >= {major} '
                    '(apt-get install nodejs npm)', pytrace=False)
    ver = subprocess.run([node, '--version'], capture_output=True, text=True, timeout=30).stdout
    m = re.match(r'v(\d+)\.', ver)
    if not m or int(m.group(1)) < major:
        pytest.fail(f'node {ver.strip()!r} is too old: {what} need Node.js >= {major}',
                    pytrace=False)
    return node

def now_ms():
    return int(time.time() * 1000)


def wait_until(pred, timeout, interval=0.05):
    """Polls pred() until it returns a truthy value or timeout seconds
    pass; returns the last value."""
    deadline = time.monotonic() + timeout
    while True:
        value = pred()
        if value or time.monotonic() >= deadline:
            return value
        time.sleep(interval)


# Ports free_port() handed out in this process: a server configured but not
# started yet holds no socket, so the kernel may offer its port again.
_ports_given = set()

# A server's bind failed because the port was taken meanwhile (httpd's
# AH00072, Redis's own message): start() picks new ports and tries again.
BIND_RETRIES = 3


def free_port():
    """A loopback port nothing is bound to now and that this process has not
    handed out before. Nothing holds it until the server binds it, so
    another process (say a second worktree's run) may take it first: the
    servers' start() retry with new ports when their bind fails."""
    while True:
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(('127.0.0.1', 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


def ensure_module():
    """Returns the path of the built module, building it once with
    Makefile.apxs if it is missing. Raises RuntimeError if that fails."""
    if (not MODULE_SO.exists() and 'H2CHAT_MODULE' not in os.environ
            and (REPO / 'Makefile.apxs').exists()):
        res = subprocess.run(['make', '-f', 'Makefile.apxs'], cwd=REPO,
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            raise RuntimeError('make -f Makefile.apxs failed:\n'
                               + res.stdout[-3000:] + res.stderr[-3000:])
    if not MODULE_SO.exists():
        raise RuntimeError(f'{MODULE_SO} is missing (build with make -f Makefile.apxs)')
    return MODULE_SO


def fast_vhost(path='/msgs', extra=''):
    """Config for a TLS fast-path virtual host on the server's third port
    ('@FASTPORT@'): the test certificate, h2 by ALPN, `H2ChatDirect PATH`
    (the module's loop serves its h2 connections, httpd's checks on its
    threads), `extra` inside it; with AsyncRequestWorkerFactor for the
    suspended connections."""
    return f"""
AsyncRequestWorkerFactor 100
Listen 127.0.0.1:@FASTPORT@
<VirtualHost 127.0.0.1:@FASTPORT@>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile "@CERT@"
    SSLCertificateKeyFile "@KEY@"
    Protocols h2 http/1.1
    H2ChatDirect {path}
{extra}</VirtualHost>
"""


def auth_location(path):
    """A chat <Location> behind Basic auth (users from write_htpasswd): any
    valid user, except that a query string with "forbidden" is refused 403
    by authz; no snapshot."""
    return f"""
<Location {path}>
    H2Chat On
    H2ChatSnapshot 0
    AuthType Basic
    AuthName "h2chat test"
    AuthBasicProvider file
    AuthUserFile "@ROOT@/htpasswd"
    AuthzSendForbiddenOnFailure On
    <RequireAll>
        Require valid-user
        Require expr "%{{QUERY_STRING}} !~ /forbidden/"
    </RequireAll>
</Location>
"""


def make_cert(dest):
    """Self-signed certificate for localhost / 127.0.0.1."""
    dest = Path(dest)
    cert, key = dest / 'cert.pem', dest / 'key.pem'
    if not cert.exists():
        subprocess.run(['openssl', 'req', '-x509', '-newkey', 'rsa:2048', '-nodes',
                        '-keyout', str(key), '-out', str(cert), '-days', '2',
                        '-subj', '/CN=localhost',
                        '-addext', 'subjectAltName=DNS:localhost,IP:127.0.0.1',
                        '-addext', 'basicConstraints=critical,CA:FALSE'],
                       check=True, capture_output=True, timeout=60)
    return cert, key


# --------------------------------------------------------------------------
# Simple requests

class Response:
    def __init__(self, status, headers, body, version=None):
        self.status = status
        self.headers = headers  # dict, lower-case names
        self.body = body        # bytes
        self.version = version

    def __iter__(self):  # (status, headers, body) unpacking
        return iter((self.status, self.headers, self.body))

    def json(self):
        return json.loads(self.body.decode('utf-8'))

    def __repr__(self):
        return f'<Response {self.status} {self.headers!r} {self.body[:300]!r}>'


def _encode_body(body):
    if body is None:
        return b''
    if isinstance(body, (dict, list)):
        return json.dumps(body, ensure_ascii=False).encode('utf-8')
    if isinstance(body, str):
        return body.encode('utf-8')
    return body


def request(port, method, path='/msgs', body=None, headers=None, timeout=10, tls=False):
    """One HTTP/1.1 request on its own new connection (http.client)."""
    if tls:
        ctx = ssl.create_default_context()
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        conn = http.client.HTTPSConnection('127.0.0.1', port, timeout=timeout, context=ctx)
    else:
        conn = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        conn.request(method, path, body=_encode_body(body) if body is not None else None,
                     headers=headers or {})
        resp = conn.getresponse()
        data = resp.read()
        hdrs = {k.lower(): v for k, v in resp.getheaders()}
        return Response(resp.status, hdrs, data, '1.1')
    finally:
        conn.close()


def post(port, body, content_type='application/json', headers=None, path='/msgs',
         timeout=10, tls=False):
    """POST over HTTP/1.1 on a new connection -> Response (status, headers, body)."""
    hdrs = dict(headers or {})
    if content_type is not None:
        hdrs['Content-Type'] = content_type
    return request(port, 'POST', path, body=_encode_body(body), headers=hdrs,
                   timeout=timeout, tls=tls)


def parse_head(raw):
    """Parses a curl -i header block: returns (status, version, headers)."""
    lines = raw.decode('iso-8859-1').split('\r\n')
    m = re.match(r'HTTP/(\S+)\s+(\d{3})', lines[0])
    if not m:
        raise ValueError(f'not a status line: {lines[0]!r}')
    headers = {}
    for line in lines[1:]:
        if ':' in line:
            k, v = line.split(':', 1)
            headers[k.strip().lower()] = v.strip()
    return int(m.group(2)), m.group(1), headers


def _split_curl_output(out):
    """Splits curl -i output into the last header block and the body (skips
    interim 1xx responses)."""
    while True:
        idx = out.find(b'\r\n\r\n')
        if idx < 0:
            raise ValueError(f'no header block in curl output: {out[:300]!r}')
        head, out = out[:idx], out[idx + 4:]
        status, version, headers = parse_head(head)
        if status >= 200:
            return status, version, headers, out


def curl_args(transport, port, tls_port, path):
    """curl options and URL for a transport: h2c (prior knowledge), h2tls
    (ALPN h2), h1 (HTTP/1.1 cleartext), h1tls."""
    if transport == 'h2c':
        return ['--http2-prior-knowledge'], f'http://127.0.0.1:{port}{path}'
    if transport == 'h2tls':
        return (['--http2', '-k', '--resolve', f'localhost:{tls_port}:127.0.0.1'],
                f'https://localhost:{tls_port}{path}')
    if transport == 'h1':
        return ['--http1.1'], f'http://127.0.0.1:{port}{path}'
    if transport == 'h1tls':
        return (['--http1.1', '-k', '--resolve', f'localhost:{tls_port}:127.0.0.1'],
                f'https://localhost:{tls_port}{path}')
    raise ValueError(transport)


def curl_request(port, tls_port, transport, method='GET', path='/msgs', body=None,
                 headers=None, user=None, timeout=10):
    """One request with curl on its own connection -> Response."""
    opts, url = curl_args(transport, port, tls_port, path)
    args = [CURL, '-s', '-i', '-X', method, '--max-time', str(timeout)] + opts
    for k, v in (headers or {}).items():
        args += ['-H', f'{k}: {v}']
    if user:
        args += ['-u', user]
    data = None
    if body is not None:
        data = _encode_body(body)
        args += ['--data-binary', '@-']
    args.append(url)
    res = subprocess.run(args, input=data, capture_output=True, timeout=timeout + 5)
    if res.returncode != 0 and not res.stdout:
        raise RuntimeError(f'curl failed rc={res.returncode}: {res.stderr!r}')
    status, version, hdrs, rest = _split_curl_output(res.stdout)
    return Response(status, hdrs, rest, version)


# --------------------------------------------------------------------------
# Held streams

class Subscriber:
    """A held GET /msgs in its own curl process (its own connection).

    transport: h2c | h2tls | h1 | h1tls; mode: ndjson | sse.
    source: the loopback address to connect from (curl --interface), e.g.
    127.0.0.2, for per-address limits; port: another port than the
    server's main (h2c, h1) or TLS one (e.g. a second listener).
    A reader thread parses the stream: `events` holds every parsed item
    (dicts with a 'type': message, heartbeat, gap, reset, ...), `messages`
    only the chat messages, in arrival order."""

    def __init__(self, server, transport='h2c', mode='ndjson', since=None,
                 last_event_id=None, path='/msgs', user=None, extra_headers=None,
                 max_time=240, lean=False, source=None, port=None):
        self.server = server
        self.source = source
        self.port = port
        # lean: for long / large loads, keep only the first 4 KiB of the body
        # and, per message, no '_raw' and a crc32 of the text ('_text_crc')
        # instead of the text
        self.lean = lean
        self.transport = transport
        self.mode = mode
        self.since = since
        self.last_event_id = last_event_id
        self.path = path
        self.user = user
        self.extra_headers = extra_headers or {}
        self.max_time = max_time
        self.status = None
        self.version = None
        self.headers = {}
        self._body = []          # raw body bytes (after the header block), in pieces
        self._body_len = 0
        self.events = []
        self.messages = []
        self.bad_lines = []      # lines that did not parse
        self.ended = False       # the stream ended (EOF from curl)
        self.trace = b''         # tail of curl's -v output
        self.proc = None
        self._cond = threading.Condition()
        self._thread = None
        self._sse = {}

    # -- lifecycle
    def start(self):
        path = self.path
        if self.since is not None:
            path += ('&' if '?' in path else '?') + f'since={self.since}'
        opts, url = curl_args(self.transport, self.port or self.server.port,
                              self.port or self.server.tls_port, path)
        # Headers are read from curl's -v trace on stderr: curl writes -i
        # headers to a buffered stdout that -N flushes only with body data.
        args = [CURL, '-s', '-v', '-N', '--max-time', str(self.max_time)] + opts
        if self.source:
            args += ['--interface', self.source]
        if self.mode == 'sse':
            args += ['-H', 'Accept: text/event-stream']
        if self.last_event_id is not None:
            args += ['-H', f'Last-Event-ID: {self.last_event_id}']
        for k, v in self.extra_headers.items():
            args += ['-H', f'{k}: {v}']
        if self.user:
            args += ['-u', self.user]
        args.append(url)
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE)
        self._err_thread = threading.Thread(target=self._read_trace, daemon=True)
        self._err_thread.start()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()
        self.server._subscribers.append(self)
        return self

    @property
    def body(self):
        """The raw body bytes received so far (lean: the first 4 KiB)."""
        with self._cond:
            if len(self._body) > 1:
                self._body = [b''.join(self._body)]
            return self._body[0] if self._body else b''

    @body.setter
    def body(self, value):
        with self._cond:
            self._body = [value] if value else []
            self._body_len = len(value)

    @property
    def exit_code(self):
        return self.proc.poll() if self.proc else None

    def close(self, sig=signal.SIGTERM):
        """Ends the curl process (its connection goes away with it)."""
        if self.proc and self.proc.poll() is None:
            try:
                self.proc.send_signal(sig)
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
            except ProcessLookupError:
                pass
        if self._thread:
            self._thread.join(timeout=5)

    def kill(self):
        self.close(signal.SIGKILL)

    @property
    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    # -- reading
    def _read_trace(self):
        head = b''
        for line in self.proc.stderr:
            self.trace = (self.trace + line)[-4000:]
            if self.status is not None or not line.startswith(b'< '):
                continue
            line = line[2:]
            head += line
            if line.strip():
                continue
            try:
                status, version, headers = parse_head(head)
            except ValueError:
                status, version, headers = 0, None, {}
            head = b''
            if status and status < 200:
                continue
            with self._cond:
                self.status, self.version, self.headers = status, version, headers
                self._cond.notify_all()

    def _read(self):
        out = self.proc.stdout
        while True:
            line = out.readline()
            if not line:
                break
            with self._cond:
                if self.status is None:  # body before the trace showed the head
                    self._cond.wait_for(lambda: self.status is not None, 2)
                if not self.lean or self._body_len < 4096:
                    self._body.append(line)  # joined on demand: no quadratic +=
                    self._body_len += len(line)
                if self.status == 200:
                    self._parse_line(line)
                self._cond.notify_all()
        self._err_thread.join(timeout=5)
        with self._cond:
            self.ended = True
            self._cond.notify_all()

    def _add_event(self, ev):
        ev['_t'] = time.monotonic()  # arrival (parsed), for latency figures
        self.events.append(ev)
        if ev.get('type') == 'message':
            self.messages.append(ev)

    def _parse_line(self, line):
        if self.headers.get('content-type', '').startswith('text/event-stream'):
            self._parse_sse(line)
            return
        text = line.rstrip(b'\n')
        if not text:
            return
        try:
            obj = json.loads(text.decode('utf-8'))
        except (ValueError, UnicodeDecodeError):
            self.bad_lines.append(line)
            return
        if not isinstance(obj, dict):
            self.bad_lines.append(line)
            return
        if self.lean:
            self._lean(obj)
        else:
            obj['_raw'] = text
        self._add_event(obj)

    @staticmethod
    def _lean(obj):
        text = obj.pop('text', None)
        if isinstance(text, str):
            obj['_text_crc'] = zlib.crc32(text.encode('utf-8'))

    def _parse_sse(self, line):
        text = line.decode('utf-8', errors='replace').rstrip('\n').rstrip('\r')
        if text == '':
            ev, self._sse = self._sse, {}
            if 'data' not in ev:
                # `retry: <ms>` alone: the reconnect hint of a stream whose
                # child stops (no event for an EventSource; recorded here in
                # the NDJSON line's shape)
                if ev.get('retry', '').isdigit():
                    self._add_event({'type': 'reconnect', 'retry': int(ev['retry']),
                                     '_sse_retry': True})
                return
            data = ev['data']
            try:
                obj = json.loads(data)
            except ValueError:
                self.bad_lines.append(data.encode())
                return
            if not isinstance(obj, dict):
                self.bad_lines.append(data.encode())
                return
            name = ev.get('event', 'message')
            obj.setdefault('type', name)
            if name != 'message':
                obj['type'] = name
            obj['_sse_id'] = ev.get('id')
            obj['_sse_event'] = ev.get('event')
            if self.lean:
                self._lean(obj)
            else:
                obj['_raw'] = data.encode('utf-8')
            self._add_event(obj)
            return
        if text.startswith(':'):
            self.events.append({'type': 'heartbeat', '_comment': text[1:]})
            return
        field, _, value = text.partition(':')
        if value.startswith(' '):
            value = value[1:]
        if field == 'data':
            self._sse['data'] = self._sse['data'] + '\n' + value if 'data' in self._sse else value
        elif field in ('id', 'event', 'retry'):
            self._sse[field] = value

    # -- waiting
    def wait_headers(self, timeout=10):
        with self._cond:
            self._cond.wait_for(lambda: self.status is not None or self.ended, timeout)
            return self.status

    def wait_for(self, n, timeout=10):
        """Waits until at least n messages arrived; returns the messages."""
        with self._cond:
            self._cond.wait_for(lambda: len(self.messages) >= n or self.ended, timeout)
            return list(self.messages)

    def wait_event(self, pred, timeout=10):
        with self._cond:
            self._cond.wait_for(lambda: any(pred(e) for e in self.events) or self.ended,
                                timeout)
            return [e for e in self.events if pred(e)]

    def wait_end(self, timeout=10):
        with self._cond:
            self._cond.wait_for(lambda: self.ended, timeout)
            return self.ended

    @property
    def last_id(self):
        return self.messages[-1]['id'] if self.messages else None

    def summary(self):
        return (f'{self.transport}/{self.mode} status={self.status} version={self.version} '
                f'ended={self.ended} msgs={[m.get("id") for m in self.messages]} '
                f'bad={self.bad_lines[:3]} body_head={self.body[:200]!r}')

    def __repr__(self):
        return f'<Subscriber {self.summary()}>'


# --------------------------------------------------------------------------
# Raw HTTP/2 client (python-h2), for stream-level behaviour curl cannot show:
# several held streams on one connection, resetting one of them.

def tls_h2(sock):
    """Wraps a connected socket in TLS with ALPN h2 (the test certificate is
    self-signed: not verified)."""
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    ctx.set_alpn_protocols(['h2'])
    sock = ctx.wrap_socket(sock, server_hostname='localhost')
    assert sock.selected_alpn_protocol() == 'h2', sock.selected_alpn_protocol()
    return sock


class H2Connection:
    def __init__(self, port, host='127.0.0.1', tls=False):
        import h2.config
        import h2.connection
        self.port = port
        self.tls = tls
        sock = socket.create_connection((host, port), timeout=10)
        if tls:
            sock = tls_h2(sock)
        self.sock = sock
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
        self.lock = threading.Lock()
        self.cond = threading.Condition(self.lock)
        self.streams = {}  # sid -> dict(status, headers, data, ended, reset)
        self.closed = False
        self.why = None  # what ended the connection, for a failing test's message
        with self.lock:
            self.conn.initiate_connection()
            self.sock.sendall(self.conn.data_to_send())
        self.sock.settimeout(None)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def request(self, method, path='/msgs', headers=None, body=b''):
        """Starts a request; sends as much of the body as the flow-control
        window allows at once (the rest is never sent: enough for answers
        given before the body is read). Returns the stream id."""
        with self.lock:
            sid = self.conn.get_next_available_stream_id()
            hdrs = [(':method', method), (':path', path),
                    (':scheme', 'https' if self.tls else 'http'),
                    (':authority', f'localhost:{self.port}')] + \
                [(k.lower(), v) for k, v in (headers or {}).items()]
            if body:
                hdrs.append(('content-length', str(len(body))))
            self.streams[sid] = {'status': None, 'headers': {}, 'data': b'', 'ended': False,
                                 'reset': False}
            self.conn.send_headers(sid, hdrs, end_stream=not body)
            if body:
                room = min(self.conn.local_flow_control_window(sid), len(body))
                sent = 0
                while sent < room:
                    n = min(room - sent, self.conn.max_outbound_frame_size)
                    last = sent + n == len(body)
                    self.conn.send_data(sid, body[sent:sent + n], end_stream=last)
                    sent += n
            self.sock.sendall(self.conn.data_to_send())
        return sid

    def get(self, path='/msgs', headers=None):
        return self.request('GET', path, headers)

    def response(self, sid, timeout=10):
        """Waits until stream sid is complete (ended or reset) -> Response."""
        with self.cond:
            st = self.streams[sid]
            self.cond.wait_for(lambda: (st['status'] is not None and
                                        (st['ended'] or st['reset'])) or self.closed, timeout)
            return Response(st['status'], dict(st['headers']), st['data'], '2')

    def reset(self, sid, code=8):  # 8 = CANCEL
        with self.lock:
            self.conn.reset_stream(sid, error_code=code)
            self.sock.sendall(self.conn.data_to_send())

    def wait_status(self, sid, timeout=10):
        with self.cond:
            self.cond.wait_for(lambda: self.streams[sid]['status'] is not None or self.closed,
                               timeout)
            return self.streams[sid]['status']

    def _read(self):
        import h2.events
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    self.why = self.why or 'EOF'
                    break
                with self.cond:
                    for ev in self.conn.receive_data(data):
                        sid = getattr(ev, 'stream_id', None)
                        st = self.streams.get(sid)
                        if isinstance(ev, h2.events.ResponseReceived) and st is not None:
                            st['headers'] = dict(ev.headers)
                            st['status'] = int(st['headers'][':status'])
                        elif isinstance(ev, h2.events.DataReceived):
                            if st is not None:
                                st['data'] += ev.data
                            self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                                ev.stream_id)
                        elif isinstance(ev, h2.events.StreamEnded) and st is not None:
                            st['ended'] = True
                        elif isinstance(ev, h2.events.StreamReset) and st is not None:
                            st['reset'] = True
                        elif isinstance(ev, h2.events.ConnectionTerminated):
                            self.why = f'GOAWAY {ev.error_code!r} {ev.additional_data!r}'
                            self.closed = True
                    out = self.conn.data_to_send()
                    if out:
                        self.sock.sendall(out)
                    self.cond.notify_all()
        except Exception as e:
            self.why = self.why or f'{type(e).__name__}: {e}'
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def abort(self):
        """Drops the connection without GOAWAY (RST on close)."""
        import struct
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack('ii', 1, 0))
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)

    def close(self):
        try:
            with self.lock:
                self.conn.close_connection()
                self.sock.sendall(self.conn.data_to_send())
        except Exception:
            pass
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()
        self.thread.join(timeout=5)


# --------------------------------------------------------------------------
# The server

def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie is as good as gone
    try:
        with open(f'/proc/{pid}/stat') as f:
            return f.read().rsplit(')', 1)[1].split()[0] != 'Z'
    except OSError:
        return False


def _children_of(ppid):
    kids = []
    for d in os.listdir('/proc'):
        if not d.isdigit():
            continue
        try:
            with open(f'/proc/{d}/stat') as f:
                rest = f.read().rsplit(')', 1)[1].split()
        except OSError:
            continue
        if int(rest[1]) == ppid and rest[0] != 'Z':
            kids.append(int(d))
    return sorted(kids)


def _established_inodes(ports):
    """Socket inodes of ESTABLISHED IPv4 TCP connections whose local port is in ports."""
    inodes = set()
    for table in ('/proc/net/tcp', '/proc/net/tcp6'):
        try:
            with open(table) as f:
                next(f)
                for line in f:
                    cols = line.split()
                    local, state, inode = cols[1], cols[3], cols[9]
                    if state == '01' and int(local.rsplit(':', 1)[1], 16) in ports:
                        inodes.add(inode)
        except OSError:
            pass
    return inodes


class RawH2:
    """One h2c connection holding GET `path`, read only when asked (pump):
    many of them cost one thread, the caller's."""

    def __init__(self, port, path='/msgs', headers=None):
        self.sock = socket.create_connection(('127.0.0.1', port), timeout=10)
        import h2.config
        import h2.connection
        self.conn = h2.connection.H2Connection(
            config=h2.config.H2Configuration(client_side=True, header_encoding='utf-8'))
        self.conn.initiate_connection()
        self.sid = self.conn.get_next_available_stream_id()
        self.conn.send_headers(self.sid, [(':method', 'GET'), (':scheme', 'http'),
                                          (':authority', 'localhost'), (':path', path)] +
                               [(k.lower(), v) for k, v in (headers or {}).items()],
                               end_stream=True)
        self.sock.sendall(self.conn.data_to_send())
        self.data = b''
        self.status = None

    def pump(self, until, timeout=10):
        import h2.events
        deadline = time.monotonic() + timeout
        while not until() and time.monotonic() < deadline:
            self.sock.settimeout(max(0.05, deadline - time.monotonic()))
            try:
                chunk = self.sock.recv(65536)
            except socket.timeout:
                break
            if not chunk:
                break
            for ev in self.conn.receive_data(chunk):
                if isinstance(ev, h2.events.ResponseReceived):
                    self.status = dict(ev.headers).get(':status')
                elif isinstance(ev, h2.events.DataReceived):
                    self.data += ev.data
                    self.conn.acknowledge_received_data(ev.flow_controlled_length,
                                                        ev.stream_id)
            out = self.conn.data_to_send()
            if out:
                self.sock.sendall(out)

    def messages(self):
        return [m for m in (json.loads(x) for x in self.data.splitlines() if x.strip())
                if m.get('type') == 'message']

    def close(self):
        self.sock.close()


class H2ChatServer:
    """One Apache httpd with mod_h2chat in its own server root under t/run/."""

    def __init__(self, name, extra_conf='', mpm=None, cert=None):
        self.name = name
        self.root = RUN_DIR / name
        if self.root.exists():
            shutil.rmtree(self.root)
        (self.root / 'run').mkdir(parents=True)
        os.chmod(self.root, 0o755)
        os.chmod(self.root / 'run', 0o755)
        (self.root / 'cores').mkdir()
        os.chmod(self.root / 'cores', 0o1777)  # children run as www-data
        self.conf_path = self.root / 'httpd.conf'
        self.pid_path = self.root / 'httpd.pid'
        self.error_log = self.root / 'error.log'
        self.access_log = self.root / 'access.log'
        self.port = free_port()
        self.tls_port = free_port()
        self.fast_port = free_port()  # '@FASTPORT@' in extra_conf: a third listener
        self.cert, self.key = cert if cert else make_cert(self.root)
        self.extra_conf = extra_conf
        self.mpm = {'StartServers': 3, 'ServerLimit': 4, 'ThreadsPerChild': 32,
                    'ThreadLimit': 32, 'MaxRequestWorkers': 128, 'MinSpareThreads': 32,
                    'MaxSpareThreads': 128, 'MaxConnectionsPerChild': 0}
        self.mpm.update(mpm or {})
        self._subscribers = []
        self.started = False
        # children a test killed on purpose: conftest's no_crash ignores
        # their 'exit signal Killed' lines
        self.expected_kills = set()

    # -- config
    def load_lines(self):
        builtin = subprocess.run([APACHE, '-l'], capture_output=True, text=True).stdout
        lines = []
        for mod in APACHE_MODULES:
            so = MODULES_DIR / f'mod_{mod}.so'
            if f'mod_{mod}.c' in builtin or not so.exists():
                continue
            lines.append(f'LoadModule {mod}_module {so}')
        return '\n'.join(lines)

    def write_conf(self):
        r = self.root
        mpm = '\n'.join(f'    {k} {v}' for k, v in self.mpm.items())
        extra = (self.extra_conf or '').replace('@ROOT@', str(r)).replace(
            '@FASTPORT@', str(self.fast_port)).replace('@CERT@', str(self.cert)).replace(
            '@KEY@', str(self.key))
        conf = f"""# generated by t/h2chat_env.py
ServerRoot "{r}"
ServerName localhost
DefaultRuntimeDir "{r}/run"
PidFile "{self.pid_path}"
Mutex file:{r}/run default
# a child that crashes leaves a core here (see _ctl: RLIMIT_CORE)
CoreDumpDirectory "{r}/cores"
ErrorLog "{self.error_log}"
LogLevel warn
{self.load_lines()}
LoadModule h2chat_module {MODULE_SO}
LogLevel warn h2chat:debug

User www-data
Group www-data

LogFormat "%h %u %t \\"%r\\" %>s %b %D pid=%P %H"
TransferLog "{self.access_log}"
TypesConfig /etc/mime.types

Listen 127.0.0.1:{self.port}
Listen 127.0.0.1:{self.tls_port}

<IfModule mpm_event_module>
{mpm}
</IfModule>

Timeout 30
KeepAlive On
KeepAliveTimeout 60
GracefulShutdownTimeout 10
Protocols h2 h2c http/1.1
H2Direct on
H2MaxWorkers 64
ExtendedStatus On

DocumentRoot "{HTDOCS}"
DirectoryIndex index.html
<Directory "{HTDOCS}">
    Require all granted
</Directory>

SSLSessionCache "shmcb:{r}/run/ssl_scache(512000)"

<VirtualHost 127.0.0.1:{self.tls_port}>
    ServerName localhost
    SSLEngine on
    SSLCertificateFile "{self.cert}"
    SSLCertificateKeyFile "{self.key}"
    Protocols h2 http/1.1
</VirtualHost>

<Location /msgs>
    H2Chat On
</Location>
<Location /server-status>
    SetHandler server-status
</Location>

{extra}
"""
        self.conf_path.write_text(conf)

    # -- control
    @staticmethod
    def _environ():
        environ = dict(os.environ)
        if PRELOAD:
            environ['LD_PRELOAD'] = PRELOAD
            environ.setdefault('ASAN_OPTIONS', 'detect_leaks=0')
        return environ

    @staticmethod
    def _allow_cores():
        try:
            resource.setrlimit(resource.RLIMIT_CORE,
                               (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
        except (ValueError, OSError):
            pass

    def _ctl(self, action, timeout=30):
        return subprocess.run([APACHE, '-f', str(self.conf_path), '-k', action],
                              capture_output=True, text=True, timeout=timeout,
                              env=self._environ(), preexec_fn=self._allow_cores)

    def cores(self):
        """Core files children left in the server root (CoreDumpDirectory)."""
        return sorted(str(p) for p in (self.root / 'cores').glob('core*'))

    def configtest(self):
        # a sanitized module loads only with its runtime preloaded
        res = subprocess.run([APACHE, '-f', str(self.conf_path), '-t'],
                             capture_output=True, text=True, timeout=30, env=self._environ())
        return res.returncode, res.stdout + res.stderr

    @property
    def pid(self):
        try:
            return int(self.pid_path.read_text().strip())
        except (OSError, ValueError):
            return None

    def children(self):
        pid = self.pid
        return _children_of(pid) if pid else []

    def start(self):
        for attempt in range(BIND_RETRIES):
            self.write_conf()
            res = self._ctl('start')
            if res.returncode == 0:
                break
            if 'AH00072' not in res.stdout + res.stderr or attempt == BIND_RETRIES - 1:
                raise RuntimeError(f'apache2 -k start failed ({res.returncode}):\n'
                                   f'{res.stdout}{res.stderr}\n{self.errlog_text()[-3000:]}')
            # a port was taken after free_port(): tests read self.port
            # only once the server runs, so new ones are fine
            self.port, self.tls_port = free_port(), free_port()
        self.started = True
        ok = wait_until(self._answers, 15, 0.1)
        if not ok:
            raise RuntimeError('server does not answer after start:\n'
                               + self.errlog_text()[-3000:])
        wait_until(lambda: len(self.children()) >= self.mpm['StartServers'], 10, 0.1)
        return self

    def _answers(self):
        if not self.pid:
            return False
        try:
            r = request(self.port, 'GET', '/server-status?auto', timeout=2)
            r2 = request(self.tls_port, 'GET', '/server-status?auto', timeout=2, tls=True)
            return r.status == 200 and r2.status == 200
        except OSError:
            return False

    def generation(self):
        return self.status_auto().get('ParentServerConfigGeneration')

    def graceful(self, wait=True):
        """apache2 -k graceful; with wait, returns once the new generation
        answers."""
        gen = self.generation()
        res = self._ctl('graceful')
        if res.returncode != 0:
            raise RuntimeError(f'graceful failed: {res.stdout}{res.stderr}')
        if wait:
            def new_gen():
                try:
                    g = self.generation()
                except OSError:
                    return False
                return g is not None and g != gen
            if not wait_until(new_gen, 20, 0.1):
                raise RuntimeError('no new generation after graceful:\n'
                                   + self.errlog_text()[-3000:])
        return res

    def close_subscribers(self):
        for s in self._subscribers:
            s.close()
        self._subscribers = []

    def stop(self):
        self.close_subscribers()
        pid = self.pid
        if not self.started or not pid:
            return
        kids = _children_of(pid)
        # graceful-stop, not stop: httpd's event MPM has a race in its
        # ungraceful path (close_worker_sockets() reads sockets that ending
        # connections free) that segfaults a child now and then when many
        # held streams end at once. Held streams end at once here too (the
        # module's child_stopping hook), so this is just as quick.
        self._ctl('graceful-stop')
        if not wait_until(lambda: not _pid_alive(pid), 20, 0.1):
            for p in [pid] + kids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            wait_until(lambda: not _pid_alive(pid), 5, 0.1)
        for p in kids:
            if _pid_alive(p):
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        self.started = False

    # -- clients
    def subscriber(self, transport='h2c', mode='ndjson', **kw):
        return Subscriber(self, transport, mode, **kw).start()

    def subscribers(self, specs, wait=True, timeout=15):
        """Starts one subscriber per (transport, mode) in specs; with wait,
        returns once all have their response headers."""
        subs = [self.subscriber(t, m) for t, m in specs]
        if wait:
            deadline = time.monotonic() + timeout
            for s in subs:
                s.wait_headers(max(0.1, deadline - time.monotonic()))
        return subs

    def post(self, body, transport='h1', content_type='application/json', headers=None,
             path='/msgs', user=None):
        """POST on its own new connection: h1 via http.client, h2c / h2tls /
        h1tls via curl."""
        if transport == 'h1' and user is None:
            return post(self.port, body, content_type, headers, path)
        hdrs = dict(headers or {})
        if content_type is not None:
            hdrs['Content-Type'] = content_type
        return curl_request(self.port, self.tls_port, transport, 'POST', path,
                            _encode_body(body), hdrs, user)

    def post_msg(self, user, text, transport='h1'):
        """Posts one valid message; asserts 201; returns the (id, time)."""
        r = self.post({'user': user, 'text': text}, transport)
        assert r.status == 201, f'POST failed: {r!r}\n{self.errlog_tail()}'
        obj = r.json()
        return obj['id'], obj.get('time')

    def get(self, path, headers=None, transport='h1', timeout=10):
        if transport == 'h1':
            return request(self.port, 'GET', path, headers=headers, timeout=timeout)
        return curl_request(self.port, self.tls_port, transport, 'GET', path, None, headers,
                            timeout=timeout)

    # -- status
    def status_auto(self):
        return status_auto(self.port)

    def h2chat_status(self):
        return {k: v for k, v in self.status_auto().items() if k.startswith('H2Chat')}

    def wait_subscribers(self, n, timeout=5):
        """Waits until H2ChatSubscribers == n; returns the last value seen."""
        last = [None]

        def check():
            last[0] = self.h2chat_status().get('H2ChatSubscribers')
            return last[0] == n
        wait_until(check, timeout, 0.1)
        return last[0]

    # -- logs
    def errlog_text(self):
        try:
            return self.error_log.read_text(errors='replace')
        except OSError:
            return ''

    def errlog_mark(self):
        try:
            return self.error_log.stat().st_size
        except OSError:
            return 0

    def errlog_since(self, mark):
        try:
            with open(self.error_log, 'rb') as f:
                f.seek(mark)
                return f.read().decode('utf-8', 'replace')
        except OSError:
            return ''

    def wait_errlog(self, regex, mark, timeout=3):
        rx = re.compile(regex)
        found = wait_until(lambda: rx.search(self.errlog_since(mark)), timeout, 0.05)
        return found

    def errlog_tail(self, n=40):
        return 'error.log tail:\n' + '\n'.join(self.errlog_text().splitlines()[-n:])

    def errlog_problems(self):
        """Lines that point at a crash or a fatal module condition."""
        pat = re.compile(r'(segmentation fault|exit signal|AH00052|AH00060|AddressSanitizer|'
                         r'\[h2chat:(crit|alert|emerg)\])', re.I)
        return [line for line in self.errlog_text().splitlines() if pat.search(line)]

    # -- processes
    def connection_holders(self):
        """pid -> number of ESTABLISHED client connections on our ports that
        this child holds."""
        inodes = _established_inodes({self.port, self.tls_port})
        held = {}
        for pid in self.children():
            n = 0
            try:
                for fd in os.listdir(f'/proc/{pid}/fd'):
                    try:
                        link = os.readlink(f'/proc/{pid}/fd/{fd}')
                    except OSError:
                        continue
                    if link.startswith('socket:[') and link[8:-1] in inodes:
                        n += 1
            except OSError:
                continue
            if n:
                held[pid] = n
        return held


def status_auto(port):
    """GET /server-status?auto -> dict of its 'Key: value' lines."""
    r = request(port, 'GET', '/server-status?auto', timeout=5)
    assert r.status == 200, r
    return parse_status_auto(r.body.decode('utf-8', 'replace'))


def stop_leftovers():
    """Stops servers an interrupted earlier run left behind: only a process
    whose pid file is under t/run/ and whose command line names that
    directory's httpd.conf."""
    if not RUN_DIR.exists():
        return
    for pidfile in RUN_DIR.glob('*/httpd.pid'):
        conf = str(pidfile.parent / 'httpd.conf')
        try:
            pid = int(pidfile.read_text().strip())
            with open(f'/proc/{pid}/cmdline', 'rb') as f:
                cmd = f.read().split(b'\0')
        except (OSError, ValueError):
            continue
        if conf.encode() not in cmd:
            continue
        kids = _children_of(pid)
        os.kill(pid, signal.SIGTERM)
        if not wait_until(lambda: not _pid_alive(pid), 15, 0.1):
            for p in [pid] + kids:
                try:
                    os.kill(p, signal.SIGKILL)
                except ProcessLookupError:
                    pass


def parse_status_auto(text):
    """Parses server-status?auto 'Key: value' lines into a dict; integer
    values become ints."""
    out = {}
    for line in text.splitlines():
        if ':' not in line:
            continue
        k, v = line.split(':', 1)
        v = v.strip()
        try:
            out[k.strip()] = int(v)
        except ValueError:
            out[k.strip()] = v
    return out


def write_htpasswd(server, users):
    """<server root>/htpasswd with users {name: password}, readable by
    the child user (AuthUserFile "@ROOT@/htpasswd")."""
    path = server.root / 'htpasswd'
    for i, (user, pw) in enumerate(users.items()):
        subprocess.run(['htpasswd', '-b'] + (['-c'] if i == 0 else []) + [str(path), user, pw],
                       check=True, capture_output=True)
    path.chmod(0o644)


def basic_auth(user, pw):
    """The Authorization header of HTTP Basic for user:pw."""
    return {'Authorization': 'Basic ' + base64.b64encode(f'{user}:{pw}'.encode()).decode()}


def assert_json_error(resp, status):
    """Asserts an error answer: the status, a JSON content type, and a body
    {"error": "<non-empty string>"}."""
    assert resp.status == status, f'expected {status}, got {resp!r}'
    ctype = resp.headers.get('content-type', '')
    assert ctype.split(';')[0].strip() == 'application/json', f'content-type {ctype!r}: {resp!r}'
    obj = resp.json()
    assert isinstance(obj, dict), obj
    assert isinstance(obj.get('error'), str) and obj['error'].strip(), obj
    return obj


# --------------------------------------------------------------------------
# Redis, for H2ChatStore redis

REDIS_SERVER = shutil.which('redis-server') or '/usr/bin/redis-server'


class RedisServer:
    """A redis-server of our own on a free loopback port, no persistence of
    its own (--save '' --appendonly no). stop(save=True) shuts it down with
    SHUTDOWN SAVE, so start() on the same port brings the data back: a
    Redis that goes away and returns."""

    def __init__(self, name):
        self.dir = RUN_DIR / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.log = self.dir / 'redis.log'
        self.port = free_port()
        self.proc = None
        self.started_once = False

    @property
    def url(self):
        return f'redis://127.0.0.1:{self.port}'

    def start(self):
        """Starts redis-server and waits until it answers. The first start
        tries new ports if its port was taken after free_port(); a restart
        keeps its port (the nodes are configured with it) and fails if
        another process took it meanwhile."""
        for attempt in range(BIND_RETRIES):
            mark = self.log.stat().st_size if self.log.exists() else 0
            self.proc = subprocess.Popen(
                [REDIS_SERVER, '--port', str(self.port), '--bind', '127.0.0.1',
                 '--save', '', '--appendonly', 'no', '--dir', str(self.dir),
                 '--dbfilename', 'dump.rdb', '--daemonize', 'no', '--loglevel', 'warning',
                 '--logfile', str(self.log)],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            if wait_until(self._answers, 10, 0.05):
                self.started_once = True
                return self
            self.stop(save=False)
            with open(self.log, 'rb') as f:
                f.seek(mark)
                log = f.read().decode('utf-8', 'replace')
            if ('Address already in use' not in log or self.started_once
                    or attempt == BIND_RETRIES - 1):
                raise RuntimeError(f'redis-server on port {self.port} does not answer:\n'
                                   + log[-2000:])
            self.port = free_port()

    def _answers(self):
        """Our own process answers on the port, not a server that had the
        port before ours started (ours then fails to bind and exits)."""
        if self.proc.poll() is not None:
            return False
        m = re.search(rb'\bprocess_id:(\d+)', self.reply('INFO', 'server') or b'')
        return bool(m) and int(m.group(1)) == self.proc.pid

    def reply(self, *args, timeout=2):
        """One command in RESP; returns its raw reply (a bulk reply whole),
        or None."""
        payload = f'*{len(args)}\r\n'.encode()
        for a in args:
            a = str(a).encode()
            payload += b'$%d\r\n%s\r\n' % (len(a), a)
        try:
            with socket.create_connection(('127.0.0.1', self.port), timeout=timeout) as s:
                s.sendall(payload)
                data = s.recv(65536)
                if data.startswith(b'$') and b'\r\n' in data:
                    head = data.split(b'\r\n', 1)[0]
                    need = len(head) + 2 + max(int(head[1:]), 0) + 2
                    while len(data) < need:
                        more = s.recv(65536)
                        if not more:
                            break
                        data += more
                return data
        except (OSError, ValueError):
            return None

    def command(self, *args, timeout=2):
        """One command in RESP; returns the raw first reply line, or None."""
        data = self.reply(*args, timeout=timeout)
        return data.split(b'\r\n')[0] if data is not None else None

    def stop(self, save=False):
        if not self.proc:
            return
        if self.proc.poll() is None:
            if save:
                self.command('SHUTDOWN', 'SAVE')
            else:
                self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        self.proc = None
