#!/usr/bin/env bash
# bench/httpd-conf.sh: bench/httpd.conf.in filled in for one Apache of the
# benchmarks, on stdout. bench/run.sh, bench/scale.sh and bench/rooms-load.py
# all write their Apache's configuration with it.
#
#   bench/httpd-conf.sh RUN PORT CHILDREN THREADS MAXSUBS [SPREAD [REDIS_PORT REDIS_KEY]]
#
#   RUN         the server root (pid file, logs, htdocs)
#   PORT        h2c + HTTP/1.1 (TLS on PORT + 10 with apache2 -DBENCH_TLS)
#   CHILDREN    StartServers; ServerLimit is twice that (a graceful restart's
#               old generation keeps its slots meanwhile)
#   THREADS     ThreadsPerChild and H2MaxWorkers; MinSpareThreads is one
#               thread short of all children
#   MAXSUBS     H2ChatMaxSubscribers
#   SPREAD      H2ChatReconnectSpread (default auto)
#   REDIS_PORT, REDIS_KEY   the Redis of apache2 -DBENCH_REDIS (default 0, -)
set -euo pipefail
if [ $# -lt 5 ]; then
    echo "usage: $0 RUN PORT CHILDREN THREADS MAXSUBS [SPREAD [REDIS_PORT REDIS_KEY]]" >&2
    exit 2
fi
root=$(cd "$(dirname "$0")/.." && pwd)
r=$1 port=$2 ch=$3 th=$4 maxsubs=$5 spread=${6:-auto} redis_port=${7:-0} redis_key=${8:--}
sed -e "s|@ROOT@|$root|g" -e "s|@RUN@|$r|g" -e "s|@PORT@|$port|g" \
    -e "s|@TLS_PORT@|$((port + 10))|g" -e "s|@CHILDREN@|$ch|g" -e "s|@SERVERLIMIT@|$((ch * 2))|g" \
    -e "s|@SPREAD@|$spread|g" -e "s|@THREADS@|$th|g" -e "s|@MAXWORKERS@|$((ch * th))|g" \
    -e "s|@MINSPARE@|$(((ch - 1) * th + 1))|g" -e "s|@MAXSUBS@|$maxsubs|g" \
    -e "s|@REDIS_PORT@|$redis_port|g" -e "s|@REDIS_KEY@|$redis_key|g" "$root/bench/httpd.conf.in"
