#!/usr/bin/env bash
# The Debian package in the SYSTEM Apache, as an admin would use it (root, a
# Debian 12 machine; CI runs it after the suite): build the .deb (make deb),
# show lintian's verdict, apt-get install it, a2enmod h2chat (http2 must come
# with it), a2enconf h2chat, a TLS vhost with a certificate made here, then
# apache2ctl configtest/start; subscribe over h2 (TLS) and HTTP/1.1, POST,
# both get it; the page at /h2chat/; apache2ctl graceful, still serving;
# stop (waiting for every process by PID); apt-get purge; nothing of the
# package left. Everything the script set up is undone at exit, whatever
# happened: /etc/apache2 and /var/lib/apache2 are as they were.
#
# Loopback only, ports HTTPS_PORT (18443) and HTTP_PORT (18080): Debian's
# ports.conf (Listen 80/443) is set aside while the test runs. A system
# Apache that runs (apt starts it on most machines) is stopped for the test
# and started again at the end. It refuses to run when the package is
# installed already.
# Prints one line per check and a PASS/FAIL summary; exits 1 on any failure.
set -uo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root" || exit 2
export DEBIAN_FRONTEND=noninteractive
HTTPS_PORT=${HTTPS_PORT:-18443}
HTTP_PORT=${HTTP_PORT:-18080}
pkg=libapache2-mod-h2chat
site=h2chat-deb-test
etc=/etc/apache2
varlib=/var/lib/apache2
pidfile=$(set +u && . $etc/envvars && echo "$APACHE_PID_FILE")
[ -n "$pidfile" ] || { echo "deb-test: no APACHE_PID_FILE in $etc/envvars" >&2; exit 2; }

results=()
fails=0
pass() { echo "ok   - $*"; results+=("ok   - $*"); }
fail() { echo "FAIL - $*"; results+=("FAIL - $*"); fails=$((fails + 1)); }
check() { # check DESCRIPTION COMMAND...: one line, ok or FAIL
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
die() { echo "deb-test: $*" >&2; exit 2; }
enabled_list() { (cd $etc && find mods-enabled conf-enabled sites-enabled -mindepth 1 | sort); }
state_list() { find $varlib | sort; } # a2enmod's markers (enabled_by_admin...)
apache_pid() { [ -s "$pidfile" ] && kill -0 "$(cat "$pidfile")" 2>/dev/null && cat "$pidfile"; }
pkg_installed() { dpkg-query -W -f='${Status}' $pkg 2>/dev/null | grep -q 'ok installed'; }
port_taken() { [ -n "$(ss -ltnH "( sport = :$1 )")" ]; }

# --- refuse to disturb anything that is not ours ---------------------------
[ "$(id -u)" = 0 ] || die "needs root (installs a package into the system Apache)"
[ -d $etc/mods-available ] || die "no $etc: the system Apache is not installed"
pkg_installed && die "$pkg is installed already: this test installs and purges it"
for p in "$HTTPS_PORT" "$HTTP_PORT"; do port_taken "$p" && die "port $p is taken"; done

work=$(mktemp -d /tmp/h2chat-deb-test.XXXXXX)
enabled_before=$(enabled_list)
state_before=$(state_list)
ports_before=$(sha256sum < $etc/ports.conf)
cp -a $etc/ports.conf "$work/ports.conf"
cp -a $varlib "$work/varlib"
sub_pids=()
started_pid=
was_running=

# Undo, in reverse, whatever got set up; safe to run at any point.
cleanup() {
    local p
    for p in "${sub_pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    if p=$(apache_pid); then
        apache2ctl stop >/dev/null 2>&1 || kill "$p"
        for _ in $(seq 100); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    fi
    if ss -ltnH | grep -qE ":($HTTPS_PORT|$HTTP_PORT) "; then
        echo "deb-test: WARNING: still listening on our ports:" >&2
        ss -ltnpH | grep -E ":($HTTPS_PORT|$HTTP_PORT) " >&2
    fi
    pkg_installed && apt-get purge -y -qq $pkg >/dev/null 2>&1
    rm -f $etc/sites-enabled/$site.conf $etc/sites-available/$site.conf
    # modules and confs the test (or a2enmod's dependencies) enabled
    comm -13 <(echo "$enabled_before") <(enabled_list) | while read -r f; do
        f=${f##*/}
        case $f in
        *.load) a2dismod -q -f "${f%.load}" >/dev/null 2>&1 ;;
        esac
    done
    comm -13 <(echo "$enabled_before") <(enabled_list) | while read -r f; do
        case $f in
        conf-enabled/*.conf) f=${f##*/} && a2disconf -q "${f%.conf}" >/dev/null 2>&1 ;;
        sites-enabled/*.conf) f=${f##*/} && a2dissite -q "${f%.conf}" >/dev/null 2>&1 ;;
        esac
    done
    cp -a "$work/ports.conf" $etc/ports.conf
    rm -rf $varlib && cp -a "$work/varlib" $varlib
    rm -rf "$work"
    if [ -n "$was_running" ] && [ -z "$(apache_pid)" ]; then
        echo "deb-test: starting the system Apache again (it ran before the test)"
        apache2ctl start
    fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# stop_apache PID: apache2ctl stop, then wait until the parent and its
# children are gone; prints their PIDs, fails after 20 s
stop_apache() {
    local procs alive p
    procs=("$1" $(ps -o pid= --ppid "$1"))
    apache2ctl stop
    for _ in $(seq 200); do
        alive=()
        for p in "${procs[@]}"; do kill -0 "$p" 2>/dev/null && alive+=("$p"); done
        [ ${#alive[@]} = 0 ] && break
        sleep 0.1
    done
    echo "${#procs[@]} processes (${procs[*]})"
    [ ${#alive[@]} = 0 ]
}
if was_running=$(apache_pid); then
    echo "== the system Apache runs (pid $was_running): stopped for the test"
    stop_apache "$was_running" >/dev/null || die "could not stop the system Apache"
fi

# --- build and lintian -----------------------------------------------------
echo "== deps, build"
tools/deps.sh debtest || die "could not install the test's Debian packages"
make -f Makefile.apxs deb > "$work/build.log" 2>&1
rc=$?
[ $rc = 0 ] || tail -40 "$work/build.log"
check "make -f Makefile.apxs deb" [ $rc = 0 ]
deb=$(ls build/deb/${pkg}_*_*.deb 2>/dev/null | head -1)
changes=$(ls build/deb/${pkg}_*_*.changes 2>/dev/null | head -1)
check "build/deb/ holds the .deb and .changes" test -n "$deb" -a -n "$changes"
[ -n "$deb" ] || { echo "FAIL: no package to test"; exit 1; }

echo "== lintian (pedantic, info, experimental; overrides shown as O:)"
# (the verdict from the tags: with --show-overrides, --fail-on counts the
# overridden ones too)
lintian --pedantic -I -E --show-overrides --fail-on none "$changes" 2>&1 |
    grep -v '^running with root privileges' | tee "$work/lintian.out"
rc=${PIPESTATUS[0]}
ew=$(grep -c '^[EW]:' "$work/lintian.out")
echo "lintian: exit $rc; $ew errors/warnings," \
    "$(grep -c '^[IPX]:' "$work/lintian.out") info/pedantic/experimental," \
    "$(grep -c '^O:' "$work/lintian.out") overridden (each justified in" \
    "debian/$pkg.lintian-overrides)"
check "lintian: ran, no error or warning" test "$rc" = 0 -a "$ew" = 0

dpkg-deb -c "$deb" | awk '{print $NF}' | sed 's|^\./|/|' > "$work/deb.contents"
for f in /usr/lib/apache2/modules/mod_h2chat.so $etc/mods-available/h2chat.load \
    $etc/mods-available/h2chat.conf $etc/conf-available/h2chat.conf \
    /usr/share/h2chat/index.html /usr/share/h2chat/chat.js /usr/share/h2chat/chat.css \
    /usr/share/h2chat/h2chat-client.js \
    /usr/share/doc/$pkg/README.md.gz /usr/share/doc/$pkg/RELIABILITY.md.gz \
    /usr/share/doc/$pkg/directives.md.gz /usr/share/doc/$pkg/protocol.md.gz \
    /usr/share/doc/$pkg/operations.md.gz /usr/share/doc/$pkg/design.md.gz \
    /usr/share/doc/$pkg/copyright; do
    grep -qx "$f" "$work/deb.contents" || fail "the .deb has $f"
done
pass "the .deb's file list (module, .load/.conf, conf, page, docs)"

# --- install, enable --------------------------------------------------------
echo "== install $deb"
apt-get install -y -qq "./$deb" > "$work/apt.log" 2>&1
rc=$?
[ $rc = 0 ] || cat "$work/apt.log"
check "apt-get install -y ./$deb" [ $rc = 0 ]
pkg_installed || { echo "FAIL: package not installed"; exit 1; }
dpkg -L $pkg > "$work/files.list"
check "installed, not enabled yet (a2enmod is the admin's step)" \
    test ! -e $etc/mods-enabled/h2chat.load -a ! -e $etc/conf-enabled/h2chat.conf
check "a2enmod h2chat" a2enmod -q h2chat
check "  h2chat enabled" a2query -q -m h2chat
check "  http2 enabled with it (# Depends: http2)" a2query -q -m http2
check "a2enconf h2chat" a2enconf -q h2chat
check "  conf h2chat enabled" a2query -q -c h2chat
check "MPM is event" [ "$(a2query -M)" = event ]

# --- TLS vhost and ports of our own -----------------------------------------
openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=localhost \
    -addext subjectAltName=DNS:localhost,IP:127.0.0.1 \
    -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null
check "self-signed certificate" [ -s "$work/cert.pem" ]
chmod 755 "$work"
cat > $etc/ports.conf <<EOF
# set aside by mod_h2chat's tools/deb-test.sh while it runs (loopback only)
Listen 127.0.0.1:$HTTP_PORT
Listen 127.0.0.1:$HTTPS_PORT https
EOF
cat > $etc/sites-available/$site.conf <<EOF
# mod_h2chat's tools/deb-test.sh (removed when it ends)
<VirtualHost 127.0.0.1:$HTTPS_PORT>
    ServerName localhost
    Protocols h2 http/1.1
    SSLEngine on
    SSLCertificateFile $work/cert.pem
    SSLCertificateKeyFile $work/key.pem
    ErrorLog $work/error.log
    CustomLog $work/access.log combined
</VirtualHost>
<VirtualHost 127.0.0.1:$HTTP_PORT>
    ServerName localhost
    Protocols h2c http/1.1
    ErrorLog $work/error.log
    CustomLog $work/access.log combined
</VirtualHost>
EOF
check "a2enmod ssl" a2enmod -q ssl
check "a2ensite $site" a2ensite -q $site
apache2ctl configtest > "$work/configtest.out" 2>&1
rc=$?
cat "$work/configtest.out"
check "apache2ctl configtest" [ $rc = 0 ]

# --- start and talk to it ----------------------------------------------------
errlog_lines=$(wc -l < /var/log/apache2/error.log 2>/dev/null || echo 0)
apache2ctl start
for _ in $(seq 100); do
    curl -s -o /dev/null "http://127.0.0.1:$HTTP_PORT/h2chat/" && break
    sleep 0.1
done
started_pid=$(apache_pid)
check "apache2ctl start (pid ${started_pid:-none})" [ -n "$started_pid" ]

https=https://127.0.0.1:$HTTPS_PORT
http=http://127.0.0.1:$HTTP_PORT
tag=$$-$RANDOM

# subscribe NAME CURL-ARGS...: a held GET of the endpoint in the background;
# its headers go to $work/NAME.h, its lines to $work/NAME.out
subscribe() {
    local name=$1
    shift
    curl -sS -N --max-time 60 -D "$work/$name.h" -o "$work/$name.out" "$@" &
    sub_pids+=($!)
}
# wait_for FILE PATTERN: up to 10 s
wait_for() {
    for _ in $(seq 100); do
        grep -q -- "$2" "$1" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
post() { # post TEXT: prints the status code
    curl -sS -k --http2 -o "$work/post.out" -w '%{http_code}' \
        -H 'Content-Type: application/json' \
        --data "{\"user\":\"deb-test\",\"text\":\"$1\"}" "$https/h2chat/msgs"
}
# round N: two subscribers (h2 over TLS, HTTP/1.1), one POST, both get it
round() {
    local n=$1 code
    subscribe h2-$n --http2 -k "$https/h2chat/msgs"
    subscribe h1-$n --http1.1 "$http/h2chat/msgs"
    check "[$n] subscriber over h2 (TLS) held" wait_for "$work/h2-$n.h" '^HTTP/2 200'
    check "[$n] subscriber over HTTP/1.1 held" wait_for "$work/h1-$n.h" '^HTTP/1.1 200'
    code=$(post "msg-$n-$tag")
    check "[$n] POST /h2chat/msgs answers 201 (got $code)" [ "$code" = 201 ]
    check "[$n] the h2 subscriber got it" wait_for "$work/h2-$n.out" "\"text\":\"msg-$n-$tag\""
    check "[$n] the HTTP/1.1 subscriber got it" wait_for "$work/h1-$n.out" "\"text\":\"msg-$n-$tag\""
    code=$(curl -sS -k --http2 -o "$work/page-$n.html" -w '%{http_code}' "$https/h2chat/")
    grep -q 'data-endpoint="/h2chat/msgs"' "$work/page-$n.html" 2>/dev/null || code="$code, no endpoint"
    check "[$n] GET /h2chat/ answers the page, endpoint /h2chat/msgs (got $code)" [ "$code" = 200 ]
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$http/h2chat/chat.js")
    check "[$n] GET /h2chat/chat.js answers 200 (got $code)" [ "$code" = 200 ]
    code=$(curl -sS -o /dev/null -w '%{http_code}' "$http/h2chat/h2chat-client.js")
    check "[$n] GET /h2chat/h2chat-client.js answers 200 (got $code)" [ "$code" = 200 ]
}

if [ -n "$started_pid" ]; then
    round 1
    code=$(curl -sS -o /dev/null -w '%{http_code} %{redirect_url}' "$http/h2chat")
    check "GET /h2chat redirects to /h2chat/ (got $code)" [ "$code" = "302 $http/h2chat/" ]

    echo "== apache2ctl graceful"
    apache2ctl graceful
    sleep 2
    check "graceful: same parent pid" [ "$(apache_pid)" = "$started_pid" ]
    round 2
    check "[2] history survived graceful (the new h2 subscriber's snapshot has [1]'s message)" \
        grep -q "\"text\":\"msg-1-$tag\"" "$work/h2-2.out"

    for p in "${sub_pids[@]}"; do kill "$p" 2>/dev/null; done
    wait 2>/dev/null
    sub_pids=()

    echo "== apache2ctl stop"
    gone=$(stop_apache "$started_pid")
    rc=$?
    check "apache2ctl stop: gone, all $gone" [ $rc = 0 ]
fi
if [ $fails != 0 ]; then
    echo "-- $work/error.log, and lines new in /var/log/apache2/error.log:"
    cat "$work/error.log" 2>/dev/null | tail -30
    tail -n +"$((errlog_lines + 1))" /var/log/apache2/error.log 2>/dev/null | tail -30
fi

# --- purge: nothing of the package left ----------------------------------------
echo "== apt-get purge -y $pkg"
apt-get purge -y -qq $pkg > "$work/purge.log" 2>&1
rc=$?
[ $rc = 0 ] || cat "$work/purge.log"
check "apt-get purge -y $pkg" [ $rc = 0 ]
check "dpkg knows nothing of $pkg" [ -z "$(dpkg-query -W -f='${Status}' $pkg 2>/dev/null)" ]
left=()
while read -r f; do
    [ -d "$f" ] && [ ! -L "$f" ] && continue # shared directories (/etc, /usr/share...)
    [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
done < "$work/files.list"
for f in /usr/share/h2chat /usr/share/doc/$pkg \
    $etc/mods-enabled/h2chat.load $etc/mods-enabled/h2chat.conf $etc/conf-enabled/h2chat.conf; do
    [ -e "$f" ] || [ -L "$f" ] && left+=("$f")
done
# the package's links and a2enmod's markers are named h2chat(.load|.conf)
left+=($(find $etc/*-enabled $varlib \( -name h2chat -o -name 'h2chat.*' \) 2>/dev/null))
check "nothing of the package left (of $(wc -l < "$work/files.list") paths): ${left[*]:-none}" \
    [ ${#left[@]} = 0 ]

# --- undo the setup, then the verdict ------------------------------------------
trap - EXIT
cleanup
check "setup undone: enabled modules, confs and sites as before" \
    [ "$(enabled_list)" = "$enabled_before" ]
check "  $varlib (a2enmod's state) as before" [ "$(state_list)" = "$state_before" ]
check "  ports.conf as before" [ "$(sha256sum < $etc/ports.conf)" = "$ports_before" ]
check "  no $site.conf" test ! -e $etc/sites-available/$site.conf
if [ -n "$was_running" ]; then
    check "  system Apache running again, as before (pid $(apache_pid))" test -n "$(apache_pid)"
else
    check "  system Apache not running, as before" test -z "$(apache_pid)"
fi
check "  ports $HTTPS_PORT and $HTTP_PORT free" sh -c "! { ss -ltnH | grep -qE ':($HTTPS_PORT|$HTTP_PORT) '; }"

echo
echo "== deb-test summary"
printf '%s\n' "${results[@]}"
if [ $fails = 0 ]; then
    echo "deb-test: PASS (${#results[@]} checks)"
    exit 0
fi
echo "deb-test: FAIL ($fails of ${#results[@]} checks failed)"
exit 1
