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

import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import benchsrv  # noqa: E402  (the nchan peer, post_rooms)
from benchsrv import env  # noqa: E402  (the test harness's Apache)


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
        took = benchsrv.post_rooms(srv.port, n, lambda i: f'/msgs/room{i}')
        st = srv.h2chat_status()
        used, rec = st['H2ChatMemoryUsed'], st['H2ChatRoomRecordBytes']
        return {'rooms': st['H2ChatRooms'], 'memory_used': used, 'record_bytes': rec,
                'bytes_per_room': round(used / n + rec, 1), 'post_s': round(took, 1)}
    finally:
        srv.stop()


def nchan(n):
    try:
        srv = benchsrv.Nchan()
    except RuntimeError as e:
        return {'skipped': str(e)}
    with srv:
        took = benchsrv.post_rooms(srv.HTTP, n, lambda i: f'/msgs/room{i}')
        st = srv.status()
        used = st.get('shared memory used')
        return {'channels': st.get('channels'), 'memory_used': used,
                'bytes_per_room': round(used / n, 1) if used else None,
                'post_s': round(took, 1), 'status': st['text']}


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
