"""The chat page (htdocs/) in a real browser: Debian's chromium, driven by
playwright-core from t/browser/chat.mjs, against this module's Apache over
TLS h2 (the fixture's tls_port).

Each test runs one scenario of chat.mjs in its own node process (its own
browser) with a bounded timeout and asserts on the JSON line it prints. The
graceful scenario talks back: once its pages are connected it prints
{"event": "ready"}; this test then posts as a third party (http.client),
restarts Apache gracefully, posts again, and answers with the ids.

Needs node (>= 20) and /usr/bin/chromium: a missing one fails the tests, it
does not skip them. `npm ci` runs in t/browser/ when node_modules is missing.
Screenshots go to t/run/artifacts/; docs/screenshot.png (the README's) is
written when it is missing or when H2CHAT_UPDATE_SCREENSHOT=1.
"""

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time

import pytest

import h2chat_env as env

BROWSER_DIR = env.REPO / 't' / 'browser'
ARTIFACTS = env.RUN_DIR / 'artifacts'
DOCS_SHOT = env.REPO / 'docs' / 'screenshot.png'
CHROMIUM = os.environ.get('H2CHAT_CHROMIUM', '/usr/bin/chromium')
SCENARIO_TIMEOUT = 90   # seconds for one scenario's node process, browser start included
SETTLE = 12             # seconds for the server to drop a closed browser's streams


@pytest.fixture(scope='module')
def node():
    """The node binary, with t/browser/node_modules installed; fails (does not
    skip) when node, npm or chromium is missing."""
    node = env.node_binary(20, 'the browser tests (playwright-core)')
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f'{CHROMIUM} is missing: the browser tests need Debian\'s chromium '
                    '(apt-get install chromium)', pytrace=False)
    res = subprocess.run([CHROMIUM, '--version'], capture_output=True, text=True, timeout=60)
    if res.returncode != 0 or 'Chromium' not in res.stdout:
        pytest.fail(f'{CHROMIUM} --version failed ({res.returncode}): {res.stdout}{res.stderr}',
                    pytrace=False)
    if not (BROWSER_DIR / 'node_modules' / 'playwright-core' / 'package.json').exists():
        npm = shutil.which('npm')
        if not npm:
            pytest.fail('npm is not installed (apt-get install npm): needed once for '
                        '`npm ci` in t/browser', pytrace=False)
        res = subprocess.run([npm, 'ci', '--no-audit', '--no-fund'], cwd=BROWSER_DIR,
                             capture_output=True, text=True, timeout=300)
        if res.returncode != 0:
            pytest.fail(f'npm ci in {BROWSER_DIR} failed ({res.returncode}):\n'
                        f'{res.stdout[-2000:]}{res.stderr[-2000:]}', pytrace=False)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    return node


def _stop(proc):
    """Ends a scenario's node process group (the browser, in a session of its
    own, exits when node's pipe to it closes)."""
    if proc.poll() is not None:
        return
    for sig, wait in ((signal.SIGTERM, 5), (signal.SIGKILL, 5)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            return
        try:
            proc.wait(timeout=wait)
            return
        except subprocess.TimeoutExpired:
            continue


def run_scenario(server, node, name, on_event=None, timeout=SCENARIO_TIMEOUT):
    """Runs `node chat.mjs <name>`; returns (result dict, diagnostics text).
    on_event(obj) answers an {"event": ...} line; its return value (if not
    None) goes to the scenario's stdin as one JSON line."""
    environ = dict(os.environ,
                   H2CHAT_URL=f'https://127.0.0.1:{server.tls_port}',
                   H2CHAT_ARTIFACTS=str(ARTIFACTS),
                   H2CHAT_CHROMIUM=CHROMIUM,
                   H2CHAT_TIMEOUT_MS=str((timeout - 15) * 1000))
    proc = subprocess.Popen([node, 'chat.mjs', name], cwd=BROWSER_DIR, env=environ,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding='utf-8',
                            start_new_session=True)
    lines = queue.Queue()
    err = []

    def pump_out():
        for line in proc.stdout:
            lines.put(line)
        lines.put(None)

    def pump_err():
        for line in proc.stderr:
            err.append(line)

    threads = [threading.Thread(target=pump_out, daemon=True),
               threading.Thread(target=pump_err, daemon=True)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + timeout
    result, other, timed_out = None, [], False
    try:
        while True:
            try:
                line = lines.get(timeout=max(0.1, deadline - time.monotonic()))
            except queue.Empty:
                timed_out = True
                break
            if line is None:
                break
            try:
                obj = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            if isinstance(obj, dict) and 'event' in obj:
                reply = on_event(obj) if on_event else None
                if reply is not None:
                    proc.stdin.write(json.dumps(reply) + '\n')
                    proc.stdin.flush()
            elif isinstance(obj, dict) and obj.get('scenario') == name:
                result = obj
            else:
                other.append(line)
        if not timed_out:
            try:
                proc.wait(timeout=max(1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                timed_out = True
    finally:
        _stop(proc)
        for t in threads:
            t.join(timeout=5)
    diag = (f'scenario {name}: exit={proc.returncode} timed_out={timed_out}\n'
            f'stdout (other): {"".join(other)[-2000:]}\nstderr: {"".join(err)[-3000:]}\n'
            f'{server.errlog_tail(20)}')
    assert not timed_out, f'scenario {name} did not finish within {timeout} s\n{diag}'
    assert result is not None, f'scenario {name} printed no result\n{diag}'
    failed = [c for c in result['checks'] if not c['ok']]
    if not result['ok']:
        lines_ = [f'  - {c["name"]}: {json.dumps(c["detail"], ensure_ascii=False)[:600]}'
                  for c in failed]
        pytest.fail(f'scenario {name} failed\n  error: {result["error"]}\n' + '\n'.join(lines_) +
                    f'\n  data: {json.dumps(result["data"], ensure_ascii=False)[:1500]}\n'
                    f'  (screenshots of its pages: {ARTIFACTS}/fail-{name}-*.png)\n{diag}',
                    pytrace=False)
    assert proc.returncode == 0, f'scenario {name} passed but exited {proc.returncode}\n{diag}'
    return result, diag


def checked(result, name):
    """The named check of a result (asserts that it ran)."""
    for c in result['checks']:
        if c['name'] == name:
            return c
    raise AssertionError(f'check {name!r} missing from {result["scenario"]}: '
                         f'{[c["name"] for c in result["checks"]]}')


@pytest.fixture(autouse=True)
def quiet_server(server):
    """Each browser test starts with no held stream, and its browser's streams
    are gone soon after the browser closed."""
    n = server.wait_subscribers(0, SETTLE)
    assert n == 0, f'{n} held streams before the test: {server.h2chat_status()}'
    yield
    n = server.wait_subscribers(0, SETTLE)
    assert n == 0, (f'{n} held streams still counted {SETTLE} s after the browser closed: '
                    f'{server.h2chat_status()}')


def png_size(path):
    with open(path, 'rb') as f:
        head = f.read(24)
    assert head[:8] == b'\x89PNG\r\n\x1a\n', f'{path} is not a PNG'
    return int.from_bytes(head[16:20], 'big'), int.from_bytes(head[20:24], 'big')


# First, while the history holds only its own conversation (the README's picture).
def test_screenshots(server, node):
    """5. The page at 360x740 and 1280x800, saved as artifacts; the 1280 one is
    the README's docs/screenshot.png."""
    res, _ = run_scenario(server, node, 'screenshots')
    for w, h in ((360, 740), (1280, 800)):
        path = ARTIFACTS / f'page-{w}.png'
        assert path.exists(), path
        assert png_size(path) == (w, h)
        assert path.stat().st_size > 10000, f'{path} looks empty'
    assert res['data']['presence'] == '🟢'
    if not DOCS_SHOT.exists() or os.environ.get('H2CHAT_UPDATE_SCREENSHOT') == '1':
        DOCS_SHOT.parent.mkdir(exist_ok=True)
        shutil.copyfile(ARTIFACTS / 'page-1280.png', DOCS_SHOT)


def test_two_people(server, node):
    """1. Two browsers: each sees the other's message within 1 s; identical
    lists, in order, over h2."""
    res, _ = run_scenario(server, node, 'two-people')
    lat = res['data']['latencies_ms']
    assert len(lat) == 5 and max(lat) <= 1000, lat
    ids = res['data']['sent_ids']
    assert ids == sorted(ids) and len(set(ids)) == 5, ids
    assert server.h2chat_status()['H2ChatLastId'] >= ids[-1]
    assert checked(res, 'both #messages lists identical (ids, users, texts, order)')['ok']
    assert checked(res, 'page and assets over h2')['ok']


def test_markup_is_text(server, node):
    """2. <img onerror> and <script> in a message (and a name) show as text:
    no dialog, no element."""
    res, _ = run_scenario(server, node, 'xss')
    for who in ('sender', 'receiver'):
        assert checked(res, f'{who}: text shown verbatim')['ok']
        assert checked(res, f'{who}: no img/script element in #messages')['detail'] == 0
    assert checked(res, 'no dialogs')['detail'] == []


def test_ten_tabs_one_stream(server, node):
    """3. Ten tabs of one browser: one leader, one held stream on the server,
    every tab shows every message, also one sent from a follower tab."""
    res, _ = run_scenario(server, node, 'ten-tabs')
    d = res['data']
    assert len(d['leaders']) == 1, d
    assert d['subscribers_before'] == 0, d
    assert all(n == d['subscribers_before'] + 1 for n in d['subscribers_open']), d
    assert d['subscribers_after_posts'] == 1, d
    assert checked(res, 'all ten tabs show the same list')['ok']


def test_leader_tab_closes(server, node):
    """3b. The leader tab closes: another takes over the stream and resumes by
    id; nothing lost or twice; still one stream."""
    res, _ = run_scenario(server, node, 'handoff')
    d = res['data']
    assert len(d['new_leader']) == 1, d
    assert checked(res, 'server back to one stream for the browser')['ok']


def test_graceful_restart(server, node):
    """4. apache2 -k graceful with two browsers open while a third party posts
    (before, during, right after the restart, and once the pages are back):
    #presence goes red then green, each page ends with each message once."""
    posted = []
    timing = {}

    def on_event(ev):
        if ev['event'] == 'ready':
            t0 = timing['t0'] = time.monotonic()
            timing['old_children'] = server.children()
            ids = [server.post_msg('third', f'before graceful {i}')[0] for i in range(2)]
            gen = server.generation()
            server.graceful(wait=False)
            timing['graceful_sent'] = time.monotonic() - t0
            ids += [server.post_msg('third', f'during graceful {i}')[0] for i in range(3)]
            timing['during_posted'] = time.monotonic() - t0
            new_gen = env.wait_until(lambda: server.generation() != gen, 20, 0.1)
            timing['new_generation'] = time.monotonic() - t0
            assert new_gen, 'no new generation after graceful\n' + server.errlog_tail()
            ids += [server.post_msg('third', f'after graceful {i}')[0] for i in range(3)]
            timing['after_posted'] = time.monotonic() - t0
        else:
            assert ev['event'] == 'reconnected', ev
            timing['reconnected'] = time.monotonic() - timing['t0']
            # the old generation is gone, and each browser holds exactly one stream
            old = set(timing.pop('old_children'))
            timing['old_children_gone'] = bool(
                env.wait_until(lambda: not (set(server.children()) & old), 20, 0.2))
            timing['subscribers'] = server.wait_subscribers(2, 10)
            ids = [server.post_msg('third', f'after reconnect {i}')[0] for i in range(2)]
        posted.extend(ids)
        return {'ids': ids}

    res, _ = run_scenario(server, node, 'graceful', on_event=on_event)
    timing.pop('t0', None)
    print('graceful timing (s):', json.dumps(timing), 'posted:', posted)
    print('graceful data:', json.dumps(res['data'], ensure_ascii=False))
    assert len(posted) == 10 and posted == sorted(posted), posted
    assert timing['old_children_gone'], timing
    assert timing['subscribers'] == 2, f'{timing} {server.h2chat_status()}'
    d = res['data']
    assert d['leaders'] == [True, False, True], d
    for i in (0, 1, 2):
        seq = d[f'presence_{i}']
        down = seq.index('disconnected:🔴')
        assert 'connected:🟢' in seq[down + 1:], seq
        assert seq[-1] == 'connected:🟢', seq
        assert d[f'ids_{i}'] == posted, (i, d[f'ids_{i}'], posted)


def test_composer(server, node):
    """6. Enter sends, Shift+Enter adds a line, Send disabled while the text is
    empty, a 413 shows in #error."""
    res, _ = run_scenario(server, node, 'composer')
    assert checked(res, 'oversized POST -> 413')['ok']
    assert '4096' in res['data']['error_text'], res['data']
    assert checked(res, 'Shift+Enter adds a newline, sends nothing')['ok']
    assert checked(res, 'Enter sends (201)')['ok']
    assert server.h2chat_status()['H2ChatRefusedTooLarge'] >= 1
