"""H2ChatDirect over TLS with mod_ssl's own configuration (#15, acceptance
3): two name-based virtual hosts with two certificates on one port, only
one of them the fast path (SNI decides: the other's connections are
mod_http2's); `SSLVerifyClient require` on the fast host: no client
certificate, no connection; with one, the loop serves it and the access
log has the client's DN."""

import json
import re
import subprocess

import h2chat_env as env

FAST, OTHER = 'fast.test', 'other.test'

EXTRA_CONF = """
H2ChatMaxSubscribersPerAddress off
AsyncRequestWorkerFactor 50
LogFormat "%h %u \\"%r\\" %>s dn=%{SSL_CLIENT_S_DN}x" withdn
Listen 127.0.0.1:@FASTPORT@
<VirtualHost 127.0.0.1:@FASTPORT@>
    ServerName fast.test
    SSLEngine on
    SSLCertificateFile "@ROOT@/pki/fast.crt"
    SSLCertificateKeyFile "@ROOT@/pki/fast.key"
    SSLCACertificateFile "@ROOT@/pki/ca.crt"
    SSLVerifyClient require
    Protocols h2 http/1.1
    H2ChatDirect /msgs
    CustomLog "@ROOT@/fast-access.log" withdn
</VirtualHost>
<VirtualHost 127.0.0.1:@FASTPORT@>
    ServerName other.test
    SSLEngine on
    SSLCertificateFile "@ROOT@/pki/other.crt"
    SSLCertificateKeyFile "@ROOT@/pki/other.key"
    Protocols h2 http/1.1
</VirtualHost>
"""


def openssl(*args):
    subprocess.run(['openssl', *args], check=True, capture_output=True, timeout=60)


def SETUP(server):
    """A CA; server certificates for both names and a client certificate,
    all signed by it."""
    d = server.root / 'pki'
    d.mkdir()
    openssl('req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', str(d / 'ca.key'),
            '-out', str(d / 'ca.crt'), '-days', '2', '-subj', '/CN=h2chat test CA')
    for name, cn in (('fast', FAST), ('other', OTHER), ('client', 'ann')):
        openssl('req', '-new', '-newkey', 'rsa:2048', '-nodes', '-keyout',
                str(d / f'{name}.key'), '-out', str(d / f'{name}.csr'), '-subj', f'/CN={cn}')
        ext = d / f'{name}.ext'
        ext.write_text(f'subjectAltName=DNS:{cn}\n' if name != 'client'
                       else 'extendedKeyUsage=clientAuth\n')
        openssl('x509', '-req', '-in', str(d / f'{name}.csr'), '-CA', str(d / 'ca.crt'),
                '-CAkey', str(d / 'ca.key'), '-CAcreateserial', '-days', '2', '-extfile',
                str(ext), '-out', str(d / f'{name}.crt'))
    for f in d.iterdir():
        f.chmod(0o644)


def curl_args(server, host, path, cert):
    d = server.root / 'pki'
    args = [env.CURL, '-s', '-i', '--http2', '--cacert', str(d / 'ca.crt'),
            '--resolve', f'{host}:{server.fast_port}:127.0.0.1']
    if cert:
        args += ['--cert', str(d / 'client.crt'), '--key', str(d / 'client.key')]
    return args + [f'https://{host}:{server.fast_port}{path}']


def curl(server, host, path='/msgs?presence', cert=True):
    return subprocess.run(curl_args(server, host, path, cert) + ['--max-time', '10'],
                          capture_output=True, timeout=20)


def hold(server, host, cert=True):
    """A held GET /msgs in its own curl: (process, where it counts)."""
    proc = subprocess.Popen(curl_args(server, host, '/msgs', cert) + ['-N'],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    ok = env.wait_until(lambda: server.h2chat_status()['H2ChatSubscribers'] >= 1, 10)
    st = server.h2chat_status()
    return proc, (ok, st['H2ChatDirectSubscribers'])


def status_of(res):
    m = re.match(rb'HTTP/(\S+) (\d{3})', res.stdout)
    return (m.group(1).decode(), int(m.group(2))) if m else (None, res.returncode)


def test_sni_picks_the_fast_host_only(server):
    # each name's own certificate, verified against the CA by curl
    assert status_of(curl(server, FAST)) == ('2', 200)
    assert status_of(curl(server, OTHER, cert=False)) == ('2', 200)
    for host, cert, direct in ((FAST, True, 1), (OTHER, False, 0)):
        proc, (held, loops) = hold(server, host, cert)
        try:
            assert held and loops == direct, (host, server.h2chat_status())
        finally:
            proc.kill()
            proc.wait()
        assert server.wait_subscribers(0, timeout=10) == 0


def test_client_certificate_required(server):
    res = curl(server, FAST, cert=False)
    assert res.returncode != 0 and status_of(res)[0] is None, res  # no TLS, no answer
    r = curl(server, FAST, '/msgs?presence')
    assert status_of(r) == ('2', 200), r.stdout[:300]
    assert json.loads(r.stdout.split(b'\r\n\r\n', 1)[1])['count'] >= 0
    # httpd's processing ran for it on the loop's thread: mod_ssl's variables
    # of the taken connection are in its access log line
    assert env.wait_until(
        lambda: '"GET /msgs?presence HTTP/2.0" 200 dn=CN=ann' in
        (server.root / 'fast-access.log').read_text(), 5), \
        (server.root / 'fast-access.log').read_text()
