"""bench/benchsrv.py: what the Python benchmarks (rooms-memory.py,
rooms-load.py, tls-ladder.py) share. Stdlib only, loopback only.

  BenchApache  Apache with this tree's module and bench/httpd.conf.in as
               bench/httpd-conf.sh fills it for run.sh (no access log,
               ExtendedStatus off), plus apache2 -D defines and -c directives;
               with cert=(CERT, KEY) and -DBENCH_TLS also TLS on port + 10
  Nchan        nginx+nchan with the peers' nchan/nginx-rooms.conf (channel id
               from the URL: /msgs/<room>; h2c 18107, HTTP/1.1 18108) plus an
               nchan_stub_status location and keepalive_requests 1000000
  NchanTLS     nginx+nchan with the peers' nchan/nginx-tls.conf.in (one
               channel on /msgs, h2 over TLS on 18105)
  Seed         the peers' seed-node/server.mjs (Node.js), h2c or TLS
  make_cert    a self-signed certificate and key (openssl)
  post_rooms   one message into each of N rooms over one HTTP/1.1 connection
  h2load       one h2load run, bounded in time, parsed by report.py's parser
  fanout_multi one bench/fanout-multi.py run (N subscribers over one or more
               h2c-fanout processes), bounded in time: its JSON line
  tree_pss_kib, tree_threads, tree_cpu_s   a server's process tree from /proc
  busy_pct, wait_quiet, thread_room,       the machine around a run
  listen_overflows

Every server starts fresh and is stopped by its PID (SIGTERM, then SIGKILL
to the process tree), also on failure: use them in a `with` block."""

import http.client
import json
import os
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time

BENCH = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(BENCH)
sys.path.insert(0, os.path.join(ROOT, 't'))
sys.path.insert(0, BENCH)

import h2chat_env as env  # noqa: E402  (server-status parsing)
import report  # noqa: E402  (h2load's output parser)

PEERS = next((p for p in (os.path.join(ROOT, '..', 'shared', 'peers'), '/work/shared/peers')
              if os.path.isdir(p)), None)
APACHE = '/usr/sbin/apache2'
MODULE = os.path.join(ROOT, '.libs', 'mod_h2chat.so')
CT_JSON = {'Content-Type': 'application/json'}


def raise_nofile():
    """The soft open-files limit up to the hard one, for this process and
    the servers and clients it starts (thousands of connections each)."""
    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return hard


def tree_pids(pid):
    """pid and all its descendants (from /proc)."""
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            for task in os.listdir(f'/proc/{p}/task'):
                with open(f'/proc/{p}/task/{task}/children') as f:
                    todo.extend(int(c) for c in f.read().split())
        except OSError:
            pass
    return out


def tree_cpu_s(pid):
    """utime + stime (seconds) of pid's process tree."""
    hz, ticks = os.sysconf('SC_CLK_TCK'), 0
    for p in tree_pids(pid):
        try:
            with open(f'/proc/{p}/stat') as f:
                fields = f.read().rsplit(')', 1)[1].split()
            ticks += int(fields[11]) + int(fields[12])
        except (OSError, IndexError, ValueError):
            pass
    return ticks / hz


def _proc_field(path, key):
    """The number after `key` in a /proc file of key/value lines (0 if gone)."""
    try:
        with open(path) as f:
            for line in f:
                if line.startswith(key):
                    return int(line.split()[1])
    except (OSError, IndexError, ValueError):
        pass
    return 0


def tree_pss_kib(pid):
    """Sum of Pss (KiB, smaps_rollup: shared pages counted once) over pid's tree."""
    return sum(_proc_field(f'/proc/{p}/smaps_rollup', 'Pss:') for p in tree_pids(pid))


def tree_threads(pid):
    return sum(_proc_field(f'/proc/{p}/status', 'Threads:') for p in tree_pids(pid))


def thread_room(spare=3000):
    """Threads that may still be started on this machine: the lower of
    pid_max and the cgroup's pids.max, less `spare`, less every thread now."""
    limit = int(open('/proc/sys/kernel/pid_max').read())
    try:
        v = open('/sys/fs/cgroup/pids.max').read().strip()
        if v != 'max':
            limit = min(limit, int(v))
    except OSError:
        pass
    now = 0
    for d in os.listdir('/proc'):
        try:
            now += len(os.listdir(f'/proc/{d}/task')) if d.isdigit() else 0
        except OSError:  # ended meanwhile
            pass
    return limit - spare - now


def listen_overflows():
    """TcpExt ListenOverflows of this machine (/proc/net/netstat): SYNs
    dropped because a listener's accept queue was full (each costs its
    client a 1 s retransmission)."""
    with open('/proc/net/netstat') as f:
        lines = f.read().splitlines()
    for names, values in zip(lines[::2], lines[1::2]):
        if names.startswith('TcpExt:'):
            return int(dict(zip(names.split(), values.split())).get('ListenOverflows', 0))
    return 0


def busy_pct(span=1.0):
    """% of one core the whole machine used over span seconds."""
    def ticks():
        with open('/proc/stat') as f:
            v = [int(x) for x in f.readline().split()[1:]]
        return v[0] + v[1] + v[2] + v[7]  # user nice system steal
    t0, b0 = time.monotonic(), ticks()
    time.sleep(span)
    t1, b1 = time.monotonic(), ticks()
    return (b1 - b0) * 100.0 / os.sysconf('SC_CLK_TCK') / (t1 - t0)


def wait_quiet(pause, quiet_wait, limit=15.0, log=None):
    """After `pause` s, waits (up to `quiet_wait` s) until the machine's
    other work uses < limit % of a core; returns the last load seen (a
    record keeps it, so a disturbed figure can be recognised)."""
    time.sleep(pause)
    t0 = time.monotonic()
    while True:
        load = busy_pct()
        if load < limit or time.monotonic() - t0 >= quiet_wait:
            if load >= limit and quiet_wait and log:
                log(f'  others still use {load:.0f} % of a core: measuring anyway')
            return round(load, 1)


def make_cert(directory):
    """A self-signed RSA-2048 certificate for localhost and 127.0.0.1 in
    directory, made with the seed's openssl steps as tools/run.sh makes
    `make run`'s (key + CSR, then x509 -req: a leaf, not a CA certificate,
    which mod_ssl would warn about): returns (cert, key) paths."""
    cert, key = os.path.join(directory, 'cert.pem'), os.path.join(directory, 'key.pem')
    csr, ext = os.path.join(directory, 'csr.pem'), os.path.join(directory, 'san.ext')
    with open(ext, 'w') as f:
        f.write('subjectAltName=DNS:localhost,IP:127.0.0.1\n')
    for cmd in (['req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', csr,
                 '-subj', '/CN=localhost'],
                ['x509', '-req', '-days', '2', '-in', csr, '-signkey', key, '-extfile', ext,
                 '-out', cert]):
        subprocess.run(['openssl'] + cmd, check=True, capture_output=True, timeout=60)
    return cert, key


def port_busy(port):
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(('127.0.0.1', port)) == 0


def _wait(pred, timeout, step=0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(step)
    return pred()


def _alive(pid):
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _stop_pid(pid, port, timeout=60):
    """SIGTERM to pid, SIGKILL to its tree if it outlives timeout; then
    until port is free."""
    kids = tree_pids(pid)
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    if not _wait(lambda: not _alive(pid), timeout):
        for p in kids:
            try:
                os.kill(p, signal.SIGKILL)
            except ProcessLookupError:
                pass
        _wait(lambda: not _alive(pid), 5)
    _wait(lambda: not port_busy(port), 10)


def _read_pid(path, timeout=10):
    def ok():
        try:
            return int(open(path).read().strip()) > 0
        except (OSError, ValueError):
            return False
    return int(open(path).read().strip()) if _wait(ok, timeout) else None


def _reach(*paths):
    """o+x on every directory from each path up to /: the children run as
    www-data and must reach the module and the server root."""
    for d in paths:
        while d not in ('/', ''):
            os.chmod(d, os.stat(d).st_mode | 0o001)
            d = os.path.dirname(d)


def _get(port, path, timeout=5):
    c = http.client.HTTPConnection('127.0.0.1', port, timeout=timeout)
    try:
        c.request('GET', path)
        r = c.getresponse()
        return r.status, r.read().decode('utf-8', 'replace')
    finally:
        c.close()


class _Managed:
    """`with server:` starts it and stops it by its PID, also when the
    start fails half-way."""

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.stop()
            raise

    def __exit__(self, *exc):
        self.stop()


class BenchApache(_Managed):
    """Apache as the benchmarks run it: `defines` (e.g. BENCH_DIRECT,
    BENCH_ROOMS, BENCH_TLS) are apache2 -D, `directives` apache2 -c (after
    the file). With BENCH_TLS, `cert` = (CERT, KEY) is copied to the
    server root for the TLS virtual host on tls_port (port + 10)."""
    sse = False

    def __init__(self, run, port, children, threads, maxsubs, defines=(), directives=(),
                 cert=None, label=None):
        self.run, self.port, self.children = os.path.abspath(run), port, children
        self.h2c_port, self.tls_port, self.cert = port, port + 10, cert
        self.threads = children * threads
        self.sizing = [str(children), str(threads), str(maxsubs)]
        self.args = [APACHE] + [f'-D{d}' for d in defines]
        for d in directives:
            self.args += ['-c', d]
        self.conf = os.path.join(self.run, 'httpd.conf')
        self.args += ['-f', self.conf]
        self.pid = None
        self.label = label or ('mod_h2chat-direct' if 'BENCH_DIRECT' in defines
                               else 'mod_h2chat')

    def start(self):
        tls = '-DBENCH_TLS' in self.args
        for p in (self.port, self.tls_port) if tls else (self.port,):
            if port_busy(p):
                raise RuntimeError(f'port {p} is busy')
        os.makedirs(os.path.join(self.run, 'htdocs'), exist_ok=True)
        if tls:
            # read by the root parent only (before it drops to www-data)
            shutil.copyfile(self.cert[0], os.path.join(self.run, 'server.crt'))
            key = os.path.join(self.run, 'key.pem')
            shutil.copyfile(self.cert[1], key)
            os.chmod(key, 0o600)
        with open(self.conf, 'w') as f:
            subprocess.run([os.path.join(BENCH, 'httpd-conf.sh'), self.run, str(self.port)]
                           + self.sizing, stdout=f, check=True, timeout=30)
        _reach(os.path.dirname(MODULE), os.path.join(self.run, 'htdocs'))
        os.chmod(MODULE, os.stat(MODULE).st_mode | 0o004)
        pidfile = os.path.join(self.run, 'httpd.pid')
        if os.path.exists(pidfile):
            os.unlink(pidfile)
        for action in (['-t'], ['-k', 'start']):
            r = subprocess.run(self.args + action, capture_output=True, text=True, timeout=60)
            if r.returncode:
                raise RuntimeError(f'{" ".join(self.args + action)}: {r.stdout}{r.stderr}')
        self.pid = _read_pid(pidfile)
        if not self.pid:
            raise RuntimeError('apache2 wrote no pid file')
        # every child up; with H2ChatDirect each with its loop
        direct = '-DBENCH_DIRECT' in self.args or '-DBENCH_TLS_DIRECT' in self.args

        def up():
            try:
                st = self.status()
            except (OSError, AssertionError):
                return False
            if direct:
                per = str(st.get('H2ChatDirectPerChild', ''))
                return per.count('=') >= self.children
            return True
        if not _wait(up, 30):
            raise RuntimeError(f'Apache does not answer (see {self.run}/error.log)')
        # every child with all its threads (thousands for held mod_http2
        # streams): a memory sample taken before would count their start
        _wait(lambda: tree_threads(self.pid) >= self.threads, 60, 0.2)
        return self

    def stop(self):
        if self.pid:
            pid, self.pid = self.pid, None
            _stop_pid(pid, self.port)

    def status(self):
        return env.status_auto(self.port)

    def rooms(self):
        return self.status().get('H2ChatRooms')



class _Nginx(_Managed):
    """nginx+nchan from a peers' config (config() gives its text), in a
    fresh prefix directory that goes with it. `ports` are checked free
    before and listening after the start; the first one is waited for at
    the stop."""
    ports = ()
    prefix = 'nchan-'

    def __init__(self):
        if not PEERS or not shutil.which('nginx'):
            raise RuntimeError('no nginx or no peers directory')
        self.run, self.pid = None, None

    def config(self):
        raise NotImplementedError

    def start(self):
        for p in self.ports:
            if port_busy(p):
                raise RuntimeError(f'port {p} is busy')
        self.run = tempfile.mkdtemp(prefix=self.prefix)
        os.makedirs(os.path.join(self.run, 'tmp'))
        conf = os.path.join(self.run, 'nginx.conf')
        open(conf, 'w').write(self.config())
        subprocess.run(['nginx', '-p', self.run, '-c', conf], check=True, timeout=30)
        self.pid = _read_pid(os.path.join(self.run, 'nginx.pid'))
        if not self.pid or not _wait(lambda: all(port_busy(p) for p in self.ports), 10):
            raise RuntimeError(f'nginx did not start (see {self.run}/error.log)')
        return self

    def stop(self):
        if self.pid:
            pid, self.pid = self.pid, None
            _stop_pid(pid, self.ports[0])
        if self.run:
            shutil.rmtree(self.run, ignore_errors=True)
            self.run = None


class Nchan(_Nginx):
    """nginx+nchan with the peers' rooms config, in a fresh prefix directory."""
    H2C, HTTP = 18107, 18108
    h2c_port, sse, label = H2C, True, 'nchan'
    ports = (H2C, HTTP)
    prefix = 'nchan-rooms-'

    def config(self):
        src = open(os.path.join(PEERS, 'nchan', 'nginx-rooms.conf')).read()
        # plus a status location, and no end to a connection after 1000
        # requests (nginx's keepalive_requests, also for h2): h2load does
        # not reconnect, so its POSTs past the 1000th would all fail
        marker = '    location ~ "^/msgs/'
        if marker not in src:
            raise RuntimeError('nginx-rooms.conf has no /msgs/ location')
        return src.replace(marker, '    keepalive_requests 1000000;\n'
                           '    location = /nchan_status { nchan_stub_status; }\n' + marker, 1)

    def status(self):
        """nchan_stub_status as a dict ("shared memory used" in bytes)."""
        status, text = _get(self.HTTP, '/nchan_status')
        out = {'text': text.strip().splitlines()[:8]}
        for line in text.splitlines():
            k, _, v = line.partition(':')
            v = v.strip()
            if v.endswith('K') and v[:-1].isdigit():
                out[k.strip()] = int(v[:-1]) * 1024
            elif v.isdigit():
                out[k.strip()] = int(v)
        return out

    def rooms(self):
        return self.status().get('channels')


class NchanTLS(_Nginx):
    """nginx+nchan with the peers' nchan/nginx-tls.conf.in: one channel on
    /msgs (GET with Accept: text/event-stream subscribes, POST publishes),
    h2 over TLS on 127.0.0.1:18105, its @CERT@/@KEY@ filled in, plus
    `ssl_protocols TLSv1.2 TLSv1.3` (nginx 1.22's default stops at TLS 1.2;
    1.23.4 and Debian's nginx.conf add 1.3, which Apache and Node.js
    negotiate here: the same handshake and records for every server). As
    given (2 workers of 20,000 connections) up to `subscribers` 15,000;
    beyond, as bench/nchan-scale.conf.in sizes nginx: a worker per 12,500
    and `reuseport` (one listening socket per worker, spread by the
    kernel), since a worker, like every process here, has 20,000 open files."""
    tls_port, sse, label = 18105, True, 'nchan'
    ports = (tls_port,)
    prefix = 'nchan-tls-'

    def __init__(self, cert, key, subscribers=0):
        super().__init__()
        self.cert, self.key, self.subscribers = cert, key, subscribers

    def config(self):
        src = open(os.path.join(PEERS, 'nchan', 'nginx-tls.conf.in')).read()
        src = src.replace('@CERT@', self.cert).replace('@KEY@', self.key)
        if '    ssl_certificate ' not in src:
            raise RuntimeError('nginx-tls.conf.in has no ssl_certificate line')
        src = src.replace('    ssl_certificate ',
                          '    ssl_protocols TLSv1.2 TLSv1.3;\n    ssl_certificate ', 1)
        if self.subscribers > 15000:
            workers = -(-self.subscribers // 12500)
            listen = f'listen 127.0.0.1:{self.tls_port} ssl http2'
            if listen not in src or 'worker_processes 2;' not in src:
                raise RuntimeError('nginx-tls.conf.in: no listen or worker_processes to scale')
            src = src.replace(listen, listen + ' reuseport', 1)
            src = src.replace('worker_processes 2;', f'worker_processes {workers};', 1)
        return src


class Seed(_Managed):
    """The peers' seed-node/server.mjs: one Node.js process on
    127.0.0.1:port, h2 over TLS with cert=(CERT, KEY), else h2c. Its own
    session (a Ctrl-C reaches the benchmark, which stops it by its PID)."""
    sse, label = False, 'seed-node'

    def __init__(self, port, cert=None):
        self.script = os.path.join(PEERS or '', 'seed-node', 'server.mjs')
        if not PEERS or not os.path.exists(self.script) or not shutil.which('node'):
            raise RuntimeError('no node or no peers directory')
        self.port = self.tls_port = self.h2c_port = port
        self.cert, self.proc, self.pid, self.log = cert, None, None, None

    def start(self):
        if port_busy(self.port):
            raise RuntimeError(f'port {self.port} is busy')
        self.log = tempfile.NamedTemporaryFile(prefix='seed-', suffix='.log', delete=False)
        self.proc = subprocess.Popen(['node', self.script, str(self.port)] + list(self.cert or ()),
                                     stdin=subprocess.DEVNULL, stdout=self.log,
                                     stderr=subprocess.STDOUT, start_new_session=True)
        self.pid = self.proc.pid
        if not _wait(lambda: port_busy(self.port) or self.proc.poll() is not None, 10) \
                or self.proc.poll() is not None:
            tail = open(self.log.name, errors='replace').read()[-500:]
            raise RuntimeError(f'the seed did not listen on {self.port}: {tail}')
        return self

    def stop(self):
        if self.proc:
            p, self.proc, self.pid = self.proc, None, None
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(30)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(10)
            _wait(lambda: not port_busy(self.port), 10)
        if self.log:
            self.log.close()
            os.unlink(self.log.name)
            self.log = None



def post_rooms(port, n, path_of):
    """One short message into each of n rooms (path_of(i)) over one HTTP/1.1
    keep-alive connection; returns the seconds it took."""
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    t0 = time.monotonic()
    for i in range(n):
        body = json.dumps({'user': 'u', 'text': f'hello room {i}'})
        conn.request('POST', path_of(i), body=body, headers=CT_JSON)
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 201, 202):
            raise RuntimeError(f'POST {path_of(i)}: {r.status}')
    conn.close()
    return time.monotonic() - t0


def run_bounded(cmd, timeout, grace=10):
    """cmd's (rc, stdout, stderr), text. Past timeout, or on any exception
    (Ctrl-C), it gets SIGTERM, then SIGKILL after grace s: fanout-multi.py
    stops its own client processes on SIGTERM, not on SIGKILL. rc 124 for
    a timeout."""
    p = subprocess.Popen([str(c) for c in cmd], stdin=subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        out, err = p.communicate(timeout=timeout)
        return p.returncode, out, err
    except subprocess.TimeoutExpired:
        p.terminate()
        out, err = p.communicate(timeout=grace)
        return 124, out, err
    finally:
        if p.poll() is None:
            p.terminate()
            try:
                p.wait(grace)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)


def h2load(args, timeout=180):
    """h2load ARGS, killed after timeout: report.py's parse of its output,
    plus rc, the command line, the TLS protocol and the time for connect
    (min/max/mean: with TLS, up to the end of the handshake)."""
    cmd = ['h2load'] + [str(a) for a in args]
    try:
        rc, out, err = run_bounded(cmd, timeout)
    except subprocess.TimeoutExpired:
        rc, out, err = 124, '', ''
    out += err
    d = report.parse_h2load(out)
    m = re.search(r'time for connect:\s+(\S+)\s+(\S+)\s+(\S+)', out)
    if m:
        d['connect_time_min'], d['connect_time_max'], d['connect_time_mean'] = m.groups()
    m = re.search(r'TLS Protocol: (\S+)', out)
    d['tls'] = m.group(1) if m else None
    d.update(rc=rc, cmd=' '.join(cmd))
    if rc:
        d['output_tail'] = out[-800:]
    return d


def fanout_multi(args, timeout):
    """bench/fanout-multi.py ARGS (N subscribers over ceil(N / 16,000)
    h2c-fanout processes, each from its own 127.0.0.x), stopped after
    timeout: (rc, its JSON line as a dict or {}, stderr's tail, the
    command line)."""
    cmd = [sys.executable, os.path.join(BENCH, 'fanout-multi.py')] + [str(a) for a in args]
    try:
        rc, out, err = run_bounded(cmd, timeout)
    except subprocess.TimeoutExpired:
        rc, out, err = 124, '', ''
    lines = [x for x in out.splitlines() if x.startswith('{')]
    return (rc, json.loads(lines[-1]) if lines else {}, err.strip()[-800:],
            ' '.join(['bench/fanout-multi.py'] + cmd[2:]))
