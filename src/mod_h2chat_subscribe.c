/* mod_h2chat_subscribe: GET <location> -> a held-open stream of messages.
 *
 * One handler thread per held stream, asleep on the ring's futex word while
 * nothing is new. On a wake it copies every message it has not sent yet into
 * one brigade and flushes once: a subscriber that fell behind catches up in
 * one write, so its cost follows wake-ups, not messages. Messages are already
 * encoded in the ring; per subscriber there is only framing and one copy.
 *
 * Closed clients: mod_http2 marks the stream's connection aborted when the
 * client resets it, and a blocked handler sees that only when it wakes. The
 * handler therefore also looks every H2C_ABORT_CHECK: a flag check for h2, a
 * zero-timeout poll of the socket for HTTP/1.1 (see docs/design.md).
 *
 * Clients that stop reading: a write blocks only once the kernel's send
 * queue is full, which heartbeats alone take days to reach. The same look
 * asks the kernel whether queued bytes are being acknowledged (h2c_sock); a
 * client that took none for `Timeout` is dropped (H2C0024). */
#include <poll.h>

#include "mod_h2chat.h"

#include <apr_strings.h>
#include <http_connection.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>

#include "h2c_follow.h"
#include "h2c_presence.h"
#include "h2c_frame.h"
#include "h2c_json.h"
#include "h2c_sock.h"
#include "h2c_wait.h"

#define H2C_ABORT_CHECK apr_time_from_sec(2)
#define H2C_BATCH_MESSAGES 256 /* flush at least this often when catching up */

typedef struct {
    request_rec *r;
    h2chat_state_t *st;
    h2c_rooms_t *rooms;
    h2c_follow_t follow;      /* its place in its rooms */
    const char *const *names; /* ... their names, for gap lines */
    h2c_presence_t presence;  /* the counts it told (H2ChatPresence count) */
    int presence_on;
    apr_bucket_brigade *bb; /* cleaned after each pass */
    apr_pool_t *scratch;    /* protocol lines of one pass: cleared after it, so
                               a held stream's memory does not grow with time */
    int sse;
    int tcp_fd;        /* the TCP socket the bytes leave by (h2: the session's), or -1 */
    uint64_t lat_from; /* ids from here were committed while it held: sampled */
    apr_interval_time_t heartbeat;
    apr_time_t heartbeat_due;
    apr_time_t check_due; /* next look for a closed or stalled client */
    h2c_stall_t stall;
    int stalled; /* dropped: the client stopped reading */
    apr_uint64_t sent;
} h2chat_sub_t;

/* A protocol line that is not a message: NDJSON line or SSE event. */
static void put_event(h2chat_sub_t *sub, const char *event, const char *json) {
    apr_size_t n = h2c_frame_event(sub->sse, event, json, NULL, 0);
    char *buf = apr_palloc(sub->scratch, n + 1);

    h2c_frame_event(sub->sse, event, json, buf, n + 1);
    apr_brigade_write(sub->bb, NULL, NULL, buf, n);
}

static void put_heartbeat(h2chat_sub_t *sub) {
    put_event(sub, "heartbeat",
              h2c_json_heartbeat(sub->scratch, (int64_t)(apr_time_now() / 1000)));
}

/* Appends message m, framed, as one heap bucket: the room's bytes are
 * copied once, straight into the bucket. */
static apr_status_t put_message(h2chat_sub_t *sub, const h2c_rooms_msg_t *m,
                                uint32_t *commit_us) {
    apr_bucket_alloc_t *ba = sub->r->connection->bucket_alloc;
    apr_size_t cap, n;
    char *buf;
    apr_status_t rv;

    /* the exact size: small ones come from the bucket allocator's free
     * list, a rounded-up size would take a whole 8 KiB block each */
    cap = h2c_frame_message_size(m, sub->sse);
    buf = apr_bucket_alloc(cap, ba);
    rv = h2c_frame_message(sub->rooms, m, sub->sse, buf, cap, &n, commit_us);
    if (rv != APR_SUCCESS) {
        apr_bucket_free(buf);
        return rv; /* left its room meanwhile */
    }
    APR_BRIGADE_INSERT_TAIL(sub->bb, apr_bucket_heap_create(buf, n, apr_bucket_free, ba));
    return APR_SUCCESS;
}

static void put_gap(h2chat_sub_t *sub, const h2c_follow_gap_t *gap) {
    put_event(sub, "gap",
              h2c_json_gap(sub->scratch, sub->names[gap->which], gap->missed, gap->from,
                           gap->to));
}

static apr_status_t flush(h2chat_sub_t *sub) {
    apr_status_t rv;

    APR_BRIGADE_INSERT_TAIL(sub->bb,
                            apr_bucket_flush_create(sub->r->connection->bucket_alloc));
    rv = ap_pass_brigade(sub->r->output_filters, sub->bb);
    apr_brigade_cleanup(sub->bb);
    apr_pool_clear(sub->scratch);
    sub->heartbeat_due = apr_time_now() + sub->heartbeat;
    if (rv == APR_SUCCESS && sub->r->connection->aborted) {
        rv = APR_ECONNABORTED;
    }
    return rv;
}

/* Sends what is new, in batches: at most H2C_BATCH_MESSAGES a flush. */
static apr_status_t send_pending(h2chat_sub_t *sub) {
    h2c_follow_gap_t gap;
    h2c_rooms_msg_t m;
    uint32_t stamp = 0, at;
    apr_status_t rv;
    int n = 0, lost = 0;

    while (n < H2C_BATCH_MESSAGES && lost < H2C_BATCH_MESSAGES) {
        switch (h2c_follow_next(&sub->follow, &m, &gap)) {
        case H2C_FOLLOW_GAP:
            put_gap(sub, &gap);
            continue;
        case H2C_FOLLOW_MESSAGE:
            if (put_message(sub, &m, &at) != APR_SUCCESS) {
                lost++; /* left meanwhile: the next look says how */
                continue;
            }
            h2c_follow_sent(&sub->follow, &m, gap.which);
            if (m.id >= sub->lat_from) {
                stamp = at;
            }
            sub->sent++;
            n++;
            if (h2c_follow_ended(&sub->follow)) {
                break; /* its room was cleared: nothing after that */
            }
            continue;
        default:
            break;
        }
        break;
    }
    rv = flush(sub);
    /* the pass's newest message is with the connection's filters now */
    if (rv == APR_SUCCESS && stamp) {
        h2c_seg_lat_sample(&sub->st->seg, sub->st->child_slot, stamp);
    }
    return rv;
}

/* The child stops: the stream's last event tells its client when to come
 * back (H2ChatReconnectSpread), flushed before the response ends (h2: ahead
 * of mod_http2's EOS; HTTP/1.1: ahead of the last chunk). */
static void put_reconnect(h2chat_sub_t *sub) {
    const char *json = NULL;
    uint32_t ms;
    apr_size_t n;
    char *buf;

    if (sub->r->connection->aborted || !h2chat_spread_draw(&ms)) {
        return;
    }
    if (!sub->sse) {
        json = h2c_json_reconnect(sub->scratch, ms);
    }
    n = h2c_frame_reconnect(sub->sse, ms, json, NULL, 0);
    buf = apr_palloc(sub->scratch, n + 1);
    h2c_frame_reconnect(sub->sse, ms, json, buf, n + 1);
    apr_brigade_write(sub->bb, NULL, NULL, buf, n);
    flush(sub);
}

static int stopping(const h2chat_state_t *st) {
    return __atomic_load_n(&st->stopping, __ATOMIC_ACQUIRE);
}

static int client_gone(h2chat_sub_t *sub) {
    struct pollfd pfd;

    if (sub->r->connection->aborted) {
        return 1;
    }
    /* an h2 stream's socket is the whole session's: not ours to poll */
    if (sub->tcp_fd < 0 || sub->r->connection->master) {
        return 0;
    }
    pfd.fd = sub->tcp_fd;
    pfd.events = POLLRDHUP;
    pfd.revents = 0;
    return poll(&pfd, 1, 0) > 0 && (pfd.revents & (POLLRDHUP | POLLHUP | POLLERR));
}

/* Bytes wait in the kernel and the client acknowledged none of them for
 * `Timeout`: it stopped reading, or its network is gone without a FIN. */
static int client_stalled(h2chat_sub_t *sub, apr_time_t now) {
    request_rec *r = sub->r;
    uint32_t queued;
    uint64_t acked;

    if (sub->tcp_fd < 0 || h2c_sock_queue(sub->tcp_fd, &queued, &acked) != 0 ||
        !h2c_stall_update(&sub->stall, queued, acked, now, r->server->timeout)) {
        return 0;
    }
    sub->stalled = 1;
    h2c_seg_count_stalled(&sub->st->seg);
    ap_log_rerror(APLOG_MARK, APLOG_INFO, 0, r,
                  H2C_TAG_STALLED ": subscriber dropped: its client acknowledged nothing "
                                  "for %" APR_TIME_T_FMT " s with %u bytes waiting",
                  apr_time_sec(now - sub->stall.since), queued);
    if (!r->connection->master) {
        /* our own connection: write nothing more to it, close it */
        r->connection->keepalive = AP_CONN_CLOSE;
        r->connection->aborted = 1;
    }
    return 1;
}

static void put_presence(void *ctx, uint32_t which, uint32_t count) {
    h2chat_sub_t *sub = ctx;

    put_event(sub, "presence",
              h2c_json_presence(sub->scratch, sub->names[which], count, 1));
}

/* H2ChatPresence members: a room's list, a join or a leave (a name jansson
 * cannot encode is left out; h2c_policy_member lets none in) */
static void put_members(void *ctx, uint32_t which) {
    h2chat_sub_t *sub = ctx;
    const char *json = h2c_json_members(
        sub->scratch, sub->names[which],
        h2c_presence_names(sub->presence.ms, sub->follow.r[which].room, sub->scratch));

    if (json) {
        put_event(sub, "members", json);
    }
}

static void put_member(void *ctx, uint32_t which, h2c_member_kind_t kind,
                       const char *name, uint32_t len) {
    h2chat_sub_t *sub = ctx;
    int join = kind == H2C_MEMBER_JOIN;
    const char *json = h2c_json_member(sub->scratch, sub->names[which], join, name, len);

    if (json) {
        put_event(sub, join ? "join" : "leave", json);
    }
}

static const h2c_presence_fns_t presence_fns = {put_presence, put_members, put_member};

/* Tells the counts of its rooms that changed, if a look is due; *wait: else
 * when one may be (0: none pending). */
static apr_status_t send_presence(h2chat_sub_t *sub, apr_time_t now, apr_time_t *wait) {
    int64_t w = 0;

    *wait = 0;
    if (!sub->presence_on) {
        return APR_SUCCESS;
    }
    if (!h2c_presence_due(&sub->presence, sub->rooms, now, &w)) {
        *wait = (apr_time_t)w;
        return APR_SUCCESS;
    }
    if (!h2c_presence_look(&sub->presence, &sub->follow, now, &presence_fns, sub)) {
        return APR_SUCCESS;
    }
    return flush(sub);
}

/* The held part: wait, send, until the client leaves or the child stops. */
static void hold(h2chat_sub_t *sub) {
    volatile uint32_t *seq = h2c_rooms_seq(sub->rooms);

    for (;;) {
        uint32_t seen = h2c_wait_read(seq);
        apr_time_t now, wake, wait;

        if (stopping(sub->st)) {
            return;
        }
        if (h2c_follow_pending(&sub->follow)) {
            if (send_pending(sub) != APR_SUCCESS || h2c_follow_ended(&sub->follow)) {
                return;
            }
            continue;
        }
        now = apr_time_now();
        if (send_presence(sub, now, &wait) != APR_SUCCESS) {
            return;
        }
        if (now >= sub->heartbeat_due) {
            put_heartbeat(sub);
            if (flush(sub) != APR_SUCCESS) {
                return;
            }
            continue;
        }
        if (now >= sub->check_due) {
            sub->check_due = now + H2C_ABORT_CHECK;
            if (client_gone(sub) || client_stalled(sub, now)) {
                return;
            }
        }
        wake = sub->heartbeat_due < sub->check_due ? sub->heartbeat_due : sub->check_due;
        if (wait > 0 && now + wait < wake) {
            wake = now + wait; /* a count changed within the last second */
        }
        h2c_wait_change(seq, seen, wake - now);
        if (sub->r->connection->aborted) {
            return;
        }
    }
}

/* The stream's places in the counts go back when its request ends; not
 * once the child gave its row up (child_exit: usable is 0). */
static apr_status_t leave(void *data) {
    if (h2chat_state()->usable) {
        h2c_policy_release(data);
    }
    return APR_SUCCESS;
}

/* GET ...?presence: the rooms' counts now (and, H2ChatPresence members,
 * who), one JSON object (an array of them for several rooms); nothing is
 * held. */
static int answer_presence(request_rec *r, h2chat_state_t *st, apr_array_header_t *names,
                           int members) {
    uint32_t i, n = (uint32_t)names->nelts,
                *counts = apr_palloc(r->pool, n * sizeof(uint32_t)),
                *idx = apr_palloc(r->pool, n * sizeof(uint32_t));
    const char *const *room = (const char *const *)(void *)names->elts;
    apr_array_header_t **who = NULL;
    h2c_verdict_t v;

    if (h2c_store_counts(&st->store, room, n, counts, idx) != APR_SUCCESS) {
        h2c_policy_refuse(&v, H2C_DENY_UNAVAILABLE, NULL);
        return h2chat_reply_refusal(r, &v);
    }
    if (members) {
        who = apr_palloc(r->pool, n * sizeof(*who));
        for (i = 0; i < n; i++) {
            who[i] = h2c_presence_names(&st->seg.members, idx[i], r->pool);
        }
    }
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache, no-store");
    h2chat_reply_json(r, HTTP_OK, h2c_json_presence_list(r->pool, room, counts, who, n));
    return OK;
}

/* A stream of several rooms: each room is checked as if its own URL had
 * been requested (<Location>, <LocationMatch>, Require: httpd's access
 * hooks, by a subrequest), except the request's own, which passed them. */
static int rooms_allowed(request_rec *r, const h2c_policy_conf_t *conf,
                         apr_array_header_t *names, h2c_verdict_t *v) {
    int i, status;

    for (i = 0; conf->rooms_base && i < names->nelts; i++) {
        const char *name = APR_ARRAY_IDX(names, i, const char *);
        const char *uri = apr_pstrcat(r->pool, conf->rooms_base, "/", name, NULL);
        request_rec *sub;

        if (!*name || !strcmp(uri, r->uri) ||
            !strcmp(apr_pstrcat(r->pool, uri, "/", NULL), r->uri)) {
            continue;
        }
        sub = ap_sub_req_lookup_uri(uri, r, NULL);
        status = sub->status;
        ap_destroy_sub_req(sub);
        if (status != HTTP_OK) {
            h2c_policy_refuse(v, H2C_DENY_ROOM_FORBIDDEN,
                              apr_psprintf(r->pool,
                                           "room \"%s\" is forbidden here (its URL %s "
                                           "answers %d)",
                                           name, uri, status));
            return 0;
        }
    }
    return 1;
}

/* The rooms a stream held (and its member records), let go when its
 * request ends. */
typedef struct {
    uint32_t *idx;
    uint32_t *mem; /* NULL: the stream names nobody */
    uint32_t n;
} held_rooms_t;

static apr_status_t leave_rooms(void *data) {
    held_rooms_t *h = data;

    if (h2chat_state()->usable) {
        h2c_store_release(&h2chat_state()->store, h2chat_state()->child_slot, h->idx,
                          h->mem, h->n);
    }
    return APR_SUCCESS;
}

/* Holds the stream's rooms (as `member` in each, when named) for as long
 * as its request lives. */
static int hold_rooms(request_rec *r, h2chat_state_t *st, apr_array_header_t *names,
                      const char *member, held_rooms_t **held, h2c_verdict_t *v) {
    held_rooms_t *h = apr_palloc(r->pool, sizeof(*h));
    apr_status_t rv;

    h->n = (uint32_t)names->nelts;
    h->idx = apr_palloc(r->pool, h->n * sizeof(uint32_t));
    h->mem = member ? apr_pcalloc(r->pool, h->n * sizeof(uint32_t)) : NULL;
    if ((rv = h2c_store_hold(&st->store, st->child_slot,
                             (const char *const *)(void *)names->elts, h->n, member,
                             h->idx, h->mem)) != APR_SUCCESS) {
        h2c_policy_store_refusal(v, rv);
        return 0;
    }
    apr_pool_cleanup_register(r->pool, h, leave_rooms, apr_pool_cleanup_null);
    *held = h;
    return 1;
}

/* Where a new stream starts (see h2c_follow_start). */
static void choose_start(h2chat_sub_t *sub, const held_rooms_t *held, int resume,
                         uint64_t since, uint32_t snapshot) {
    h2c_follow_room_t *mem = NULL;
    int reset;

    if (held->n > 1) {
        mem = apr_palloc(sub->r->pool, held->n * sizeof(*mem));
    }
    h2c_follow_start(&sub->follow, sub->rooms, held->idx, held->n, mem, resume, since,
                     snapshot, &reset);
    if (reset) {
        put_event(sub, "reset",
                  h2c_json_reset(sub->scratch, h2c_rooms_last_id(sub->rooms)));
    }
}

static void prepare_response(request_rec *r, int sse, uint32_t heartbeat) {
    ap_set_content_type(r, h2c_policy_stream_type(sse));
    apr_table_setn(r->headers_out, "Cache-Control", "no-cache, no-store");
    apr_table_setn(r->headers_out, "X-Accel-Buffering", "no");
    /* lets a client tell a quiet stream from a dead one */
    apr_table_setn(r->headers_out, "X-H2Chat-Heartbeat",
                   apr_itoa(r->pool, (int)heartbeat));
    /* compression would hold bytes back until a buffer fills */
    apr_table_setn(r->subprocess_env, "no-gzip", "1");
    r->no_local_copy = 1;
}

int h2chat_subscribe(request_rec *r, const h2chat_dir_conf_t *dc) {
    h2chat_state_t *st = h2chat_state();
    h2c_policy_conf_t conf;
    h2c_request_t req;
    h2c_subscription_t want;
    h2c_verdict_t v;
    h2c_hold_t *counted;
    apr_array_header_t *names;
    held_rooms_t *held;
    h2chat_sub_t sub;
    apr_os_sock_t fd;

    h2chat_conf_policy(dc, &conf);
    h2chat_request_describe(r, &req);
    if (!h2c_policy_subscribe(&req, st->usable, &want, &v) ||
        !h2c_policy_rooms(&conf, &req, 1, r->pool, &names, &v) ||
        !rooms_allowed(r, &conf, names, &v) ||
        !h2c_policy_member(&conf, &req, r->user, r->pool, &want.member, &v)) {
        return h2chat_reply_refusal(r, &v);
    }
    if (want.presence_query) {
        return answer_presence(r, st, names, conf.presence == H2C_PRESENCE_MEMBERS);
    }
    prepare_response(r, want.sse, conf.heartbeat_s);
    if (r->header_only) {
        return OK;
    }
    /* the caps, in the policy's order; the address is mod_remoteip's
     * client when it is configured (r->useragent_ip), as for the rate */
    counted = apr_palloc(r->pool, sizeof(*counted));
    if (!h2c_policy_hold(&st->seg, st->child_slot, &st->limits, req.client, counted,
                         &v)) {
        return h2chat_reply_refusal(r, &v);
    }
    apr_pool_cleanup_register(r->pool, counted, leave, apr_pool_cleanup_null);
    if (!hold_rooms(r, st, names, want.member, &held, &v)) {
        return h2chat_reply_refusal(r, &v);
    }

    memset(&sub, 0, sizeof(sub));
    sub.r = r;
    sub.st = st;
    sub.rooms = h2c_store_history(&st->store);
    sub.names = (const char *const *)(void *)names->elts;
    sub.sse = want.sse;
    sub.bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_pool_create(&sub.scratch, r->pool);
    apr_pool_tag(sub.scratch, "h2chat_sub_scratch");
    sub.heartbeat = apr_time_from_sec(conf.heartbeat_s);
    sub.tcp_fd = -1;
    sub.check_due = apr_time_now() + H2C_ABORT_CHECK;
    /* h2 streams run on a secondary connection: the session's socket is
     * the one whose send queue tells whether the client still reads (the
     * session outlives its streams). */
    if (apr_os_sock_get(&fd, ap_get_conn_socket(r->connection->master
                                                    ? r->connection->master
                                                    : r->connection)) == APR_SUCCESS) {
        sub.tcp_fd = fd;
    }
    choose_start(&sub, held, want.resume, want.since, conf.snapshot);
    sub.lat_from = h2c_rooms_last_id(sub.rooms) + 1;
    sub.presence_on = conf.presence;
    h2c_presence_init(&sub.presence, held->n,
                      held->n > 1 ? apr_palloc(r->pool, held->n * sizeof(uint32_t))
                                  : NULL,
                      conf.presence == H2C_PRESENCE_MEMBERS ? &st->seg.members : NULL);
    ap_log_rerror(
        APLOG_MARK, APLOG_DEBUG, 0, r,
        H2C_TAG_SUB_START ": subscriber starts at id %" APR_UINT64_T_FMT " (%s)",
        (apr_uint64_t)h2c_follow_last(&sub.follow) + 1, sub.sse ? "sse" : "ndjson");
    /* headers and snapshot go out at once, even when there is nothing */
    if (send_pending(&sub) == APR_SUCCESS &&
        send_presence(&sub, apr_time_now(), &(apr_time_t){0}) == APR_SUCCESS) {
        hold(&sub);
        if (stopping(st) && !sub.stalled) {
            put_reconnect(&sub);
        }
    }
    ap_log_rerror(
        APLOG_MARK, APLOG_DEBUG, 0, r,
        H2C_TAG_SUB_END ": subscriber ends after %" APR_UINT64_T_FMT " messages (%s)",
        sub.sent,
        st->stopping                    ? "child stopping"
        : h2c_follow_ended(&sub.follow) ? "its room was cleared"
        : sub.stalled                   ? "client stopped reading"
                      : (r->connection->aborted ? "client gone" : "write failed"));
    return OK;
}
