#!/usr/bin/env bash
# Installs the Debian packages a target needs, only those missing (fast when
# all are there). Usage: tools/deps.sh build|test|run|bench|fuzz|lint|deb|debtest
set -euo pipefail
build="apache2 apache2-dev libjansson-dev libapr1-dev libaprutil1-dev libhiredis-dev libnghttp2-dev gcc make"
test="$build python3 python3-pytest python3-h2 curl openssl chromium fonts-noto-color-emoji redis-server
      prometheus python3-prometheus-client"
run="$build openssl"
fuzz="$build clang libclang-rt-14-dev"
lint="clang-format"
# the Debian package (debian/control's Build-Depends) and its test
deb="$build debhelper dpkg-dev"
debtest="$deb lintian curl openssl"
bench="$build python3 curl redis-server libnghttp2-dev libssl-dev nghttp2-client nginx libnginx-mod-nchan gnuplot-nox"
# prometheus, python3-prometheus-client: t/test_metrics.py starts its own
# prometheus (temp storage, a loopback port) and parses the exposition; the
# package's system service, if the init system starts it, is not used.
want=${!1:?usage: tools/deps.sh build|test|run|bench|fuzz|lint|deb|debtest}
# Node.js for the browser tests (>= 20, playwright-core), the client library's
# Node test (>= 18) and the seed peer: any node on PATH
# will do (it may come from another repository than Debian's, with npm in it).
if [ "$1" = test ] || [ "$1" = bench ]; then
    command -v node >/dev/null && command -v npm >/dev/null || want="$want nodejs npm"
fi
missing=()
for p in $want; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
[ ${#missing[@]} -eq 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "missing Debian packages: ${missing[*]} (run as root, or apt-get install them)" >&2
    exit 1
fi
echo "installing: ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
