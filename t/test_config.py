"""Bad directive values are configuration errors: `apache2 -t` fails and
names the directive; good values pass."""

import pytest

import h2chat_env as env

BAD = [
    ('H2ChatHistory 0', 'H2ChatHistory'),
    ('H2ChatHistory lots', 'H2ChatHistory'),
    ('H2ChatHistory 99999999999', 'H2ChatHistory'),
    ('H2ChatMaxSubscribers -1', 'H2ChatMaxSubscribers'),
    ('H2ChatMaxSubscribersPerAddress 0', 'H2ChatMaxSubscribersPerAddress'),
    ('H2ChatMaxSubscribersPerAddress many', 'H2ChatMaxSubscribersPerAddress'),
    ('<VirtualHost *:80>\n H2ChatMaxSubscribersPerAddress 5\n</VirtualHost>',
     'H2ChatMaxSubscribersPerAddress'),
    ('<Location /msgs>\n H2ChatMaxSubscribersPerAddress 6\n</Location>',
     'H2ChatMaxSubscribersPerAddress'),
    ('<Location /msgs>\n H2ChatSnapshot -3\n</Location>', 'H2ChatSnapshot'),
    ('<Location /msgs>\n H2ChatMaxMessageBytes 4k\n</Location>', 'H2ChatMaxMessageBytes'),
    ('<Location /msgs>\n H2ChatMaxMessageBytes 2\n</Location>', 'H2ChatMaxMessageBytes'),
    ('<Location /msgs>\n H2ChatHeartbeat 0\n</Location>', 'H2ChatHeartbeat'),
    ('<Location /msgs>\n H2ChatHeartbeat 1.5\n</Location>', 'H2ChatHeartbeat'),
    ('<Location /msgs>\n H2Chat maybe\n</Location>', 'H2Chat'),
    ('<Location /msgs>\n H2ChatRateLimit fast\n</Location>', 'H2ChatRateLimit'),
    ('<Location /msgs>\n H2ChatRateLimit 5 0\n</Location>', 'H2ChatRateLimit'),
    ('<Location /msgs>\n H2ChatRateLimit -2\n</Location>', 'H2ChatRateLimit'),
    ('<Location /msgs>\n H2ChatAllowOrigin evil\n</Location>', 'H2ChatAllowOrigin'),
    ('<VirtualHost *:80>\n H2ChatHistory 10\n</VirtualHost>', 'H2ChatHistory'),
    ('H2ChatJournalSync sometimes', 'H2ChatJournalSync'),
    ('H2ChatStore disk', 'H2ChatStore'),
    ('H2ChatRedis http://127.0.0.1:6379', 'H2ChatRedis'),
    ('H2ChatRedis redis://127.0.0.1:99999', 'H2ChatRedis'),
    ('H2ChatRedis redis://127.0.0.1:6379/x', 'H2ChatRedis'),
    ('<VirtualHost *:80>\n H2ChatJournal /tmp/j\n</VirtualHost>', 'H2ChatJournal'),
    ('H2ChatDirectPenalty 0', 'H2ChatDirectPenalty'),
    ('H2ChatDirectRequests maybe', 'H2ChatDirectRequests'),
    ('<Location /msgs>\n H2ChatDirectRequests none\n</Location>', 'H2ChatDirectRequests'),
    ('H2ChatLatencyHistogram maybe', 'H2ChatLatencyHistogram'),
    ('<VirtualHost *:80>\n H2ChatLatencyHistogram Off\n</VirtualHost>', 'H2ChatLatencyHistogram'),
    ('H2ChatDirectPenalty 10s', 'H2ChatDirectPenalty'),
    ('H2ChatDirectPenalty 86401', 'H2ChatDirectPenalty'),
    ('<VirtualHost *:80>\n H2ChatDirectPenalty 5\n</VirtualHost>', 'H2ChatDirectPenalty'),
    ('H2ChatReconnectSpread 0', 'H2ChatReconnectSpread'),
    ('H2ChatReconnectSpread 301', 'H2ChatReconnectSpread'),
    ('H2ChatReconnectSpread -1', 'H2ChatReconnectSpread'),
    ('H2ChatReconnectSpread 2.5', 'H2ChatReconnectSpread'),
    ('H2ChatReconnectSpread 5s', 'H2ChatReconnectSpread'),
    ('H2ChatReconnectSpread soon', 'H2ChatReconnectSpread'),
    ('H2ChatReconnectSpread auto 5', 'H2ChatReconnectSpread'),
    ('<VirtualHost *:80>\n H2ChatReconnectSpread 5\n</VirtualHost>', 'H2ChatReconnectSpread'),
    ('<Location /msgs>\n H2ChatReconnectSpread off\n</Location>', 'H2ChatReconnectSpread'),
]

GOOD = """
H2ChatHistory 20
H2ChatMaxSubscribers 7
H2ChatMaxSubscribersPerAddress 3
H2ChatDirectPenalty off
H2ChatDirectRequests none
H2ChatLatencyHistogram Off
H2ChatReconnectSpread 300
H2ChatJournal @ROOT@/chat.journal
H2ChatJournalSync always
H2ChatStore shm
H2ChatRedis redis://127.0.0.1:6379/2 chat
<Location /msgs>
    H2ChatSnapshot 0
    H2ChatMaxMessageBytes 65536
    H2ChatHeartbeat 3600
    H2ChatRateLimit 0.5 4
    H2ChatAllowOrigin https://a.example http://b.example:8080
</Location>
<Location /other/msgs>
    H2Chat On
    H2ChatRateLimit off
    H2ChatAllowOrigin *
</Location>
"""


def configtest(cert, name, extra):
    srv = env.H2ChatServer(name, extra, cert=cert)
    srv.write_conf()
    return srv.configtest()


@pytest.mark.parametrize('line,directive', BAD, ids=[b[0].split('\n')[-2 if '\n' in b[0] else 0].strip() for b in BAD])
def test_bad_value_fails_configtest(cert, line, directive):
    rc, out = configtest(cert, 'config_bad', line)
    assert rc != 0, f'{line!r} passed configtest: {out}'
    assert directive in out, out


def test_good_values_pass(cert):
    rc, out = configtest(cert, 'config_good', GOOD)
    assert rc == 0, out


@pytest.mark.parametrize('value', ['auto', 'off', '1', '300', 'AUTO', 'Off'])
def test_reconnect_spread_values_pass(cert, value):
    rc, out = configtest(cert, 'config_spread', f'H2ChatReconnectSpread {value}')
    assert rc == 0, out


def test_reconnect_spread_message_names_the_range(cert):
    rc, out = configtest(cert, 'config_spread', 'H2ChatReconnectSpread 301')
    assert rc != 0 and 'auto, off or a whole number of seconds from 1 to 300' in out, out
