#!/usr/bin/env bash
# The local chat server: build/run/ gets the config, a self-signed
# certificate (the seed's openssl steps) and the logs; Apache runs in the
# foreground until Ctrl-C. Never touches the system's Apache configuration.
# PORT (TLS, default 8443), FAST_PORT (the TLS fast path, default 8444) and
# HTTP_PORT (h2c, default 8080) override.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
run="$root/build/run"
PORT=${PORT:-8443}
HTTP_PORT=${HTTP_PORT:-8080}
FAST_PORT=${FAST_PORT:-8444}
"$root/tools/deps.sh" run
mkdir -p "$run"
if [ ! -s "$run/server.crt" ]; then
    # the seed's steps: key + CSR, then a self-signed certificate
    openssl req -new -newkey rsa:2048 -nodes -keyout "$run/key.pem" -out "$run/csr.pem" \
        -subj "/CN=localhost" 2>/dev/null
    printf 'subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n' > "$run/san.ext"
    openssl x509 -req -days 365 -in "$run/csr.pem" -signkey "$run/key.pem" \
        -extfile "$run/san.ext" -out "$run/server.crt" 2>/dev/null
fi
sed -e "s|@ROOT@|$root|g" -e "s|@RUN@|$run|g" -e "s|@PORT@|$PORT|g" \
    -e "s|@HTTP_PORT@|$HTTP_PORT|g" -e "s|@FAST_PORT@|$FAST_PORT|g" \
    "$root/conf/dev.conf.in" > "$run/httpd.conf"
chmod o+rx "$root" "$root/htdocs" 2>/dev/null || true
/usr/sbin/apache2 -t -f "$run/httpd.conf"
echo "mod_h2chat: https://localhost:$PORT/ (h2, HTTP/1.1)  http://localhost:$HTTP_PORT/ (h2c, HTTP/1.1)"
echo "            the page's stream: https://localhost:$FAST_PORT/msgs (H2ChatDirect over TLS)"
echo "            status: http://localhost:$HTTP_PORT/server-status   metrics: /h2chat-metrics   Ctrl-C stops"
exec /usr/sbin/apache2 -f "$run/httpd.conf" -DFOREGROUND
