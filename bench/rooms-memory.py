#!/usr/bin/env python3
"""bench/rooms-memory.py: shared memory per room holding one message, at N
rooms, mod_h2chat (H2ChatRooms) vs nginx+nchan (one channel per room, the
id from the URL: ../shared/peers/nchan/nginx-rooms.conf), in the same run
(#14, acceptance 9, first figure).

    bench/rooms-memory.py [N]          N rooms (default 100,000)

Each server gets one short message (`{"user":"u","text":"hello room <i>"}`)
POSTed to each of N rooms over one HTTP/1.1 keep-alive connection, then:
  - mod_h2chat: server-status H2ChatMemoryUsed (the messages' chunks) / N
    + H2ChatRoomRecordBytes (a room's record, hash and tombstone entries
    and holder counts: fixed per room, allocated for H2ChatMaxRooms);
  - nchan: `nchan_stub_status`'s "shared memory used" / N (its slab
    allocator's own accounting: channels, messages and their buffers).
Prints one JSON line; both servers are stopped by their PID at the end,
also on failure. Loopback only; bounded by N and a timeout per POST."""

import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, 't'))

import h2chat_env as env  # noqa: E402  (the test harness's Apache)

PEERS = next((p for p in (os.path.join(ROOT, '..', 'shared', 'peers'), '/work/shared/peers')
              if os.path.isdir(p)), None)
NCHAN_HTTP = 18108


def post_rooms(port, n, path_of):
    conn = http.client.HTTPConnection('127.0.0.1', port, timeout=10)
    t0 = time.monotonic()
    for i in range(n):
        body = json.dumps({'user': 'u', 'text': f'hello room {i}'})
        conn.request('POST', path_of(i), body=body, headers={'Content-Type': 'application/json'})
        r = conn.getresponse()
        r.read()
        if r.status not in (200, 201, 202):
            raise RuntimeError(f'POST {path_of(i)}: {r.status}')
    conn.close()
    return time.monotonic() - t0


def h2chat(n):
    conf = f"""
H2ChatMaxRooms {n + 16}
H2ChatMemory 512M
<Location /msgs>
    H2ChatRooms On
</Location>
"""
    srv = env.H2ChatServer('bench_rooms_memory', conf)
    try:
        srv.start()
        took = post_rooms(srv.port, n, lambda i: f'/msgs/room{i}')
        st = srv.h2chat_status()
        used, rec = st['H2ChatMemoryUsed'], st['H2ChatRoomRecordBytes']
        return {'rooms': st['H2ChatRooms'], 'memory_used': used, 'record_bytes': rec,
                'bytes_per_room': round(used / n + rec, 1), 'post_s': round(took, 1)}
    finally:
        srv.stop()


def nchan(n):
    if not PEERS or not shutil.which('nginx'):
        return {'skipped': 'no nginx or peers'}
    run = tempfile.mkdtemp(prefix='nchan-rooms-')
    os.makedirs(os.path.join(run, 'tmp'))
    src = open(os.path.join(PEERS, 'nchan', 'nginx-rooms.conf')).read()
    # the peer's config plus a status location on its HTTP/1.1 port
    src = src.replace('    location ~ "^/msgs/',
                      '    location = /nchan_status { nchan_stub_status; }\n'
                      '    location ~ "^/msgs/', 1)
    conf = os.path.join(run, 'nginx.conf')
    open(conf, 'w').write(src)
    subprocess.run(['nginx', '-p', run, '-c', conf], check=True)
    pid = None
    try:
        for _ in range(50):
            if os.path.exists(os.path.join(run, 'nginx.pid')):
                pid = int(open(os.path.join(run, 'nginx.pid')).read())
                break
            time.sleep(0.1)
        took = post_rooms(NCHAN_HTTP, n, lambda i: f'/msgs/room{i}')
        c = http.client.HTTPConnection('127.0.0.1', NCHAN_HTTP, timeout=10)
        c.request('GET', '/nchan_status')
        text = c.getresponse().read().decode()
        c.close()
        m = re.search(r'shared memory used:\s*(\d+)K', text)
        used = int(m.group(1)) * 1024 if m else None
        ch = re.search(r'channels:\s*(\d+)', text)
        return {'channels': int(ch.group(1)) if ch else None, 'memory_used': used,
                'bytes_per_room': round(used / n, 1) if used else None,
                'post_s': round(took, 1), 'status': text.strip().splitlines()[:8]}
    finally:
        if pid:
            os.kill(pid, signal.SIGTERM)
            for _ in range(50):
                try:
                    os.kill(pid, 0)
                except OSError:
                    break
                time.sleep(0.1)
        shutil.rmtree(run, ignore_errors=True)


def main():
    n = int(sys.argv[1]) if len(sys.argv) > 1 else 100000
    ours = h2chat(n)
    peer = nchan(n)
    ratio = (round(ours['bytes_per_room'] / peer['bytes_per_room'], 3)
             if peer.get('bytes_per_room') else None)
    print(json.dumps({'bench': 'rooms-memory', 'rooms': n, 'h2chat': ours, 'nchan': peer,
                      'h2chat_over_nchan': ratio,
                      'when': time.strftime('%Y-%m-%d %H:%M:%S')}))


if __name__ == '__main__':
    main()
