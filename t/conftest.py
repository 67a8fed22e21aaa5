"""pytest fixtures for the mod_h2chat integration suite.

Run as root from the repository root with Debian's interpreter:
    /usr/bin/python3 -m pytest -q t/

Each test module gets its own Apache (fixture `server`, scope module),
configured by optional module attributes:
    EXTRA_CONF  text appended to httpd.conf; '@ROOT@' is the server root,
                '@FASTPORT@' a third free port, '@CERT@'/'@KEY@' the test
                certificate and key
    MPM         dict overriding event MPM directives
    SETUP       callable(server) run before the server starts
Server roots, configs and logs stay in t/run/<module>/ for inspection.
"""

import fcntl
import os
import re
import shutil

import pytest

import h2chat_env as env


def pytest_configure(config):
    if shutil.which('curl') is None or not os.path.exists(env.APACHE):
        raise pytest.UsageError('needs /usr/sbin/apache2 and curl')


def _lock_worktree():
    """One run at a time per worktree: a second run's stop_leftovers() and
    wipe of t/run/ would stop the first run's servers and delete their
    roots under it (its tests then fail or error at setup). An flock on
    t/ itself: the kernel drops it when this process ends, however it ends."""
    fd = os.open(env.REPO / 't', os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        pytest.exit(f'another test run is using {env.RUN_DIR} (same worktree): '
                    'wait for it or run from another worktree', 2)
    return fd


@pytest.fixture(scope='session')
def module_so():
    if os.geteuid() != 0:
        pytest.exit('the suite starts Apache with User www-data: run it as root', 2)
    try:
        so = env.ensure_module()
    except RuntimeError as e:
        pytest.exit(str(e), 2)
    _lock_worktree()  # its fd (not inherited by the servers) stays open
    env.stop_leftovers()
    if env.RUN_DIR.exists():
        shutil.rmtree(env.RUN_DIR)
    env.RUN_DIR.mkdir(parents=True)
    os.chmod(env.RUN_DIR, 0o755)
    return so


@pytest.fixture(scope='session')
def cert(module_so):
    d = env.RUN_DIR / 'pki'
    d.mkdir(exist_ok=True)
    return env.make_cert(d)


@pytest.fixture(scope='module')
def server(request, cert):
    mod = request.module
    name = mod.__name__.rsplit('.', 1)[-1]
    srv = env.H2ChatServer(name, getattr(mod, 'EXTRA_CONF', ''), getattr(mod, 'MPM', None),
                           cert=cert)
    setup = getattr(mod, 'SETUP', None)
    if setup:
        setup(srv)
    try:
        srv.start()
    except Exception:
        srv.stop()
        raise
    yield srv
    srv.stop()


CRASH_RE = re.compile(r'exit signal|AH00052|AH00060|segmentation fault|double free|'
                      r'AddressSanitizer', re.I)


KILLED_RE = re.compile(r'AH00052: child pid (\d+) exit signal Killed \(9\)')


def _expected_kill(srv, line):
    """The exit line of a child the test killed itself (kill -9)."""
    m = KILLED_RE.search(line)
    return bool(m) and int(m.group(1)) in srv.expected_kills


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    """A failing test's report carries what its servers logged while it
    ran: a failure in CI (a fresh clone, gone afterwards) explains itself."""
    outcome = yield
    rep = outcome.get_result()
    if rep.when == 'call' and rep.failed:
        for srv, mark in getattr(item, 'h2chat_marks', []):
            text = srv.errlog_since(mark)[-6000:]
            rep.sections.append((f'{srv.name} error.log during the test', text or '(empty)'))


@pytest.fixture(autouse=True)
def no_crash(request):
    """Fails a test if a child crashed while it ran: in the module's
    `server`, or in any of its `nodes` (a module with several servers, as
    t/test_redis.py), so a crash is charged to the test it happened in."""
    if 'server' in request.fixturenames:
        servers = [request.getfixturevalue('server')]
    elif 'nodes' in request.fixturenames:
        servers = list(request.getfixturevalue('nodes'))
    else:
        yield
        return
    marks = [srv.errlog_mark() for srv in servers]
    request.node.h2chat_marks = list(zip(servers, marks))
    yield
    crashes, cores = [], []
    for srv, mark in zip(servers, marks):
        srv.close_subscribers()
        crashes += [f'{srv.name}: {line}' for line in srv.errlog_since(mark).splitlines()
                    if CRASH_RE.search(line) and not _expected_kill(srv, line)]
        cores += srv.cores()
    if crashes:
        pytest.fail('a child crashed during the test:\n' + '\n'.join(crashes[:10]) +
                    ''.join(f'\ncore: {c}' for c in cores))
