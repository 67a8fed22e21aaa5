"""bench/benchsrv.py: what the Python benchmarks of rooms (rooms-memory.py,
rooms-load.py) share. Stdlib only, loopback only.

  BenchApache  Apache with this tree's module and bench/httpd.conf.in as
               bench/httpd-conf.sh fills it for run.sh (no access log,
               ExtendedStatus off), plus apache2 -D defines and -c directives
  Nchan        nginx+nchan with the peers' nchan/nginx-rooms.conf (channel id
               from the URL: /msgs/<room>; h2c 18107, HTTP/1.1 18108) plus an
               nchan_stub_status location and keepalive_requests 1000000
  post_rooms   one message into each of N rooms over one HTTP/1.1 connection
  h2load       one h2load run, bounded in time, parsed by report.py's parser

Both servers start fresh and are stopped by their PID (SIGTERM, then SIGKILL
to the process tree), also on failure: use them in a `with` block."""

import http.client
import json
import os
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
    BENCH_ROOMS) are apache2 -D, `directives` apache2 -c (after the file)."""
    sse = False

    def __init__(self, run, port, children, threads, maxsubs, defines=(), directives=()):
        self.run, self.port, self.children = os.path.abspath(run), port, children
        self.h2c_port = port
        self.sizing = [str(children), str(threads), str(maxsubs)]
        self.args = [APACHE] + [f'-D{d}' for d in defines]
        for d in directives:
            self.args += ['-c', d]
        self.conf = os.path.join(self.run, 'httpd.conf')
        self.args += ['-f', self.conf]
        self.pid = None
        self.label = 'mod_h2chat-direct' if 'BENCH_DIRECT' in defines else 'mod_h2chat'

    def start(self):
        if port_busy(self.port):
            raise RuntimeError(f'port {self.port} is busy')
        os.makedirs(os.path.join(self.run, 'htdocs'), exist_ok=True)
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
        direct = '-DBENCH_DIRECT' in self.args

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
        return self

    def stop(self):
        if self.pid:
            pid, self.pid = self.pid, None
            _stop_pid(pid, self.port)

    def status(self):
        return env.status_auto(self.port)

    def rooms(self):
        return self.status().get('H2ChatRooms')



class Nchan(_Managed):
    """nginx+nchan with the peers' rooms config, in a fresh prefix directory."""
    H2C, HTTP = 18107, 18108
    h2c_port, sse, label = H2C, True, 'nchan'

    def __init__(self):
        if not PEERS or not shutil.which('nginx'):
            raise RuntimeError('no nginx or no peers directory')
        self.run, self.pid = None, None

    def start(self):
        for p in (self.H2C, self.HTTP):
            if port_busy(p):
                raise RuntimeError(f'port {p} is busy')
        self.run = tempfile.mkdtemp(prefix='nchan-rooms-')
        os.makedirs(os.path.join(self.run, 'tmp'))
        src = open(os.path.join(PEERS, 'nchan', 'nginx-rooms.conf')).read()
        # plus a status location, and no end to a connection after 1000
        # requests (nginx's keepalive_requests, also for h2): h2load does
        # not reconnect, so its POSTs past the 1000th would all fail
        marker = '    location ~ "^/msgs/'
        if marker not in src:
            raise RuntimeError('nginx-rooms.conf has no /msgs/ location')
        src = src.replace(marker, '    keepalive_requests 1000000;\n'
                          '    location = /nchan_status { nchan_stub_status; }\n' + marker, 1)
        conf = os.path.join(self.run, 'nginx.conf')
        open(conf, 'w').write(src)
        subprocess.run(['nginx', '-p', self.run, '-c', conf], check=True, timeout=30)
        self.pid = _read_pid(os.path.join(self.run, 'nginx.pid'))
        if not self.pid or not _wait(lambda: port_busy(self.H2C) and port_busy(self.HTTP), 10):
            raise RuntimeError(f'nginx did not start (see {self.run}/error.log)')
        return self

    def stop(self):
        if self.pid:
            pid, self.pid = self.pid, None
            _stop_pid(pid, self.H2C)
        if self.run:
            shutil.rmtree(self.run, ignore_errors=True)
            self.run = None

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


def h2load(args, timeout=180):
    """h2load ARGS, killed after timeout: report.py's parse of its output,
    plus rc and the command line."""
    cmd = ['h2load'] + [str(a) for a in args]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        out, rc = r.stdout + r.stderr, r.returncode
    except subprocess.TimeoutExpired as e:
        out, rc = (e.stdout or b'').decode(errors='replace') if isinstance(e.stdout, bytes) \
            else (e.stdout or ''), 124
    d = report.parse_h2load(out)
    d.update(rc=rc, cmd=' '.join(cmd))
    return d
