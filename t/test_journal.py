"""H2ChatJournal: history and ids survive a full stop/start; a truncated
or corrupted tail is dropped with a log line and never stops the server;
the file stays bounded (compaction) while every child keeps appending."""

import os
import pwd
import struct

import h2chat_env as env

HISTORY = 20
EXTRA_CONF = f"""
H2ChatHistory {HISTORY}
H2ChatJournal @ROOT@/journal/chat.journal
H2ChatJournalSync always
"""
HEADER = 32


def SETUP(server):
    # compaction renames a new file in: the directory belongs to the child user
    d = server.root / 'journal'
    d.mkdir()
    pw = pwd.getpwnam('www-data')
    os.chown(d, pw.pw_uid, pw.pw_gid)


def journal(server):
    return server.root / 'journal' / 'chat.journal'


def records(path):
    """(id, time, line) of each record, parsed independently of the module."""
    data = path.read_bytes()
    out, off = [], 0
    while off + HEADER <= len(data):
        magic, n, rid, t, _crc, _pad = struct.unpack_from('<IIQqII', data, off)
        assert magic == 0x4a433248
        out.append((rid, t, data[off + HEADER:off + HEADER + n]))
        off += HEADER + ((n + 7) & ~7)
    assert off == len(data), 'journal ends inside a record'
    return out


def history(server):
    """Every message the server still holds, via a resume from 0."""
    sub = server.subscriber(since=0)
    last = server.h2chat_status()['H2ChatLastId']
    sub.wait_event(lambda e: e.get('id') == last, 10)
    msgs = [(m['id'], m['user'], m['text'], m['time']) for m in sub.messages]
    sub.close()
    return msgs


def restart(server):
    server.stop()
    server.start()


def test_history_and_ids_survive_full_restart(server):
    ids = [server.post_msg('ann', f'before stop {i}')[0] for i in range(5)]
    assert ids == list(range(ids[0], ids[0] + 5))
    before = history(server)
    assert [m[0] for m in before][-5:] == ids
    assert [r[0] for r in records(journal(server))][-5:] == ids
    pid = server.pid
    mark = server.errlog_mark()
    restart(server)
    assert server.pid != pid
    assert server.wait_errlog(r'H2C0031: journal .* 5 messages replayed .*last id 5',
                              mark), server.errlog_tail()
    assert server.h2chat_status()['H2ChatLastId'] == ids[-1]
    assert history(server) == before  # same ids, users, texts and times
    nid, _ = server.post_msg('bob', 'after restart')
    assert nid == ids[-1] + 1


def test_truncated_tail_is_dropped(server):
    server.post_msg('ann', 'will survive')
    lost_id, _ = server.post_msg('ann', 'will be cut')
    keep = history(server)[:-1]
    server.stop()
    path = journal(server)
    size = path.stat().st_size
    os.truncate(path, size - 5)
    mark = server.errlog_mark()
    server.start()
    assert server.wait_errlog(r'H2C0030: journal .*truncated record', mark), \
        server.errlog_tail()
    assert server.h2chat_status()['H2ChatLastId'] == lost_id - 1
    assert history(server) == keep
    # the file was cut back to its last good record: appends go on cleanly
    nid, _ = server.post_msg('bob', 'after the cut')
    assert nid == lost_id
    assert [r[0] for r in records(path)][-1] == nid


def test_corrupt_record_is_dropped(server):
    good, _ = server.post_msg('ann', 'good one')
    server.post_msg('ann', 'bad one')
    server.stop()
    path = journal(server)
    data = bytearray(path.read_bytes())
    data[-3] ^= 0x55  # inside the last record's line (or its padding)
    recs = records(path)
    last_len = len(recs[-1][2])
    data[len(data) - ((last_len + 7) & ~7) + 2] ^= 0x55  # surely in the line
    path.write_bytes(bytes(data))
    mark = server.errlog_mark()
    server.start()
    assert server.wait_errlog(r'H2C0030: journal .*corrupt record', mark), \
        server.errlog_tail()
    assert server.h2chat_status()['H2ChatLastId'] == good
    assert server.post_msg('bob', 'next')[0] == good + 1


def test_journal_stays_bounded_and_children_reopen(server):
    start = server.h2chat_status()['H2ChatLastId']
    transports = ('h1', 'h2c', 'h1tls')
    n = HISTORY * 6
    for i in range(n):
        server.post_msg('ann', f'bulk {i}', transports[i % 3])
    recs = records(journal(server))
    assert len(recs) <= HISTORY * 4 + 1, len(recs)
    ids = [r[0] for r in recs]
    assert ids == sorted(ids) and ids[-1] == start + n
    assert ids == list(range(ids[0], ids[-1] + 1))  # no hole: no write was lost
    assert not (server.root / 'journal' / 'chat.journal.compact').exists()
    before = history(server)
    restart(server)
    assert history(server) == before
    assert len(before) == HISTORY
