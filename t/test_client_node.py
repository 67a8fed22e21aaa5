"""htdocs/h2chat-client.js in Node (Debian's node, no browser): t/client/node-test.mjs
against this module's Apache over plain HTTP/1.1 (Node's fetch): subscribe,
receive, publish; resume with since= after a graceful restart ends the stream
(with a snapshot of 2, so a resume without since= would lose messages); a
graceful restart with `H2ChatReconnectSpread 2`: the stream's last line is the
reconnect hint, the client waits exactly that long (not its backoff) and what
was posted meanwhile arrives exactly once; publish
errors with the server's status and JSON message (400, 413, 429 with
Retry-After, unreachable); a resume id ahead of the server (reset, then the
snapshot in a new epoch); against a fake server of the script's own: the
heartbeat watchdog, duplicates dropped, gap and reset lines, a line that is
not JSON, a reconnect hint (waited once, then the backoff again; a stream of
only a hint is no failure), and a 503's Retry-After. The node process must exit by
itself after its result: close() leaves nothing running.
"""

import json
import os
import subprocess

import pytest

import h2chat_env as env

CLIENT_DIR = env.REPO / 't' / 'client'
TIMEOUT = 120

EXTRA_CONF = """
# the hinted restart: each stream's hint in [0, 2 s)
H2ChatReconnectSpread 2
<Location /msgs>
    H2ChatSnapshot 2
</Location>
<Location /rooms>
    H2Chat On
    H2ChatRooms On
    H2ChatSnapshot 3
    H2ChatAnonymousDelete On
    H2ChatPresence members
</Location>
<Location /limited>
    H2Chat On
    H2ChatRateLimit 0.2 1
</Location>
"""


@pytest.fixture(scope='module')
def node():
    return env.node_binary(18, 'the client library tests')


def test_client_in_node(server, node):
    environ = dict(os.environ, H2CHAT_URL=f'http://127.0.0.1:{server.port}')
    proc = subprocess.Popen([node, 'node-test.mjs'], cwd=CLIENT_DIR, env=environ,
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, encoding='utf-8')
    result, other, exited = None, [], None
    try:
        for line in proc.stdout:
            try:
                obj = json.loads(line)
            except ValueError:
                other.append(line)
                continue
            if obj.get('event') == 'graceful':
                server.graceful(wait=True)
                proc.stdin.write('{}\n')
                proc.stdin.flush()
            elif obj.get('scenario') == 'node':
                result = obj
                proc.stdin.close()
                try:   # nothing may keep node alive after the client's close()
                    exited = proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    exited = None
                break
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        err = proc.stderr.read()
    diag = f'stdout: {"".join(other)[-2000:]}\nstderr: {err[-3000:]}\n{server.errlog_tail(15)}'
    assert result is not None, f'node-test.mjs printed no result\n{diag}'
    print('node client checks:', [(c['name'], c['ok']) for c in result['checks']])
    print('node client data:', json.dumps(result['data'])[:3000])
    failed = [c for c in result['checks'] if not c['ok']]
    assert result['ok'], ('node client test failed\n  error: ' + str(result['error']) + '\n' +
                          '\n'.join(f'  - {c["name"]}: {json.dumps(c["detail"])[:600]}'
                                    for c in failed) +
                          f'\n  data: {json.dumps(result["data"])[:1500]}\n{diag}')
    assert exited == 0, f'node did not exit by itself after close() (exit={exited})\n{diag}'
    assert len(result['checks']) >= 20, [c['name'] for c in result['checks']]
