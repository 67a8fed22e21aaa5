"""A cookie-session login applies on the TLS fast path (#15, acceptance 2,
second half): mod_auth_form + mod_session (cookie) on the chat's location.
The login is a form POST on the main origin (mod_http2), which sets the
session cookie; with it, a held stream and a POST on the fast-path origin
(the module's loop, httpd's checks) are the logged-in user's; without it,
httpd's own 401."""

import json
import re

import h2chat_env as env

MODS = '/usr/lib/apache2/modules'
AUTH = """
    AuthType form
    AuthName chat
    AuthFormProvider file
    AuthUserFile "@ROOT@/htpasswd"
    Session On
    SessionCookieName session path=/;HttpOnly;Secure
"""
EXTRA_CONF = f"""
LoadModule request_module {MODS}/mod_request.so
LoadModule session_module {MODS}/mod_session.so
LoadModule session_cookie_module {MODS}/mod_session_cookie.so
LoadModule auth_form_module {MODS}/mod_auth_form.so
H2ChatMaxSubscribersPerAddress off
""" + env.fast_vhost("/msgs") + f"""
<Location /login>
    SetHandler form-login-handler
    AuthFormLoginSuccessLocation /index.html
{AUTH}
</Location>
<Location /msgs>
    H2ChatSnapshot 0
{AUTH}
    Require valid-user
</Location>
"""


def SETUP(server):
    env.write_htpasswd(server, {'ann': 'secret words'})


def login(server):
    r = env.curl_request(server.port, server.tls_port, 'h2tls', 'POST', '/login',
                         b'httpd_username=ann&httpd_password=secret+words',
                         {'Content-Type': 'application/x-www-form-urlencoded'})
    assert r.status in (200, 302, 303), r
    cookie = r.headers.get('set-cookie', '')
    m = re.match(r'(session=[^;]*)', cookie)
    assert m and 'ann' in m.group(1), r.headers
    return m.group(1)


def test_session_cookie_applies_on_the_fast_path(server):
    r = env.curl_request(server.port, server.fast_port, 'h2tls', 'GET', '/msgs?presence')
    assert r.status == 401, r  # httpd's answer, from the loop
    cookie = login(server)
    sub = server.subscriber('h2tls', port=server.fast_port,
                            extra_headers={'Cookie': cookie})
    assert sub.wait_headers() == 200, sub.summary()
    assert env.wait_until(
        lambda: server.h2chat_status()['H2ChatDirectSubscribers'] == 1, 5)
    r = env.curl_request(server.port, server.fast_port, 'h2tls', 'POST', '/msgs',
                         {'user': 'mallory', 'text': 'signed in'},
                         {'Content-Type': 'application/json', 'Cookie': cookie})
    assert r.status == 201, r
    nid = json.loads(r.body)['id']
    assert sub.wait_event(lambda e: e.get('id') == nid, 5), sub.summary()
    assert [m['user'] for m in sub.messages if m['id'] == nid] == ['ann']
    sub.close()
