"""mod_remoteip on the TLS fast path (#15): the address httpd's check
settles on (X-Forwarded-For from a trusted proxy) is the one the loop's
per-address cap, rate limit and log lines count by, as on the handler's
path."""

import re

import h2chat_env as env

MODS = '/usr/lib/apache2/modules'
EXTRA_CONF = f"""
LoadModule remoteip_module {MODS}/mod_remoteip.so
RemoteIPHeader X-Forwarded-For
RemoteIPInternalProxy 127.0.0.1
H2ChatMaxSubscribersPerAddress 2
LogFormat "%a %h \\"%r\\" %>s" withclient
CustomLog "@ROOT@/client-access.log" withclient
""" + env.fast_vhost('/msgs')


def held(server, address):
    return server.subscriber('h2tls', port=server.fast_port,
                             extra_headers={'X-Forwarded-For': address})


def test_the_cap_per_address_follows_the_forwarded_address(server):
    a = [held(server, '10.0.0.1') for _ in range(2)]
    assert all(s.wait_headers() == 200 for s in a), [s.summary() for s in a]
    over = held(server, '10.0.0.1')
    assert over.wait_end(10) and over.status == 503, over.summary()
    other = held(server, '10.0.0.2')  # the same connection address, another client
    assert other.wait_headers() == 200, other.summary()
    for s in a + [other]:
        s.close()
    assert server.wait_subscribers(0, timeout=10) == 0
    # the streams' log lines name the forwarded address (%a; %h too, as
    # mod_remoteip makes it), the refused one with its 503
    log = server.root / 'client-access.log'
    lines = lambda: re.findall(r'^(10\.0\.0\.\d) \S+ "GET /msgs HTTP/2\.0" (\d+)$',
                               log.read_text(), re.M)
    assert env.wait_until(lambda: sorted(lines()) == [('10.0.0.1', '200'), ('10.0.0.1', '200'),
                                                      ('10.0.0.1', '503'),
                                                      ('10.0.0.2', '200')], 5), log.read_text()
