"""SetHandler h2chat-metrics: Prometheus's text exposition of the snapshot
server-status shows. The exposition parses with prometheus_client's parser
and its numbers follow what the test does; a real `prometheus` server
scrapes it, and a query through its HTTP API returns the held subscribers
and the published total the test caused."""

import json
import os
import shutil
import signal
import subprocess
import tempfile
import time
import urllib.parse
import urllib.request

from prometheus_client.parser import text_string_to_metric_families

import h2chat_env as env

PROMETHEUS = shutil.which('prometheus') or '/usr/bin/prometheus'
CONTENT_TYPE = 'text/plain; version=0.0.4; charset=utf-8'

# h2c to the main port goes to the direct loop, h2 over TLS and HTTP/1.1 to
# the handler: both transports of h2chat_subscribers
EXTRA_CONF = """
H2ChatDirect /msgs
H2ChatMaxSubscribers 40
H2ChatMaxSubscribersPerAddress off
<Location /h2chat-metrics>
    SetHandler h2chat-metrics
</Location>
"""


def scrape(server):
    """GET /h2chat-metrics -> (response, {family: {sample name + labels: value}},
    {family: type})."""
    r = env.request(server.port, 'GET', '/h2chat-metrics')
    assert r.status == 200, r
    values, types = {}, {}
    for fam in text_string_to_metric_families(r.body.decode('utf-8')):
        types[fam.name] = fam.type
        for s in fam.samples:
            key = (s.name, tuple(sorted(s.labels.items())))
            assert key not in values.setdefault(fam.name, {}), f'duplicate sample {key}'
            values[fam.name][key] = s.value
    return r, values, types


def value(fams, family, sample=None, **labels):
    return fams[family][(sample or family, tuple(sorted(labels.items())))]


def latency_count(fams):
    return sum(v for (name, _), v in fams['h2chat_delivery_latency_seconds'].items()
               if name == 'h2chat_delivery_latency_seconds_count')


def check_histogram(fams):
    """Per child: cumulative buckets in increasing le, +Inf == _count."""
    series = {}
    for (name, labels), v in fams['h2chat_delivery_latency_seconds'].items():
        series.setdefault(dict(labels)['pid'], []).append((name, dict(labels), v))
    assert series
    for pid, samples in series.items():
        buckets = sorted((float(lb['le']), v) for n, lb, v in samples
                         if n.endswith('_bucket'))
        count = [v for n, _, v in samples if n.endswith('_count')][0]
        assert buckets[-1] == (float('inf'), count), (pid, buckets, count)
        assert all(a[1] <= b[1] for a, b in zip(buckets, buckets[1:])), (pid, buckets)
        assert len(buckets) == 15, buckets


def test_exposition_follows_activity(server):
    _, fams0, _ = scrape(server)
    subs = server.subscribers([('h2c', 'ndjson'), ('h2c', 'sse'), ('h2tls', 'ndjson'),
                               ('h1', 'ndjson'), ('h1', 'sse')])
    assert all(s.status == 200 for s in subs), [s.summary() for s in subs]
    assert server.wait_subscribers(5, timeout=10) == 5
    ids = [server.post_msg('ann', f'metrics {i}')[0] for i in range(6)]
    assert server.post({'user': '', 'text': 'x'}).status == 400  # refused: invalid
    assert env.wait_until(lambda: all(len(s.messages) >= 6 for s in subs), 10)
    r, fams, types = scrape(server)
    st = server.h2chat_status()

    assert r.headers['content-type'] == CONTENT_TYPE, r.headers
    assert value(fams, 'h2chat_usable') == 1
    assert value(fams, 'h2chat_subscribers', transport='direct') == 2, fams
    assert value(fams, 'h2chat_subscribers', transport='handler') == 3, fams
    per_child = fams['h2chat_child_subscribers']
    assert sum(per_child.values()) == 5, per_child
    status_pids = {int(kv.split('=')[0]) for kv in st['H2ChatSubscribersPerChild'].split(',')}
    assert {int(dict(k[1])['pid']) for k in per_child} == status_pids, (per_child, st)
    assert value(fams, 'h2chat_max_subscribers') == st['H2ChatMaxSubscribers'] == 40
    assert value(fams, 'h2chat_max_subscribers_per_address') == 0  # off
    published0 = value(fams0, 'h2chat_messages_published',
                       'h2chat_messages_published_total')
    assert value(fams, 'h2chat_messages_published',
                 'h2chat_messages_published_total') == published0 + 6
    assert value(fams, 'h2chat_messages_published',
                 'h2chat_messages_published_total') == st['H2ChatPublished']
    assert value(fams, 'h2chat_last_id') == ids[-1] == st['H2ChatLastId']
    fill, cap = st['H2ChatHistoryFill'].split('/')
    assert value(fams, 'h2chat_history_messages') == int(fill)
    assert value(fams, 'h2chat_history_capacity_messages') == int(cap) == 1000
    assert value(fams, 'h2chat_direct_connections') == st['H2ChatDirectConnections'] >= 2
    for fam in ('h2chat_direct_calm', 'h2chat_direct_penalized', 'h2chat_stalled_dropped'):
        assert value(fams, fam, fam + '_total') == 0
    invalid0 = value(fams0, 'h2chat_refused', 'h2chat_refused_total', reason='invalid')
    assert value(fams, 'h2chat_refused', 'h2chat_refused_total',
                 reason='invalid') == invalid0 + 1
    # one reason label per H2ChatRefused* line of server-status
    reasons = {dict(k[1])['reason'] for k in fams['h2chat_refused']}
    assert len(reasons) == len([k for k in st if k.startswith('H2ChatRefused')]), reasons
    assert {'cap', 'too_large', 'media_type', 'address'} <= reasons
    assert value(fams, 'h2chat_store_info', store='shm') == 1
    # delivery latency: every held stream sampled at least once, the
    # samples are in each child's histogram, and loopback is fast
    assert types['h2chat_delivery_latency_seconds'] == 'histogram', types
    assert env.wait_until(lambda: latency_count(scrape(server)[1]) >= latency_count(fams0) + 5,
                          5), scrape(server)[1]['h2chat_delivery_latency_seconds']
    _, fams, _ = scrape(server)
    check_histogram(fams)
    lat_sum = sum(v for (name, _), v in fams['h2chat_delivery_latency_seconds'].items()
                  if name.endswith('_sum'))
    assert 0 < lat_sum / latency_count(fams) < 1.0, fams['h2chat_delivery_latency_seconds']
    assert not [f for f in fams if f.startswith('h2chat_redis')]  # shm: no store lines
    # counters are counters (the parser drops the _total of the family name)
    for fam in ('h2chat_messages_published', 'h2chat_refused', 'h2chat_direct_calm',
                'h2chat_direct_penalized', 'h2chat_stalled_dropped'):
        assert types[fam] == 'counter', (fam, types)
    for fam in ('h2chat_subscribers', 'h2chat_child_subscribers', 'h2chat_last_id',
                'h2chat_history_messages', 'h2chat_direct_connections'):
        assert types[fam] == 'gauge', (fam, types)

    for s in subs:
        s.close()
    assert server.wait_subscribers(0, 5) == 0
    _, fams, _ = scrape(server)
    assert sum(fams['h2chat_subscribers'].values()) == 0


def test_snapshot_is_not_latency(server):
    """Old messages a new stream gets first (snapshot, resume) measure their
    age, not delivery: they are not sampled."""
    for i in range(3):
        server.post_msg('ann', f'before {i}')
    _, fams0, _ = scrape(server)
    subs = server.subscribers([('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'ndjson')])
    assert env.wait_until(lambda: all(len(s.messages) >= 3 for s in subs), 10)
    time.sleep(0.3)
    _, fams, _ = scrape(server)
    assert latency_count(fams) == latency_count(fams0), (fams0, fams)
    # one new message: one pass, one sample, for each of the three streams
    # (the direct loop's h2c one included)
    server.post_msg('ann', 'after')
    assert env.wait_until(lambda: latency_count(scrape(server)[1]) >= latency_count(fams0) + 3,
                          5), scrape(server)[1]['h2chat_delivery_latency_seconds']
    time.sleep(0.3)
    assert latency_count(scrape(server)[1]) == latency_count(fams0) + 3
    for s in subs:
        s.close()
    assert server.wait_subscribers(0, 5) == 0


def test_methods(server):
    r = env.request(server.port, 'HEAD', '/h2chat-metrics')
    assert r.status == 200 and r.body == b'', r
    assert r.headers['content-type'] == CONTENT_TYPE
    assert int(r.headers['content-length']) > 100, r.headers  # the GET's length
    for method in ('POST', 'PUT', 'DELETE'):
        r = env.request(server.port, method, '/h2chat-metrics', body='x')
        assert r.status == 405, r
        assert r.headers['allow'] == 'GET, HEAD', r.headers
    # over h2 (TLS) too
    r = server.get('/h2chat-metrics', transport='h2tls')
    assert r.status == 200 and r.headers['content-type'] == CONTENT_TYPE, r
    assert b'h2chat_messages_published_total' in r.body


class Prometheus:
    """A real prometheus server of our own: storage in a temp dir, loopback
    only, scraping `target` (host:port) at `path` every second."""

    def __init__(self, target, path):
        self.dir = tempfile.mkdtemp(prefix='h2chat-prometheus-')
        self.target, self.path = target, path
        self.proc = None
        self.port = None
        self.log = os.path.join(self.dir, 'prometheus.log')

    def start(self):
        conf = os.path.join(self.dir, 'prometheus.yml')
        with open(conf, 'w') as f:
            f.write(f"""global:
  scrape_interval: 1s
  scrape_timeout: 1s
  evaluation_interval: 1s
scrape_configs:
  - job_name: h2chat
    metrics_path: {self.path}
    static_configs:
      - targets: ['{self.target}']
""")
        for attempt in range(env.BIND_RETRIES):
            self.port = env.free_port()
            with open(self.log, 'ab') as log:
                self.proc = subprocess.Popen(
                    [PROMETHEUS, f'--config.file={conf}',
                     f'--storage.tsdb.path={self.dir}/data',
                     f'--web.listen-address=127.0.0.1:{self.port}', '--log.level=warn'],
                    stdin=subprocess.DEVNULL, stdout=log, stderr=log)
            if env.wait_until(self._ready, 30, 0.2):
                return self
            self.stop()
            if attempt == env.BIND_RETRIES - 1 or 'address already in use' not in self.log_text():
                raise RuntimeError(f'prometheus does not answer:\n{self.log_text()[-3000:]}')
        return self

    def log_text(self):
        with open(self.log, errors='replace') as f:
            return f.read()

    def _get(self, path):
        with urllib.request.urlopen(f'http://127.0.0.1:{self.port}{path}', timeout=3) as r:
            return r.status, r.read()

    def _ready(self):
        if self.proc.poll() is not None:
            return False
        try:
            return self._get('/-/ready')[0] == 200
        except OSError:
            return False

    def query(self, promql):
        """The instant vector's values: [(labels, float)]."""
        _, body = self._get('/api/v1/query?query=' + urllib.parse.quote(promql))
        res = json.loads(body)
        assert res['status'] == 'success', res
        return [(v['metric'], float(v['value'][1])) for v in res['data']['result']]

    def stop(self):
        if self.proc and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(timeout=5)
        self.proc = None

    def cleanup(self):
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def test_prometheus_scrapes(server):
    published0 = server.h2chat_status()['H2ChatPublished']
    prom = Prometheus(f'127.0.0.1:{server.port}', '/h2chat-metrics')
    try:
        prom.start()
        subs = server.subscribers([('h2c', 'ndjson'), ('h2tls', 'ndjson'),
                                   ('h1', 'ndjson')])
        assert server.wait_subscribers(3, timeout=10) == 3
        for i in range(7):
            server.post_msg('bob', f'scraped {i}')
        want = {'sum(h2chat_subscribers)': 3.0,
                'h2chat_messages_published_total': float(published0 + 7),
                'up{job="h2chat"}': 1.0}
        got = {}

        def scraped():
            for q in want:
                res = prom.query(q)
                got[q] = res[0][1] if len(res) == 1 else res
            return got == want
        assert env.wait_until(scraped, 30, 0.5), (got, want, prom.log_text()[-2000:])
        # the labels survive the trip: both transports, one series per child
        # the histogram: PromQL's quantile over all children's buckets
        assert env.wait_until(
            lambda: prom.query('sum(h2chat_delivery_latency_seconds_count)')[0][1] >= 3, 10)
        p50 = prom.query('histogram_quantile(0.5, sum by (le) '
                         '(h2chat_delivery_latency_seconds_bucket))')
        assert len(p50) == 1 and 0 < p50[0][1] <= 2.5, p50
        by_transport = dict((m['transport'], v) for m, v in
                            prom.query('h2chat_subscribers'))
        assert by_transport == {'direct': 1.0, 'handler': 2.0}, by_transport
        assert sum(v for _, v in prom.query('h2chat_child_subscribers')) == 3.0
        for s in subs:
            s.close()
        assert server.wait_subscribers(0, 5) == 0
    finally:
        prom.cleanup()
    assert prom.proc is None


REDIS_CONF = """
H2ChatStore redis
H2ChatRedis {url}/0 metrics
<Location /h2chat-metrics>
    SetHandler h2chat-metrics
</Location>
"""


def test_redis_store_lines(cert):
    """H2ChatStore redis: the store's status lines become gauges (the
    generic mapping of h2c_metrics.c), and h2chat_redis_up follows the link."""
    redis = env.RedisServer('test_metrics_redis').start()
    node = env.H2ChatServer('test_metrics_redis_node', REDIS_CONF.format(url=redis.url),
                            cert=cert)
    try:
        node.start()
        assert env.wait_until(lambda: node.h2chat_status().get('H2ChatRedis') == 'up', 10), \
            node.errlog_tail()
        ids = [node.post_msg('ann', f'redis {i}')[0] for i in range(2)]
        assert env.wait_until(
            lambda: node.h2chat_status().get('H2ChatRedisLastId') == ids[-1], 10)
        _, fams, _ = scrape(node)
        st = node.h2chat_status()
        assert value(fams, 'h2chat_store_info', store='redis') == 1
        assert value(fams, 'h2chat_redis_up') == 1
        assert value(fams, 'h2chat_redis_last_id') == st['H2ChatRedisLastId'] == ids[-1]
        assert value(fams, 'h2chat_redis_reader') == st['H2ChatRedisReader']
        assert st['H2ChatRedisReader'] in node.children()
        redis.stop()
        assert env.wait_until(lambda: value(scrape(node)[1], 'h2chat_redis_up') == 0, 15), \
            node.errlog_tail()
        assert node.h2chat_status()['H2ChatRedis'] == 'down'
    finally:
        node.stop()
        redis.stop()
    assert not node.errlog_problems(), node.errlog_problems()


def test_latency_histogram_off(cert):
    """H2ChatLatencyHistogram Off: deliveries on both transports take no
    sample; the histogram is still exposed, at zero."""
    srv = env.H2ChatServer('test_metrics_latency_off',
                           EXTRA_CONF + 'H2ChatLatencyHistogram Off\n', cert=cert)
    try:
        srv.start()
        subs = srv.subscribers([('h2c', 'ndjson'), ('h2tls', 'ndjson'), ('h1', 'ndjson')])
        ids = [srv.post_msg('ann', f'off {i}')[0] for i in range(3)]
        assert env.wait_until(
            lambda: all(ids[-1] in [m['id'] for m in s.messages] for s in subs), 10)
        time.sleep(0.3)
        _, fams, _ = scrape(srv)
        check_histogram(fams)
        assert latency_count(fams) == 0, fams['h2chat_delivery_latency_seconds']
        for s in subs:
            s.close()
    finally:
        srv.stop()
