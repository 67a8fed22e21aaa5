/* mod_h2chat_redis: H2ChatStore redis, several servers behind one Redis.
 *
 * Publish: one Lua script (EVAL) does INCR <key>:id and XADD <key> MAXLEN ~
 * <history> <n>-1 f <fields> t <time>, atomically, so ids are dense
 * integers shared by every node, in Redis's order. The POST answers with
 * that id. Connections come from a small per-child pool; every command has
 * a ~1 s timeout, so a POST while Redis is away answers 503 at once.
 *
 * Read: each server has ONE reader, a thread in one child, elected through
 * the segment (h2c_seg_reader_claim: another child takes over when that one
 * stops or dies). It follows the stream with XREAD BLOCK from the rooms'
 * last id and puts every entry into the local rooms (h2c_rooms_append), so the
 * fan-out path is exactly the shm one. Ids trimmed before it read them are
 * gaps. While Redis is away it reconnects with backoff and catches up from
 * its last id. */
#include "mod_h2chat.h"

#include <pthread.h>
#include <stdlib.h>
#include <signal.h>
#include <unistd.h>

#include <apr_strings.h>
#include <apr_thread_mutex.h>
#include <apr_thread_proc.h>
#include <hiredis/hiredis.h>

#include "h2c_json.h"
#include "h2c_wait.h"

#define REDIS_POOL_MAX 8
#define REDIS_TIMEOUT_MS 1000
#define REDIS_BLOCK_MS 1000 /* XREAD BLOCK: how often the reader looks up */
#define REDIS_BATCH 256
#define REDIS_BACKOFF_MAX_MS 2000

/* The stream's format, in <key>:format: 1, entries `f` (a message's
 * fields) and `t`; 2, also `l` (a moderation line, #14). A node writes only
 * into a stream of its format or an older one (which it then marks as
 * its own: every older entry reads the same), and refuses a newer one. */
#define H2CHAT_REDIS_FORMAT "2"

/* Every script's start (KEYS[3]: the format key). */
#define FORMAT_CHECK                                                                     \
    "local v = tonumber(redis.call('GET', KEYS[3]) or '0') "                             \
    "if v > " H2CHAT_REDIS_FORMAT " then "                                               \
    "  return redis.error_reply('H2CHAT_FORMAT ' .. v) end "                             \
    "if v < " H2CHAT_REDIS_FORMAT " then "                                               \
    "  redis.call('SET', KEYS[3], '" H2CHAT_REDIS_FORMAT "') end "

/* KEYS[1] stream, KEYS[2] id counter, KEYS[3] format; ARGV fields, time,
 * history. */
static const char publish_script[] =
    FORMAT_CHECK "local id = redis.call('INCR', KEYS[2]) "
                 "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], id .. '-1', "
                 "'f', ARGV[1], 't', ARGV[2]) "
                 "return id";

/* Moderation: KEYS as above; ARGV line, time, history, kind (delete |
 * clear), the deleted message's entry id (delete), the room's prefix in a
 * message's fields (clear: `"room":"a",`, or "" for the location's own,
 * whose fields name no room). The entry is logged as `l` (the whole line:
 * it carries no id of its own), and the message(s) leave the stream. */
static const char moderate_script[] = FORMAT_CHECK
    "local id = redis.call('INCR', KEYS[2]) "
    "redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], id .. '-1', "
    "'l', ARGV[1], 't', ARGV[2]) "
    "if ARGV[4] == 'delete' then redis.call('XDEL', KEYS[1], ARGV[5]) "
    "else "
    "  for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do "
    "    local f = e[2][1] == 'f' and e[2][2] "
    "    if f and ((ARGV[6] == '' and string.sub(f, 1, 7) ~= '\"room\":') or "
    "        (ARGV[6] ~= '' and string.sub(f, 1, #ARGV[6]) == ARGV[6])) then "
    "      redis.call('XDEL', KEYS[1], e[1]) "
    "    end "
    "  end "
    "end "
    "return id";

typedef struct {
    server_rec *s;
    const char *host, *key, *id_key, *format_key;
    int port, db;
    long history;
    h2c_store_t *store;
    apr_thread_mutex_t *pool_lock;
    redisContext *idle[REDIS_POOL_MAX];
    int nidle;
    apr_thread_t *reader;
    volatile int stop;
    int format_checked, format_logged; /* the reader's look at <key>:format */
    char *line;                        /* the reader's message buffer */
    uint32_t pid;
} h2chat_redis_t;

static h2chat_redis_t redis;

static struct timeval ms_tv(long ms) {
    struct timeval tv;

    tv.tv_sec = ms / 1000;
    tv.tv_usec = (ms % 1000) * 1000;
    return tv;
}

/* A connected context with `timeout_ms` per command, on db; NULL if Redis
 * cannot be reached. */
static redisContext *connect_redis(h2chat_redis_t *rd, long timeout_ms) {
    redisContext *c =
        redisConnectWithTimeout(rd->host, rd->port, ms_tv(REDIS_TIMEOUT_MS));
    redisReply *reply;

    if (!c || c->err) {
        if (c) {
            redisFree(c);
        }
        return NULL;
    }
    redisSetTimeout(c, ms_tv(timeout_ms));
    if (rd->db) {
        reply = redisCommand(c, "SELECT %d", rd->db);
        if (!reply || reply->type == REDIS_REPLY_ERROR) {
            if (reply) {
                freeReplyObject(reply);
            }
            redisFree(c);
            return NULL;
        }
        freeReplyObject(reply);
    }
    return c;
}

/* An idle context, or a new one; *pooled says which. */
static redisContext *pool_take(h2chat_redis_t *rd, int *pooled) {
    redisContext *c = NULL;

    apr_thread_mutex_lock(rd->pool_lock);
    if (rd->nidle > 0) {
        c = rd->idle[--rd->nidle];
    }
    apr_thread_mutex_unlock(rd->pool_lock);
    *pooled = c != NULL;
    return c ? c : connect_redis(rd, REDIS_TIMEOUT_MS);
}

/* Gives a healthy context back; a broken one is dropped. */
static void pool_give(h2chat_redis_t *rd, redisContext *c, int healthy) {
    if (healthy && !c->err) {
        apr_thread_mutex_lock(rd->pool_lock);
        if (rd->nidle < REDIS_POOL_MAX) {
            rd->idle[rd->nidle++] = c;
            c = NULL;
        }
        apr_thread_mutex_unlock(rd->pool_lock);
    }
    if (c) {
        redisFree(c);
    }
}

/* A script's answer, the id it gave: APR_SUCCESS with *id, else logged
 * (`what` the redis:// URL); the connection goes back to the pool if
 * healthy. */
static apr_status_t script_done(h2chat_redis_t *rd, redisContext *c, redisReply *reply,
                                const char *what, uint64_t *id) {
    apr_status_t rv = APR_EGENERAL;

    if (reply && reply->type == REDIS_REPLY_INTEGER && reply->integer > 0) {
        *id = (uint64_t)reply->integer;
        rv = APR_SUCCESS;
    } else if (reply && reply->type == REDIS_REPLY_ERROR &&
               !strncmp(reply->str, "H2CHAT_FORMAT ", 14)) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rd->s,
                     H2C_TAG_REDIS_ERROR ": stream %s on redis://%s:%d is in format %s, "
                                         "newer than this module's (" H2CHAT_REDIS_FORMAT
                                         "): nothing written; upgrade this server",
                     rd->key, rd->host, rd->port, reply->str + 14);
    } else {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rd->s,
                     H2C_TAG_REDIS_ERROR ": %s redis://%s:%d failed: %s", what, rd->host,
                     rd->port,
                     reply && reply->type == REDIS_REPLY_ERROR ? reply->str
                     : c->err                                  ? c->errstr
                                                               : "unexpected reply");
    }
    if (reply) {
        freeReplyObject(reply);
    }
    pool_give(rd, c, rv == APR_SUCCESS);
    return rv;
}

static apr_status_t redis_publish(h2c_store_t *store, const char *room,
                                  const char *fields, apr_size_t flen, uint64_t *id,
                                  int64_t *time_ms) {
    h2chat_redis_t *rd = store->impl;
    redisContext *c;
    redisReply *reply;
    int pooled;

    (void)room; /* the fields name it (h2c_policy_publish_body): readers route by them */
    if (flen + H2C_JSON_LINE_OVERHEAD > h2c_rooms_max_len(h2c_store_history(store))) {
        return APR_ENOSPC;
    }
    if (!(c = pool_take(rd, &pooled))) {
        return APR_ECONNREFUSED;
    }
    *time_ms = (int64_t)(apr_time_now() / 1000);
    reply = redisCommand(c, "EVAL %s 3 %s %s %s %b %lld %ld", publish_script, rd->key,
                         rd->id_key, rd->format_key, fields, flen, (long long)*time_ms,
                         rd->history);
    if (!reply && pooled && c->err == REDIS_ERR_EOF) {
        /* an idle connection Redis closed meanwhile (it restarted): the
         * script never ran, so once more on a new connection. Not after a
         * timeout: the script may have run, a retry could post twice. */
        redisFree(c);
        if (!(c = connect_redis(rd, REDIS_TIMEOUT_MS))) {
            return APR_ECONNREFUSED;
        }
        reply = redisCommand(c, "EVAL %s 3 %s %s %s %b %lld %ld", publish_script, rd->key,
                             rd->id_key, rd->format_key, fields, flen,
                             (long long)*time_ms, rd->history);
    }
    return script_done(rd, c, reply, "publish to", id);
}

/* The moderate op: checked against the local history first (it follows
 * Redis within a read), then logged in Redis for every node's reader,
 * which applies it to its rooms in its place. */
static apr_status_t redis_moderate(h2c_store_t *store, const char *room,
                                   h2c_entry_kind_t kind, uint64_t target,
                                   const char *line, apr_size_t len, uint64_t *id,
                                   int64_t *time_ms) {
    h2chat_redis_t *rd = store->impl;
    redisContext *c;
    redisReply *reply;
    char entry[32], pre[H2C_ROOMS_NAME_MAX + 16];
    int pooled;

    if (!h2c_store_has(store, room, kind, target)) {
        return APR_NOTFOUND;
    }
    if (!(c = pool_take(rd, &pooled))) {
        return APR_ECONNREFUSED;
    }
    apr_snprintf(entry, sizeof(entry), "%" APR_UINT64_T_FMT "-1", (apr_uint64_t)target);
    pre[0] = '\0';
    if (room && *room) {
        apr_snprintf(pre, sizeof(pre), "\"room\":\"%s\",",
                     room); /* a name needs no escape */
    }
    *time_ms = (int64_t)(apr_time_now() / 1000);
    reply = redisCommand(c, "EVAL %s 3 %s %s %s %b %lld %ld %s %s %s", moderate_script,
                         rd->key, rd->id_key, rd->format_key, line, len,
                         (long long)*time_ms, rd->history,
                         kind == H2C_ENTRY_DELETE ? "delete" : "clear", entry, pre);
    return script_done(rd, c, reply, "moderation in", id);
}

/* "<n>-1" -> n; 0 if it is not one of ours. */
static uint64_t entry_id(const char *s) {
    char *end;
    apr_uint64_t n = apr_strtoi64(s, &end, 10);

    return (*end == '-' && n > 0) ? (uint64_t)n : 0;
}

/* One stream entry [id, [f, <fields>, t, <time>]] into the rooms. */
static void feed_entry(h2chat_redis_t *rd, const redisReply *e) {
    const redisReply *kv;
    const char *fields = NULL, *whole = NULL;
    apr_size_t flen = 0, i, len = 0;
    int64_t t = 0;
    uint64_t id;
    h2c_rooms_t *rooms = h2c_store_history(rd->store);
    char room[H2C_ROOMS_NAME_MAX + 1];
    apr_status_t rv;

    if (e->type != REDIS_REPLY_ARRAY || e->elements != 2 ||
        e->element[0]->type != REDIS_REPLY_STRING ||
        e->element[1]->type != REDIS_REPLY_ARRAY) {
        return;
    }
    id = entry_id(e->element[0]->str);
    kv = e->element[1];
    for (i = 0; i + 1 < kv->elements; i += 2) {
        if (kv->element[i]->type != REDIS_REPLY_STRING ||
            kv->element[i + 1]->type != REDIS_REPLY_STRING) {
            continue;
        }
        if (!strcmp(kv->element[i]->str, "f")) {
            fields = kv->element[i + 1]->str;
            flen = kv->element[i + 1]->len;
        } else if (!strcmp(kv->element[i]->str, "l")) {
            whole = kv->element[i + 1]->str; /* a moderation line, as it is */
            len = kv->element[i + 1]->len;
        } else if (!strcmp(kv->element[i]->str, "t")) {
            t = (int64_t)apr_atoi64(kv->element[i + 1]->str);
        }
    }
    if (!id || (!fields && !whole) || id <= h2c_rooms_last_id(rooms)) {
        return;
    }
    if (whole && len <= h2c_rooms_max_len(rooms)) {
        memcpy(rd->line, whole, len);
    } else {
        len = fields ? h2c_json_format_message(rd->line, h2c_rooms_max_len(rooms), id, t,
                                               fields, flen)
                     : 0;
    }
    if (len == 0) {
        return; /* longer than this server's largest: not here */
    }
    /* the line names its room (the publisher's fields did) */
    if (h2c_json_line_room(rd->line, len, room) != APR_SUCCESS) {
        return; /* not ours to read: skipped, as a line too long */
    }
    rv = h2c_store_append_given(rd->store, room, id, t, rd->line, (uint32_t)len);
    if (rv == APR_SUCCESS) {
        h2c_seg_redis_set_last_id(rd->store->seg, id);
    } else {
        ap_log_error(APLOG_MARK, APLOG_WARNING, rv, rd->s,
                     "%s: message %" APR_UINT64_T_FMT " of room \"%s\" not kept here: %s",
                     rv == APR_EBUSY ? H2C_TAG_ROOMS_FULL : H2C_TAG_MEMORY,
                     (apr_uint64_t)id, room,
                     rv == APR_EBUSY ? "H2ChatMaxRooms rooms, all with streams"
                                     : "H2ChatMemory full of rooms with streams");
    }
}

/* One XREAD: 1 if the link is fine (entries or a timeout), 0 if broken. */
static int read_batch(h2chat_redis_t *rd, redisContext *c) {
    char from[32];
    redisReply *reply;
    size_t i;
    int ok = 1;

    apr_snprintf(from, sizeof(from), "%" APR_UINT64_T_FMT "-1",
                 (apr_uint64_t)h2c_rooms_last_id(h2c_store_history(rd->store)));
    reply = redisCommand(c, "XREAD COUNT %d BLOCK %d STREAMS %s %s", REDIS_BATCH,
                         REDIS_BLOCK_MS, rd->key, from);
    if (!reply) {
        return 0;
    }
    if (reply->type == REDIS_REPLY_ERROR) {
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rd->s,
                     H2C_TAG_REDIS_ERROR ": XREAD %s failed: %s", rd->key, reply->str);
        ok = 0;
    } else if (reply->type == REDIS_REPLY_ARRAY && reply->elements == 1 &&
               reply->element[0]->type == REDIS_REPLY_ARRAY &&
               reply->element[0]->elements == 2) {
        const redisReply *entries = reply->element[0]->element[1];

        for (i = 0; entries->type == REDIS_REPLY_ARRAY && i < entries->elements; i++) {
            feed_entry(rd, entries->element[i]);
        }
        h2c_store_wake(rd->store);
    }
    freeReplyObject(reply);
    return ok;
}

/* 1 if this module can read the stream's format (checked once per
 * connection of the reader); a newer one is logged once and not read: its
 * entries could mean what this module does not know. */
static int format_ok(h2chat_redis_t *rd, redisContext *c) {
    redisReply *reply = redisCommand(c, "GET %s", rd->format_key);
    long long v = reply && reply->type == REDIS_REPLY_STRING ? atoll(reply->str) : 0;
    int ok = reply && reply->type != REDIS_REPLY_ERROR && v <= atoll(H2CHAT_REDIS_FORMAT);

    if (reply && !ok && !rd->format_logged) {
        rd->format_logged = 1;
        ap_log_error(APLOG_MARK, APLOG_ERR, 0, rd->s,
                     H2C_TAG_REDIS_ERROR
                     ": stream %s on redis://%s:%d is in format %lld, "
                     "newer than this module's (" H2CHAT_REDIS_FORMAT
                     "): not read; upgrade this server",
                     rd->key, rd->host, rd->port, v);
    }
    if (reply) {
        freeReplyObject(reply);
    }
    return ok;
}

static void set_link(h2chat_redis_t *rd, uint32_t up) {
    if (h2c_seg_redis_set_up(rd->store->seg, up)) {
        ap_log_error(APLOG_MARK, up ? APLOG_NOTICE : APLOG_ERR, 0, rd->s,
                     H2C_TAG_REDIS_LINK ": redis://%s:%d is %s (stream %s, last id "
                                        "%" APR_UINT64_T_FMT ")",
                     rd->host, rd->port, up ? "up" : "down", rd->key,
                     (apr_uint64_t)h2c_rooms_last_id(h2c_store_history(rd->store)));
    }
}

static void nap(h2chat_redis_t *rd, long ms) {
    for (; ms > 0 && !rd->stop; ms -= 100) {
        apr_sleep(apr_time_from_msec(ms < 100 ? ms : 100));
    }
}

static void *APR_THREAD_FUNC reader_main(apr_thread_t *thd, void *data) {
    h2chat_redis_t *rd = data;
    redisContext *c = NULL;
    long backoff = 100;
    int reading = 0;

    while (!rd->stop) {
        if (h2c_seg_reader_claim(rd->store->seg, rd->pid) != APR_SUCCESS) {
            nap(rd, 500);
            continue;
        }
        if (!reading) {
            reading = 1;
            ap_log_error(APLOG_MARK, APLOG_INFO, 0, rd->s,
                         H2C_TAG_REDIS_READER ": this child follows stream %s from id "
                                              "%" APR_UINT64_T_FMT,
                         rd->key,
                         (apr_uint64_t)h2c_rooms_last_id(h2c_store_history(rd->store)));
        }
        if (!c && !(c = connect_redis(rd, REDIS_BLOCK_MS + REDIS_TIMEOUT_MS))) {
            set_link(rd, 0);
            nap(rd, backoff);
            backoff =
                backoff * 2 > REDIS_BACKOFF_MAX_MS ? REDIS_BACKOFF_MAX_MS : backoff * 2;
            continue;
        }
        if (!c->err && !rd->format_checked) {
            if (!format_ok(rd, c)) {
                redisFree(c);
                c = NULL;
                set_link(rd, 0);
                nap(rd, REDIS_BACKOFF_MAX_MS);
                continue;
            }
            rd->format_checked = 1;
        }
        set_link(rd, 1);
        backoff = 100;
        if (!read_batch(rd, c)) {
            redisFree(c);
            c = NULL;
            rd->format_checked = 0; /* a new connection looks again */
            set_link(rd, 0);
        }
    }
    if (c) {
        redisFree(c);
    }
    h2c_seg_reader_release(rd->store->seg, rd->pid);
    /* a plain return: apr_thread_exit() unwinds in a way ASan reports as
     * stack-use-after-scope; apr_thread_join() gets APR_SUCCESS either way */
    (void)thd;
    return NULL;
}

static apr_status_t redis_child_exit(void *data) {
    h2chat_redis_t *rd = data;
    apr_status_t rv;
    int i;

    rd->stop = 1;
    if (rd->reader) {
        apr_thread_join(&rv, rd->reader);
        rd->reader = NULL;
    }
    for (i = 0; i < rd->nidle; i++) {
        redisFree(rd->idle[i]);
    }
    rd->nidle = 0;
    return APR_SUCCESS;
}

/* The `stop` op (child_stopping): the reader lets go at once, so a new
 * child takes over. */
static void redis_stop(h2c_store_t *store) {
    ((h2chat_redis_t *)store->impl)->stop = 1;
}

/* The reader is made in child_init, before the MPM blocks signals for its
 * threads: it must never take the parent's SIGTERM (the MPM's handler
 * would then tear the child down from this thread), so it starts with
 * every signal blocked. */
static apr_status_t start_reader(h2chat_redis_t *rd, apr_pool_t *pchild) {
    sigset_t all, old;
    apr_status_t rv;

    sigfillset(&all);
    pthread_sigmask(SIG_BLOCK, &all, &old);
    rv = apr_thread_create(&rd->reader, NULL, reader_main, rd, pchild);
    pthread_sigmask(SIG_SETMASK, &old, NULL);
    return rv;
}

/* The `open` op, in each child: the connection pool and the reader. */
static apr_status_t redis_open(h2c_store_t *store, apr_pool_t *pchild) {
    h2chat_redis_t *rd = store->impl;
    apr_status_t rv;

    rd->nidle = 0;
    rd->reader = NULL;
    rd->stop = 0;
    rd->pid = (uint32_t)getpid();
    rd->line = apr_palloc(pchild, h2c_rooms_max_len(h2c_store_history(store)));
    if ((rv = apr_thread_mutex_create(&rd->pool_lock, APR_THREAD_MUTEX_DEFAULT,
                                      pchild)) != APR_SUCCESS) {
        return rv;
    }
    /* a pre-cleanup: the reader is joined before its pool (a subpool of
     * pchild) goes away */
    apr_pool_pre_cleanup_register(pchild, rd, redis_child_exit);
    return start_reader(rd, pchild);
}

/* The `status` op: H2ChatRedis (link), H2ChatRedisLastId, H2ChatRedisReader. */
static void redis_status(h2c_store_t *store, h2c_store_status_t *out) {
    const h2c_seg_t *seg = store->seg;

    out->field[0].name = "Redis";
    apr_cpystrn(out->field[0].value, h2c_seg_redis_up(seg) ? "up" : "down",
                sizeof(out->field[0].value));
    out->field[1].name = "RedisLastId";
    apr_snprintf(out->field[1].value, sizeof(out->field[1].value), "%" APR_UINT64_T_FMT,
                 (apr_uint64_t)h2c_seg_redis_last_id(seg));
    out->field[2].name = "RedisReader";
    apr_snprintf(out->field[2].value, sizeof(out->field[2].value), "%u",
                 h2c_seg_reader_pid(seg));
    out->n = 3;
}

static const h2c_store_ops_t redis_ops = {
    "redis", redis_open, redis_publish, redis_moderate, redis_status, redis_stop, 0,
};

/* H2ChatStore redis: the store over the segment (post_config, in the
 * parent; children inherit it and open it). APR_EINVAL without H2ChatRedis. */
apr_status_t h2chat_redis_store(server_rec *s, apr_pool_t *pconf, h2c_store_t *store,
                                h2c_seg_t *seg) {
    h2chat_srv_conf_t *sc = ap_get_module_config(s->module_config, &h2chat_module);

    if (!sc->redis_host) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, 0, s,
                     H2C_TAG_CONFIG ": H2ChatStore redis needs H2ChatRedis "
                                    "redis://host:port");
        return APR_EINVAL;
    }
    memset(&redis, 0, sizeof(redis));
    redis.s = s;
    redis.host = sc->redis_host;
    redis.port = sc->redis_port;
    redis.db = sc->redis_db;
    redis.key = sc->redis_key;
    redis.id_key = apr_pstrcat(pconf, sc->redis_key, ":id", NULL);
    redis.format_key = apr_pstrcat(pconf, sc->redis_key, ":format", NULL);
    redis.history = h2chat_conf_history(s);
    redis.store = store;
    h2c_store_init(store, &redis_ops, seg, NULL, &redis);
    return APR_SUCCESS;
}
