#!/usr/bin/env bash
# The whole integration suite (t/) against mod_h2chat built with
# AddressSanitizer + UndefinedBehaviorSanitizer.
#
#   make -f Makefile.apxs test-asan     (or tools/asan-test.sh [pytest args],
#                                        e.g. tools/asan-test.sh t/test_rel_kill.py)
#
# The sanitized module is built from a copy of the sources in build/asan/tree
# (`make -f Makefile.apxs SANITIZE=1` there), so the normal .libs/ is never
# touched. Apache is started with LD_PRELOAD=libasan:libubsan (the harness's
# H2CHAT_MODULE / H2CHAT_PRELOAD); ASan and UBSan write their reports to
# build/asan/logs/{asan,ubsan}.<pid>. Fails if pytest fails or if any
# report was written, and prints them.
set -uo pipefail
cd "$(dirname "$0")/.."
REPO=$PWD
OUT=$REPO/build/asan
TREE=$OUT/tree
LOGS=$OUT/logs
PYTHON=${PYTHON:-/usr/bin/python3}
CC=${CC:-gcc}

tools/deps.sh test || exit 1

# 1. a copy of the sources, built with SANITIZE=1
rm -rf "$TREE"
mkdir -p "$TREE/src" "$TREE/tools"
cp -p mod_h2chat.c mod_h2chat.map Makefile.apxs "$TREE/"
cp -p src/*.c src/*.h "$TREE/src/"
cp -p tools/deps.sh "$TREE/tools/"
make -C "$TREE" -f Makefile.apxs SANITIZE=1 >"$OUT/build.log" 2>&1 || {
    cat "$OUT/build.log" >&2
    echo "asan-test: the sanitized build failed" >&2
    exit 1
}
SO=$TREE/.libs/mod_h2chat.so
for lib in libasan libubsan; do
    # grep reads everything: with pipefail, grep -q could end ldd by SIGPIPE
    if ! ldd "$SO" | grep "$lib" >/dev/null; then
        echo "asan-test: $SO is not linked with $lib" >&2
        exit 1
    fi
done

# 2. runtimes to preload into apache2 (ASan must come first)
LIBASAN=$($CC -print-file-name=libasan.so)
LIBUBSAN=$($CC -print-file-name=libubsan.so)
for lib in "$LIBASAN" "$LIBUBSAN"; do
    [ -e "$lib" ] || { echo "asan-test: $lib not found" >&2; exit 1; }
done

# 3. report files: the children run as www-data
rm -rf "$LOGS"
mkdir -p "$LOGS"
chmod 1777 "$LOGS"

export H2CHAT_MODULE=$SO
export H2CHAT_PRELOAD="$LIBASAN:$LIBUBSAN"
# detect_leaks=0: httpd frees its pools by exiting, by design.
export ASAN_OPTIONS="log_path=$LOGS/asan:detect_leaks=0:abort_on_error=0:halt_on_error=1:detect_stack_use_after_return=0:allow_user_segv_handler=1"
export UBSAN_OPTIONS="log_path=$LOGS/ubsan:print_stacktrace=1:halt_on_error=0"

echo "asan-test: module $SO" >&2
echo "asan-test: preload $H2CHAT_PRELOAD" >&2
if [ $# -eq 0 ]; then set -- t/; fi
"$PYTHON" -m pytest -q "$@"
rc=$?

reports=$(find "$LOGS" -type f -size +0 | sort)
if [ -n "$reports" ]; then
    echo "asan-test: sanitizer reports:" >&2
    for f in $reports; do
        echo "==== $f" >&2
        head -60 "$f" >&2
    done
    rc=1
fi
# reports that went to an error.log instead (before log_path applied)
if grep -l -E "ERROR: AddressSanitizer|runtime error:" t/run/*/error.log 2>/dev/null; then
    echo "asan-test: sanitizer output in the error logs above" >&2
    rc=1
fi
if [ $rc -eq 0 ]; then
    echo "asan-test: suite passed, no sanitizer report" >&2
fi
exit $rc
