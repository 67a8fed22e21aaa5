/* mod_h2chat_journal: H2ChatJournal, the shm store's history on disk.
 *
 * Every accepted message is appended (by the publishing child, under the
 * global lock, so records are in id order) as one h2c_journal record. When
 * the parent makes a NEW segment (first start, full restart, or a change of
 * the rooms' shape) it replays the file into the rooms: history and ids go
 * on. A truncated or corrupt tail is logged and cut off, never fatal.
 *
 * The file is created by the parent (root) and given to the child user.
 * When it holds more than H2CHAT_JOURNAL_KEEP times H2ChatHistory records
 * the writing child compacts it: the history's messages go to PATH.compact,
 * which is renamed over PATH; the generation word in the segment makes the
 * other children reopen before their next write, so none writes to the
 * unlinked file. A moderation entry (a message deleted, a room cleared)
 * compacts at once, so the text it removed leaves the disk with it.
 * Compaction needs the directory writable by the child
 * user (see docs/operations.md, "Durability on one server"). */
#include "mod_h2chat.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <apr_strings.h>
#include <unixd.h>

#include "h2c_journal.h"
#include "h2c_json.h"

#define H2CHAT_JOURNAL_KEEP 4 /* compact past this many times the history */
/* Longest line a record may hold when replaying: the largest slot any
 * configuration makes (1 MiB body, escaped) plus room. Longer is corrupt. */
#define H2CHAT_JOURNAL_MAX_LINE (4u * 1024 * 1024)

/* One child's writer. The commit hook runs under the global lock, which
 * serialises every thread of every child: the buffer needs no lock. */
typedef struct {
    server_rec *s;
    const char *path;
    const char *cpath; /* PATH.compact */
    h2chat_sync_t sync;
    h2c_store_t *store;
    h2c_seg_t *seg;
    int fd;
    uint32_t gen; /* of the file fd is open on */
    char *buf;    /* one record */
    apr_size_t cap;
    char *line;    /* one stored message, while compacting */
    uint64_t keep; /* H2ChatHistory */
    int failed;    /* an error was logged: do not flood the log */
} h2chat_journal_t;

static h2chat_journal_t journal;

static const char *compact_path(apr_pool_t *p, const char *path) {
    return apr_pstrcat(p, path, ".compact", NULL);
}

/* Opens (creating) the journal for appending; in the parent (root) hands
 * it to the child user so children can write and compact it. */
static int open_append(const char *path) {
    int fd = open(path, O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

    if (fd >= 0 && geteuid() == 0 &&
        fchown(fd, ap_unixd_config.user_id, ap_unixd_config.group_id) != 0) {
        /* the children will say so when they cannot write */
    }
    return fd;
}

typedef struct {
    h2c_store_t *store;
    uint64_t replayed, skipped;
} replay_t;

/* A record's line names its room (as subscribers get it; a line written
 * before rooms names none: the location's own), so the record format did
 * not change for rooms. */
static int replay_one(void *ctx, const h2c_journal_rec_t *rec) {
    replay_t *rp = ctx;
    char room[H2C_ROOMS_NAME_MAX + 1];

    if (h2c_json_line_room(rec->line, rec->len, room) == APR_SUCCESS &&
        h2c_store_restore(rp->store, room, rec->id, rec->time_ms, rec->line, rec->len) ==
            APR_SUCCESS) {
        rp->replayed++;
    } else {
        rp->skipped++; /* out of order, too long for today's largest, no memory */
    }
    return 0;
}

/* Reads the file into the (new, empty) history; cuts a bad tail off. */
static void replay(server_rec *s, h2c_store_t *store, const char *path, int fd) {
    h2c_seg_shared_t *sh = h2c_seg_shared(store->seg);
    replay_t rp = {store, 0, 0};
    apr_size_t good_end = 0;
    uint64_t count = 0;
    apr_status_t rv = APR_SUCCESS;
    struct stat st;
    void *map = NULL;

    if (fstat(fd, &st) != 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     H2C_TAG_JOURNAL_IO ": cannot stat journal %s", path);
        return;
    }
    if (st.st_size > 0) {
        map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (map == MAP_FAILED) {
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                         H2C_TAG_JOURNAL_IO ": cannot map journal %s", path);
            return;
        }
        rv = h2c_journal_scan(map, (apr_size_t)st.st_size, H2CHAT_JOURNAL_MAX_LINE,
                              replay_one, &rp, &good_end, &count);
        munmap(map, (size_t)st.st_size);
    }
    if (rv != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_WARNING, 0, s,
                     H2C_TAG_JOURNAL_TAIL ": journal %s: %s record at byte %lu "
                                          "(of %lu): dropped it and the %lu bytes "
                                          "after it; %" APR_UINT64_T_FMT
                                          " good records kept",
                     path, rv == APR_INCOMPLETE ? "truncated" : "corrupt",
                     (unsigned long)good_end, (unsigned long)st.st_size,
                     (unsigned long)(st.st_size - (off_t)good_end), (apr_uint64_t)count);
        if (ftruncate(fd, (off_t)good_end) != 0) {
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                         H2C_TAG_JOURNAL_IO ": cannot truncate journal %s", path);
        }
    }
    sh->journal_records = count;
    sh->journal_compact_at = 0;
    ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                 H2C_TAG_JOURNAL_REPLAY ": journal %s: %" APR_UINT64_T_FMT
                                        " messages replayed (%" APR_UINT64_T_FMT
                                        " skipped), last id %" APR_UINT64_T_FMT,
                 path, (apr_uint64_t)rp.replayed, (apr_uint64_t)rp.skipped,
                 (apr_uint64_t)h2c_rooms_last_id(h2c_store_history(store)));
}

void h2chat_journal_post_config(server_rec *s, h2c_store_t *store, int fresh) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);
    int fd;

    if (!sc->journal_path) {
        return;
    }
    if (!store->ops->commits_here) {
        ap_log_error(APLOG_MARK, APLOG_NOTICE, 0, s,
                     H2C_TAG_CONFIG
                     ": H2ChatJournal %s is not used: H2ChatStore %s keeps "
                     "the history itself",
                     sc->journal_path, store->ops->name);
        return;
    }
    fd = open_append(sc->journal_path);
    if (fd < 0) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, s,
                     H2C_TAG_JOURNAL_IO ": cannot open journal %s: history will not "
                                        "survive a restart",
                     sc->journal_path);
        return;
    }
    if (fresh) {
        replay(s, store, sc->journal_path, fd);
    }
    close(fd);
}

static int reopen(h2chat_journal_t *j) {
    uint32_t gen = h2c_seg_shared(j->seg)->journal_gen;

    if (j->fd >= 0 && j->gen == gen) {
        return 1;
    }
    if (j->fd >= 0) {
        close(j->fd);
    }
    j->fd = open(j->path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);
    j->gen = gen;
    if (j->fd < 0 && !j->failed) {
        j->failed = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, j->s,
                     H2C_TAG_JOURNAL_IO ": cannot open journal %s", j->path);
    }
    return j->fd >= 0;
}

static int write_all(int fd, const char *buf, apr_size_t n) {
    while (n > 0) {
        ssize_t w = write(fd, buf, n);

        if (w < 0 && errno == EINTR) {
            continue;
        }
        if (w <= 0) {
            return 0;
        }
        buf += w;
        n -= (apr_size_t)w;
    }
    return 1;
}

/* One held message into the compacted file. */
typedef struct {
    h2chat_journal_t *j;
    int fd;
    int failed;
    uint64_t n;
} compact_t;

static int compact_one(void *ctx, const h2c_rooms_msg_t *m) {
    compact_t *cp = ctx;
    h2chat_journal_t *j = cp->j;
    h2c_rooms_t *rooms = h2c_store_history(j->store);
    apr_size_t size;
    int64_t t;

    if (h2c_rooms_read(rooms, m, j->line, h2c_rooms_max_len(rooms), &t, NULL) !=
        APR_SUCCESS) {
        return 0;
    }
    size = h2c_journal_encode(j->buf, j->cap, m->id, t, j->line, m->len);
    if (size == 0 || !write_all(cp->fd, j->buf, size)) {
        cp->failed = 1;
        return 1;
    }
    cp->n++;
    return 0;
}

/* Rewrites the journal as the messages the rooms hold (each room's last
 * H2ChatHistory), in id order, under the global lock. */
static void compact(h2chat_journal_t *j) {
    h2c_seg_shared_t *sh = h2c_seg_shared(j->seg);
    h2c_rooms_t *rooms = h2c_store_history(j->store);
    compact_t cp = {j, -1, 0, 0};
    uint64_t n = 0;
    int fd, ok;

    fd = open(j->cpath, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0640);
    ok = fd >= 0;
    if (ok) {
        cp.fd = fd;
        ok = h2c_rooms_each(rooms, compact_one, &cp) == APR_SUCCESS && !cp.failed;
        n = cp.n;
    }
    if (ok && (fdatasync(fd) != 0 || rename(j->cpath, j->path) != 0)) {
        ok = 0;
    }
    if (!ok) {
        ap_log_error(APLOG_MARK, APLOG_ERR, errno, j->s,
                     H2C_TAG_JOURNAL_COMPACT ": cannot compact journal %s through %s "
                                             "(is its directory writable by the "
                                             "child user?); it keeps growing",
                     j->path, j->cpath);
        if (fd >= 0) {
            unlink(j->cpath);
        }
        sh->journal_compact_at = sh->journal_records + j->keep;
    } else {
        sh->journal_records = n;
        /* many rooms hold more than one history: compact again only once
         * the file has grown well past what they hold */
        sh->journal_compact_at = (n > j->keep ? n : j->keep) * H2CHAT_JOURNAL_KEEP;
        sh->journal_gen++; /* every child reopens before its next write */
        ap_log_error(APLOG_MARK, APLOG_INFO, 0, j->s,
                     H2C_TAG_JOURNAL_COMPACT
                     ": journal %s compacted to %" APR_UINT64_T_FMT " records",
                     j->path, (apr_uint64_t)n);
    }
    if (fd >= 0) {
        close(fd);
    }
}

static void sync_file(h2chat_journal_t *j) {
    h2c_seg_shared_t *sh = h2c_seg_shared(j->seg);
    int64_t now = (int64_t)(apr_time_now() / 1000);

    if (j->sync == H2CHAT_SYNC_OFF ||
        (j->sync == H2CHAT_SYNC_SECOND && now - sh->journal_synced_ms < 1000)) {
        return;
    }
    /* any descriptor of the file flushes every child's appends */
    if (fdatasync(j->fd) == 0) {
        sh->journal_synced_ms = now;
    }
}

/* The store's commit hook: under the global lock, in id order. */
static void append_record(void *ctx, uint64_t id, int64_t time_ms, h2c_entry_kind_t kind,
                          const char *line, uint32_t len) {
    h2chat_journal_t *j = ctx;
    h2c_seg_shared_t *sh = h2c_seg_shared(j->seg);
    apr_size_t size;

    if (!reopen(j)) {
        return;
    }
    size = h2c_journal_encode(j->buf, j->cap, id, time_ms, line, len);
    if (size == 0 || !write_all(j->fd, j->buf, size)) {
        if (!j->failed) {
            j->failed = 1;
            ap_log_error(APLOG_MARK, APLOG_ERR, errno, j->s,
                         H2C_TAG_JOURNAL_IO ": cannot append to journal %s", j->path);
        }
        return;
    }
    j->failed = 0;
    sync_file(j);
    sh->journal_records++;
    if (!sh->journal_compact_at) {
        sh->journal_compact_at = j->keep * H2CHAT_JOURNAL_KEEP;
    }
    /* a delete or clear takes what it removed off the disk too, at once:
     * the rooms (already without it) are what the compacted file holds */
    if (sh->journal_records > sh->journal_compact_at || kind != H2C_ENTRY_MESSAGE) {
        compact(j);
    }
}

static apr_status_t journal_close(void *data) {
    h2chat_journal_t *j = data;

    if (j->fd >= 0) {
        close(j->fd);
        j->fd = -1;
    }
    return APR_SUCCESS;
}

void h2chat_journal_child_init(apr_pool_t *pchild, server_rec *s, h2c_store_t *store) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);
    h2c_rooms_t *rooms = h2c_store_history(store);

    if (!sc->journal_path ||
        h2c_store_follow(store, append_record, &journal) != APR_SUCCESS) {
        return; /* said once in post_config */
    }
    journal.s = s;
    journal.path = sc->journal_path;
    journal.cpath = compact_path(pchild, sc->journal_path);
    journal.sync = h2chat_conf_journal_sync(s);
    journal.store = store;
    journal.seg = store->seg;
    journal.fd = -1;
    journal.gen = 0;
    journal.keep = (uint64_t)h2chat_conf_history(s);
    journal.cap = h2c_journal_record_size(h2c_rooms_max_len(rooms));
    journal.buf = apr_palloc(pchild, journal.cap);
    journal.line = apr_palloc(pchild, h2c_rooms_max_len(rooms));
    journal.failed = 0;
    apr_pool_cleanup_register(pchild, &journal, journal_close, apr_pool_cleanup_null);
}
