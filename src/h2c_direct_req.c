/* h2c_direct_req: the requests of the direct loop (see h2c_direct.h) —
 * nghttp2's request callbacks, subscribers, publishes and replies. Same
 * statuses, bodies, counters and log tags as the handler's path. */
#include <stdlib.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "h2c_direct_int.h"
#include "h2c_frame.h"
#include "h2c_json.h"
#include "h2c_room.h"
#include "h2c_tags.h"

/* one header into nv[n++]: names and values are copied by nghttp2 */
#define NV(k, v)                                                                         \
    nv[n++] = (nghttp2_nv) {                                                             \
        (uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE       \
    }

static void req_free(strm_t *s);

static int64_t heartbeat_us(const conn_t *c) {
    return (int64_t)c->site->conf.heartbeat_s * 1000000;
}

/* ---- subscribers ------------------------------------------------------ */

/* Makes room for n more bytes after what is pending; where they go, or
 * NULL if out of memory. */
static char *sub_room(strm_t *s, apr_size_t n) {
    apr_size_t keep = s->out_len - s->out_off;
    char *buf = malloc(keep + n + 1);

    if (!buf) {
        return NULL;
    }
    if (keep) {
        memcpy(buf, s->out + s->out_off, keep);
    }
    free(s->out);
    s->out = buf;
    s->out_len = keep + n;
    s->out_off = 0;
    return buf + keep;
}

/* Adds a protocol line after what is pending; 0 if out of memory. */
static int sub_line(strm_t *s, const char *event, const char *json) {
    apr_size_t n = h2c_frame_event(s->sse, event, json, NULL, 0);
    char *at = sub_room(s, n);

    if (!at) {
        return 0;
    }
    h2c_frame_event(s->sse, event, json, at, n + 1);
    return 1;
}

static void presence_line(void *ctx, uint32_t which, uint32_t count) {
    strm_t *s = ctx;
    char name[H2C_ROOMS_NAME_MAX + 1];

    h2c_rooms_room_name(s->c->d->rooms, s->rooms[which], name);
    sub_line(s, "presence", h2c_json_presence(s->c->d->scratch, name, count, 1));
}

/* H2ChatPresence members: a room's list, a join or a leave. */
static void members_line(void *ctx, uint32_t which) {
    strm_t *s = ctx;
    apr_pool_t *p = s->c->d->scratch;
    char name[H2C_ROOMS_NAME_MAX + 1];
    const char *json;

    h2c_rooms_room_name(s->c->d->rooms, s->rooms[which], name);
    json =
        h2c_json_members(p, name, h2c_presence_names(s->presence.ms, s->rooms[which], p));
    if (json) {
        sub_line(s, "members", json);
    }
}

static void member_line(void *ctx, uint32_t which, h2c_member_kind_t kind,
                        const char *who, uint32_t len) {
    strm_t *s = ctx;
    int join = kind == H2C_MEMBER_JOIN;
    char name[H2C_ROOMS_NAME_MAX + 1];
    const char *json;

    h2c_rooms_room_name(s->c->d->rooms, s->rooms[which], name);
    if ((json = h2c_json_member(s->c->d->scratch, name, join, who, len))) {
        sub_line(s, join ? "join" : "leave", json);
    }
}

static const h2c_presence_fns_t presence_fns = {presence_line, members_line, member_line};

int h2c_direct_presence(strm_t *s) {
    int64_t wait;

    if (s->kind != STRM_SUB || !s->c->site->conf.presence || s->presence_off ||
        !h2c_presence_due(&s->presence, s->c->d->rooms, s->c->d->now_us, &wait)) {
        return 0;
    }
    return h2c_presence_look(&s->presence, &s->follow, s->c->d->now_us, &presence_fns,
                             s) > 0;
}

void h2c_direct_heartbeat(strm_t *s) {
    sub_line(s, "heartbeat", h2c_json_heartbeat(s->c->d->scratch, h2c_direct_wall_ms()));
}

/* The loop stops: the stream's last event tells its client when to come
 * back (H2ChatReconnectSpread); its END_STREAM follows it. */
void h2c_direct_hint(strm_t *s) {
    h2c_spread_t *spread = s->c->d->env.spread;
    const char *json = NULL;
    uint32_t ms;
    apr_size_t n;
    char *at;

    if (!spread || !h2c_spread_draw(spread, &ms)) {
        return;
    }
    if (!s->sse) {
        json = h2c_json_reconnect(s->c->d->scratch, ms);
    }
    n = h2c_frame_reconnect(s->sse, ms, json, NULL, 0);
    if ((at = sub_room(s, n))) {
        h2c_frame_reconnect(s->sse, ms, json, at, n + 1);
    }
}

/* A message too big for the space left in this DATA frame goes through
 * `out`, to be split across frames. 0 if it left its room meanwhile. */
static int sub_spill(strm_t *s, const h2c_rooms_msg_t *m, uint32_t *commit_us) {
    apr_size_t n;
    char *buf;

    if (!(buf = malloc(m->len + H2C_FRAME_OVERHEAD))) {
        return 0;
    }
    if (h2c_frame_message(s->c->d->rooms, m, s->sse, buf, m->len + H2C_FRAME_OVERHEAD, &n,
                          commit_us) != APR_SUCCESS) {
        free(buf);
        return 0;
    }
    free(s->out);
    s->out = buf;
    s->out_len = n;
    s->out_off = 0;
    return 1;
}

/* Messages of one of the stream's rooms left before it read them: a gap
 * line naming the room (the stream keeps indexes, the rooms the names). */
static void sub_gap(strm_t *s, const h2c_follow_gap_t *gap) {
    char name[H2C_ROOMS_NAME_MAX + 1];

    h2c_rooms_room_name(s->c->d->rooms, s->rooms[gap->which], name);
    sub_line(s, "gap",
             h2c_json_gap(s->c->d->scratch, name, gap->missed, gap->from, gap->to));
}

/* Message m (of the stream's room `which`) went into the stream's frames. */
static void sub_sent(strm_t *s, const h2c_rooms_msg_t *m, uint32_t which,
                     uint32_t commit_us) {
    h2c_follow_sent(&s->follow, m, which);
    if (h2c_follow_ended(&s->follow)) {
        s->ending = 1; /* its room was cleared: the stream ends after it */
    }
    s->sent++;
    if (m->id >= s->lat_from) {
        s->lat_id = m->id;
        s->lat_us = commit_us;
    }
}

int h2c_direct_has_pending(const strm_t *s) {
    switch (s->kind) {
    case STRM_NEW:
        return 1; /* a request that is not complete yet */
    case STRM_SUB:
        return s->out_off < s->out_len || s->ending || h2c_follow_pending(&s->follow);
    case STRM_REPLY:
        return s->out_off < s->out_len;
    default:
        return 0; /* STRM_WAIT: the publisher's turn */
    }
}

/* nghttp2 asks for the next DATA frame's bytes: pending lines first, then
 * every message the stream has not sent, straight from its room. */
static ssize_t sub_read(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *src, void *user) {
    strm_t *s = src->ptr;
    h2c_rooms_t *rooms = s->c->d->rooms;
    h2c_follow_gap_t gap;
    h2c_rooms_msg_t msg;
    apr_size_t n = 0, m;
    uint32_t us;
    int more = 1, lost = 0;

    (void)ngh, (void)id, (void)user;
    if (length > H2C_DIRECT_DATA_MAX) {
        length = H2C_DIRECT_DATA_MAX;
    }
    while (more) {
        if (s->out_off < s->out_len) {
            m = s->out_len - s->out_off;
            m = m < length - n ? m : length - n;
            memcpy(buf + n, s->out + s->out_off, m);
            s->out_off += m;
            n += m;
            more = s->out_off == s->out_len;
            if (more) { /* a held stream keeps no empty buffer between lines */
                free(s->out);
                s->out = NULL;
                s->out_len = s->out_off = 0;
            }
            continue;
        }
        if (s->ending) {
            *flags |= NGHTTP2_DATA_FLAG_EOF;
            break;
        }
        if (n == length) {
            break;
        }
        switch (h2c_follow_next(&s->follow, &msg, &gap)) {
        case H2C_FOLLOW_GAP:
            sub_gap(s, &gap);
            continue;
        case H2C_FOLLOW_MESSAGE:
            break;
        default:
            more = 0; /* nothing new: the next wake brings it */
            continue;
        }
        switch (h2c_frame_message(rooms, &msg, s->sse, (char *)buf + n, length - n, &m,
                                  &us)) {
        case APR_SUCCESS:
            n += m;
            sub_sent(s, &msg, gap.which, us);
            break;
        case APR_ENOSPC:
            if (n > 0) {
                more = 0; /* the next frame takes it */
            } else if (sub_spill(s, &msg, &us)) {
                sub_sent(s, &msg, gap.which, us);
            } else if (++lost > 8) {
                more = 0;
            }
            break;
        default:
            more = ++lost <= 8; /* left meanwhile: the next look says how */
            break;
        }
    }
    if (n == 0 && !(*flags & NGHTTP2_DATA_FLAG_EOF)) {
        s->deferred = 1;
        return NGHTTP2_ERR_DEFERRED;
    }
    s->progress = s->c->d->now_us;
    s->heartbeat_due = s->c->d->now_us + heartbeat_us(s->c);
    h2c_direct_sent_data(s, n);
    return (ssize_t)n;
}

/* Hands a job to the publisher thread; once it has left (the loop stops),
 * runs it here and answers it at once. */
static void job_submit(h2c_direct_t *d, job_t *job) {
    int done;

    apr_thread_mutex_lock(d->lock);
    done = d->publisher_done;
    if (!done) {
        *d->jobs_in_tail = job;
        d->jobs_in_tail = &job->next;
        apr_thread_cond_signal(d->cond);
    }
    apr_thread_mutex_unlock(d->lock);
    if (done) {
        h2c_direct_job_run(d, job);
        h2c_direct_published(d, job);
    }
}

/* A job for stream s (NULL: none waits for it), or NULL out of memory. */
static job_t *job_make(strm_t *s, job_kind_t kind) {
    job_t *job = calloc(1, sizeof(*job));

    if (job) {
        job->kind = kind;
        job->s = s;
        if (s) {
            s->job = job;
            s->kind = STRM_WAIT;
        }
    }
    return job;
}

/* A held stream is gone: its rooms are let go by the publisher thread
 * (the global lock is never taken on the loop). */
static void release_rooms(strm_t *s) {
    job_t *job;

    if (!s->nrooms) {
        return;
    }
    if ((job = job_make(NULL, JOB_RELEASE))) {
        job->idx = s->rooms;
        job->aux = s->mem;
        job->n = s->nrooms;
        job_submit(s->c->d, job);
    } else {
        free(s->rooms); /* out of memory: the rooms stay held (a leak, logged) */
        free(s->mem);
        h2c_log(H2C_LOG_ERR, H2C_TAG_DIRECT_CONN, "out of memory: rooms stay held");
    }
    s->rooms = NULL;
    s->mem = NULL;
    s->nrooms = 0;
}

/* A held stream's response headers (a HEAD's too): 6 into nv; hb (24
 * bytes) holds the heartbeat's digits. */
static size_t stream_headers(strm_t *s, nghttp2_nv *nv, char *hb) {
    size_t n = 0;

    apr_snprintf(hb, 24, "%u", s->c->site->conf.heartbeat_s);
    NV(":status", "200");
    NV("date", s->c->d->date);
    NV("content-type", h2c_policy_stream_type(s->sse));
    NV("cache-control", "no-cache, no-store");
    NV("x-accel-buffering", "no");
    NV("x-h2chat-heartbeat", hb);
    return n + h2c_direct_cors(s, nv + n);
}

/* The response of a subscriber whose rooms are held: headers, where it
 * starts, then DATA as messages come. */
static void sub_start(strm_t *s) {
    h2c_direct_t *d = s->c->d;
    const h2c_direct_site_t *site = s->c->site;
    h2c_rooms_t *rooms = d->rooms;
    h2c_follow_room_t *mem = NULL;
    uint32_t *told;
    h2c_verdict_t v;
    int reset;
    char hb[24];
    nghttp2_nv nv[10];
    size_t n = 0;
    nghttp2_data_provider dp;

    if (s->nrooms > 1 && !(mem = malloc(s->nrooms * sizeof(*mem)))) {
        h2c_policy_refuse(&v, H2C_DENY_UNAVAILABLE, NULL);
        h2c_direct_refuse(s, &v);
        return;
    }
    n = stream_headers(s, nv, hb);
    s->status = 200;
    s->kind = STRM_SUB;
    s->entered = 1;
    h2c_seg_direct_count(d->env.seg, d->env.child_slot, 0, 1);
    h2c_follow_start(&s->follow, rooms, s->rooms, s->nrooms, mem, s->resume, s->since,
                     site->conf.snapshot, &reset);
    s->lat_from = h2c_rooms_last_id(rooms) + 1;
    told = s->nrooms > 1 ? calloc(s->nrooms, sizeof(uint32_t)) : NULL;
    s->presence_off = s->nrooms > 1 && !told; /* no memory: no presence lines */
    h2c_presence_init(&s->presence, s->presence_off ? 1 : s->nrooms, told,
                      site->conf.presence == H2C_PRESENCE_MEMBERS ? &d->env.seg->members
                                                                  : NULL);
    if (reset) {
        sub_line(s, "reset", h2c_json_reset(d->scratch, h2c_rooms_last_id(rooms)));
    }
    s->heartbeat_due = d->now_us + heartbeat_us(s->c);
    h2c_log(H2C_LOG_DEBUG, H2C_TAG_SUB_START,
            "subscriber starts at id %" APR_UINT64_T_FMT
            " (%s, direct, %u room%s, client %s)",
            (apr_uint64_t)h2c_follow_last(&s->follow) + 1, s->sse ? "sse" : "ndjson",
            s->nrooms, s->nrooms == 1 ? "" : "s", s->c->peer);
    dp.source.ptr = s;
    dp.read_callback = sub_read;
    nghttp2_submit_response(s->c->ngh, s->id, nv, n, &dp);
    req_free(s); /* a held stream lives long: its request is done with */
}

/* A subscriber: the policy's checks and caps here; its rooms are held by
 * the publisher thread (they may be new: the global lock), then sub_start. */
/* A job carrying the request's room names (one malloc with the strings)
 * and n indexes or counts for the answer; NULL out of memory. */
static job_t *job_rooms(strm_t *s, job_kind_t kind, const apr_array_header_t *names) {
    apr_size_t bytes = 0;
    job_t *job;
    char *at;
    int i;

    for (i = 0; i < names->nelts; i++) {
        bytes += sizeof(char *) + strlen(APR_ARRAY_IDX(names, i, const char *)) + 1;
    }
    if (!(job = job_make(s, kind)) || !(job->names = malloc(bytes)) ||
        !(job->idx = malloc((apr_size_t)names->nelts * sizeof(uint32_t)))) {
        if (job) {
            s->job = NULL;
            h2c_direct_job_free(job);
        }
        return NULL;
    }
    job->n = (uint32_t)names->nelts;
    at = (char *)(job->names + job->n);
    for (i = 0; i < names->nelts; i++) {
        job->names[i] = at;
        at = stpcpy(at, APR_ARRAY_IDX(names, i, const char *)) + 1;
    }
    return job;
}

/* A subscriber: the policy's checks and caps here; its rooms are held by
 * the publisher thread (they may be new: the global lock), then sub_start.
 * ?presence: the rooms' counts, looked up there too, and no stream. */
static void subscribe(strm_t *s, const char *path, const char *args) {
    h2c_direct_t *d = s->c->d;
    const h2c_direct_site_t *site = s->c->site;
    h2c_subscription_t want;
    apr_array_header_t *names;
    h2c_request_t req;
    h2c_verdict_t v;
    char hb[24];
    nghttp2_nv nv[10];
    size_t n = 0;
    job_t *job;

    h2c_direct_describe(s, path, args, &req);
    if (!h2c_policy_subscribe(&req, 1, &want, &v) ||
        !h2c_policy_rooms(&site->conf, &req, 1, d->scratch, &names, &v) ||
        !h2c_policy_member(&site->conf, &req, s->user, d->scratch, &want.member, &v)) {
        h2c_direct_refuse(s, &v);
        return;
    }
    s->sse = want.sse;
    if (want.presence_query) {
        if (!(job = job_rooms(s, JOB_COUNTS, names)) ||
            (site->conf.presence == H2C_PRESENCE_MEMBERS &&
             !(job->aux = calloc(job->n, sizeof(uint32_t))))) {
            if (job) {
                s->job = NULL;
                s->kind = STRM_NEW;
                h2c_direct_job_free(job);
            }
            h2c_policy_refuse(&v, H2C_DENY_UNAVAILABLE, NULL);
            h2c_direct_refuse(s, &v);
            return;
        }
        job_submit(d, job);
        return;
    }
    if (s->head) {
        n = stream_headers(s, nv, hb);
        s->kind = STRM_REPLY;
        nghttp2_submit_response(s->c->ngh, s->id, nv, n, NULL);
        return;
    }
    /* the caps, in the policy's order; the address is the connection's */
    if (!h2c_policy_hold(d->env.seg, d->env.child_slot, &d->env.limits,
                         h2c_direct_client(s), &s->hold, &v)) {
        h2c_direct_refuse(s, &v);
        return;
    }
    s->resume = want.resume;
    s->since = want.since;
    if (!(job = job_rooms(s, JOB_HOLD, names)) ||
        (want.member && (!(job->member = strdup(want.member)) ||
                         !(job->aux = calloc(job->n, sizeof(uint32_t)))))) {
        if (job) {
            s->job = NULL;
            s->kind = STRM_NEW;
            h2c_direct_job_free(job);
        }
        h2c_policy_release(&s->hold);
        h2c_policy_refuse(&v, H2C_DENY_UNAVAILABLE, NULL);
        h2c_direct_refuse(s, &v);
        return;
    }
    job_submit(d, job);
}

/* ---- publishers ------------------------------------------------------- */

/* A job that writes data[0..len) into room (a POST's fields, a DELETE's
 * entry), with copies of both; NULL when out of memory, the stream then
 * refused (503). */
static job_t *job_write(strm_t *s, job_kind_t kind, const char *data, apr_size_t len,
                        const char *room) {
    h2c_verdict_t v;
    job_t *job;

    if ((job = job_make(s, kind)) && (job->fields = malloc(len ? len : 1)) &&
        (job->room = strdup(room))) {
        memcpy(job->fields, data, len);
        job->flen = len;
        return job;
    }
    if (job) {
        s->job = NULL;
        s->kind = STRM_NEW;
        h2c_direct_job_free(job);
    }
    h2c_policy_refuse(&v, H2C_DENY_PUBLISH, NULL);
    h2c_direct_refuse(s, &v);
    return NULL;
}

/* Checks a complete POST and hands it to the publisher thread: a store may
 * block (the global lock, a journal's fdatasync, Redis), the loop never. */
static void publish(strm_t *s, const char *path) {
    h2c_direct_t *d = s->c->d;
    const h2c_policy_conf_t *conf = &s->c->site->conf;
    apr_array_header_t *rooms;
    const char *room = "";
    h2c_request_t req;
    h2c_verdict_t v;
    apr_size_t flen;
    char *fields;
    job_t *job;

    h2c_direct_describe(s, path, NULL, &req);
    if ((path && !h2c_policy_rooms(conf, &req, 0, d->scratch, &rooms, &v)) ||
        (path && !(room = APR_ARRAY_IDX(rooms, 0, const char *))) ||
        !h2c_policy_publish_head(conf, &req, 1, &d->env.seg->rate, h2c_direct_wall_ms(),
                                 d->scratch, &v) ||
        !h2c_policy_publish_body(conf, s->body, s->body_len, s->body_over, s->user, room,
                                 d->scratch, &fields, &flen, &v)) {
        h2c_direct_refuse(s, &v);
        return;
    }
    if ((job = job_write(s, JOB_PUBLISH, fields, flen, room))) {
        job_submit(d, job);
    }
}

/* A DELETE: checked here, done by the publisher thread. Without a check
 * (h2c) there is no user: refused unless H2ChatAnonymousDelete. */
static void moderate(strm_t *s, const char *path, const char *args) {
    h2c_direct_t *d = s->c->d;
    h2c_moderation_t mod;
    h2c_request_t req;
    h2c_verdict_t v;
    job_t *job;

    h2c_direct_describe(s, path, args, &req);
    if (!h2c_policy_delete(&s->c->site->conf, &req, 1, s->user, d->scratch, &mod, &v)) {
        h2c_direct_refuse(s, &v);
        return;
    }
    if ((job = job_write(s, JOB_MODERATE, mod.line, strlen(mod.line), mod.room))) {
        job->mkind = mod.kind;
        job->target = mod.target;
        job_submit(d, job);
    }
}

/* A finished job, on the loop. */
void h2c_direct_published(h2c_direct_t *d, job_t *job) {
    strm_t *s = job->s;
    h2c_verdict_t v;

    if (s) {
        s->job = NULL;
    }
    switch (job->kind) {
    case JOB_PUBLISH:
        if (!s) {
            break;
        }
        if (job->rv != APR_SUCCESS) {
            h2c_policy_store_refusal(&v, job->rv);
            h2c_direct_refuse(s, &v);
        } else {
            h2c_direct_reply(s, 201,
                             h2c_json_published(s->c->d->scratch, job->id, job->time_ms),
                             NULL, NULL);
        }
        break;
    case JOB_HOLD:
        if (job->rv != APR_SUCCESS) {
            if (s) {
                h2c_policy_release(&s->hold);
                h2c_policy_store_refusal(&v, job->rv);
                h2c_direct_refuse(s, &v);
            }
            break;
        }
        if (!s) { /* gone while its rooms were held: let them go */
            job_t *rel = job_make(NULL, JOB_RELEASE);

            if (rel) {
                rel->idx = job->idx;
                rel->aux = job->aux;
                job->aux = NULL;
                rel->n = job->n;
                job->idx = NULL;
                job_submit(d, rel);
            }
            break;
        }
        s->rooms = job->idx;
        s->mem = job->aux;
        job->aux = NULL;
        s->nrooms = job->n;
        job->idx = NULL;
        sub_start(s);
        break;
    case JOB_COUNTS:
        if (s) {
            apr_pool_t *p = s->c->d->scratch;
            apr_array_header_t **who = NULL;
            uint32_t i;

            if (job->aux) { /* members: listed here, lock-free */
                who = apr_palloc(p, job->n * sizeof(*who));
                for (i = 0; i < job->n; i++) {
                    who[i] =
                        h2c_presence_names(&s->c->d->env.seg->members, job->aux[i], p);
                }
            }
            h2c_direct_reply(s, 200,
                             h2c_json_presence_list(p, job->names, job->idx, who, job->n),
                             NULL, NULL);
        }
        break;
    case JOB_MODERATE:
        if (!s) {
            break;
        }
        {
            h2c_moderation_t mod = {job->room, job->mkind, job->target, job->fields};

            if (job->rv != APR_SUCCESS) {
                h2c_policy_moderate_refusal(&v, &mod, job->rv, s->c->d->scratch);
                h2c_direct_refuse(s, &v);
            } else {
                h2c_policy_log_moderated(&mod, job->id, s->user, h2c_direct_client(s));
                h2c_direct_reply(s, 200,
                                 apr_pstrmemdup(s->c->d->scratch, job->fields, job->flen),
                                 NULL, NULL);
            }
        }
        break;
    case JOB_LOG:
        h2c_direct_check_done(job);
        break;
    case JOB_CHECK:
        h2c_direct_check_done(job);
        if (!s) {
            break;
        }
        if (job->pass.allowed) {
            s->checked = 1;
            s->user = job->pass.user;
            job->pass.user = NULL;
            s->client = job->pass.client;
            job->pass.client = NULL;
            s->asked = job->ask; /* for its log line when it ends */
            s->asked_buf = job->fields;
            job->fields = NULL;
            s->kind = STRM_NEW;
            h2c_direct_dispatch(s);
        } else {
            h2c_direct_reply_pass(s, &job->pass);
        }
        break;
    case JOB_RELEASE:
        break;
    }
    h2c_direct_job_free(job);
}

/* ---- dispatch --------------------------------------------------------- */

/* The request's target as httpd reads it (h2c_policy_target) is this
 * listener's path, or with H2ChatRooms a path under it: 1 with *path
 * (in the loop's scratch) and *args, else 0 with the refusal (404, 400). */
static int target_is_ours(strm_t *s, char **path, const char **args, h2c_verdict_t *v) {
    conn_t *c = s->c;
    const char *base = c->site->conf.rooms_base;
    h2c_room_target_t t;

    if (!h2c_policy_scheme_ok(s->scheme)) {
        h2c_policy_refuse(v, H2C_DENY_BAD_REQUEST, "the :scheme must be http or https");
        return 0;
    }
    if (h2c_policy_target(s->path, c->d->scratch, path, args, v)) {
        if (!strcmp(*path, c->site->path) ||
            (base && h2c_room_target(base, *path, &t) != H2C_ROOM_AT_OUTSIDE)) {
            return 1;
        }
        v->deny = H2C_DENY_NOT_FOUND;
    }
    if (v->deny == H2C_DENY_NOT_FOUND) {
        h2c_policy_not_found(v, c->site->path, c->d->scratch);
    }
    return 0;
}

/* A whole request is in (END_STREAM), or one that need not wait for its
 * body: answer it. The loop's own refusals (httpd's limits, not its
 * path) come first, as httpd gives them before any auth; then the check. */
void h2c_direct_dispatch(strm_t *s) {
    const char *args = NULL;
    char *path = NULL;
    h2c_verdict_t v;

    if (s->kind != STRM_NEW) {
        return; /* answered early (a body over the limit) */
    }
    if (s->hdr.deny != H2C_DENY_NONE) {
        h2c_policy_header_refusal(&s->hdr, &v);
        h2c_direct_charge(s->c, 10, "refused header lists");
        h2c_direct_refuse(s, &v);
        return;
    }
    if (!target_is_ours(s, &path, &args, &v)) {
        h2c_direct_refuse(s, &v);
        return;
    }
    if (s->method && !strcmp(s->method, "OPTIONS") && s->origin) {
        h2c_direct_preflight(s); /* no credentials come with it: before the check */
        return;
    }
    if (s->c->chk && !s->checked) {
        h2c_direct_check(s);
        return;
    }
    switch (h2c_policy_route(s->method, &s->head, &v)) {
    case H2C_ROUTE_SUBSCRIBE:
        subscribe(s, path, args);
        break;
    case H2C_ROUTE_PUBLISH:
        publish(s, path);
        break;
    case H2C_ROUTE_DELETE:
        moderate(s, path, args);
        break;
    default:
        h2c_direct_refuse(s, &v);
        break;
    }
}

/* ---- nghttp2 callbacks ------------------------------------------------ */

static int on_begin_headers(nghttp2_session *ngh, const nghttp2_frame *frame,
                            void *user) {
    conn_t *c = user;
    strm_t *s;

    if (frame->hd.type != NGHTTP2_HEADERS || frame->headers.cat != NGHTTP2_HCAT_REQUEST) {
        return 0;
    }
    if (!(s = calloc(1, sizeof(*s)))) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE; /* this stream is reset */
    }
    s->c = c;
    s->id = frame->hd.stream_id;
    s->clen = -1;
    s->begun_us = apr_time_now();
    s->progress = c->d->now_us;
    s->lnext = c->streams;
    if (c->streams) {
        c->streams->lprev = s;
    }
    c->streams = s;
    nghttp2_session_set_stream_user_data(ngh, s->id, s);
    return 0;
}

/* A field for the check (httpd sees the whole list); pseudo-headers are its
 * request line and Host, given apart. 0 when out of memory. */
static int fields_add(strm_t *s, const uint8_t *name, size_t namelen,
                      const uint8_t *value, size_t valuelen) {
    apr_size_t need = s->fields_len + namelen + 2 + valuelen + 2, cap;
    char *p;

    if (namelen && name[0] == ':') {
        return 1;
    }
    if (need > s->fields_cap) {
        for (cap = s->fields_cap ? s->fields_cap : 256; cap < need; cap *= 2) {
        }
        if (!(p = realloc(s->fields, cap))) {
            return 0;
        }
        s->fields = p;
        s->fields_cap = cap;
    }
    p = s->fields + s->fields_len;
    memcpy(p, name, namelen);
    memcpy(p + namelen, ": ", 2);
    memcpy(p + namelen + 2, value, valuelen);
    p[namelen + 2 + valuelen] = '\n';
    p[namelen + 3 + valuelen] = '\0';
    s->fields_len = need - 1;
    return 1;
}

/* The request headers the chat looks at, each counted against httpd's
 * limits first (h2c_policy_header): a list past them is answered 431/414
 * at its end, or reset at once when it goes on far past them (an
 * HPACK-amplified list costs the loop ~1 ms, not its whole length). */
static int on_header(nghttp2_session *ngh, const nghttp2_frame *frame,
                     const uint8_t *name, size_t namelen, const uint8_t *value,
                     size_t valuelen, uint8_t flags, void *user) {
    strm_t *s = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id);
    char **slot = NULL, *v;
    size_t have;

    (void)flags, (void)user;
    if (!s || frame->hd.type != NGHTTP2_HEADERS) {
        return 0;
    }
#define IS(k) (namelen == sizeof(k) - 1 && !memcmp(name, k, namelen))
    switch (h2c_policy_header(&s->c->site->limits, &s->hdr, namelen && name[0] == ':',
                              namelen, valuelen)) {
    case H2C_HEADER_SKIP:
        return 0;
    case H2C_HEADER_RESET:
        /* our code, then TEMPORAL: nghttp2 calls nothing more for this
         * list (it still decodes it to keep the table in step) */
        nghttp2_submit_rst_stream(ngh, NGHTTP2_FLAG_NONE, s->id,
                                  NGHTTP2_ENHANCE_YOUR_CALM);
        s->kind = STRM_REPLY;
        h2c_direct_charge_oversize(s->c, !(frame->hd.flags & NGHTTP2_FLAG_END_HEADERS));
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    default:
        break;
    }
    if (s->c->chk && !fields_add(s, name, namelen, value, valuelen)) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (IS(":method")) {
        slot = &s->method;
    } else if (IS(":scheme")) {
        slot = &s->scheme;
    } else if (IS(":path")) {
        slot = &s->path;
    } else if (IS("content-type")) {
        slot = &s->ctype;
    } else if (IS("accept")) {
        slot = &s->accept;
    } else if (IS("last-event-id")) {
        slot = &s->last_event_id;
    } else if (IS("origin")) {
        slot = &s->origin;
    } else if (IS(":authority")) {
        slot = &s->authority;
    } else if (!IS("content-length")) {
        return 0;
    }
#undef IS
    /* a repeated field is one value, joined with ", " as httpd and
     * mod_http2 join it (RFC 9110 5.3): a second Origin or Content-Type is
     * judged with the first, never dropped (pseudo-headers and
     * content-length cannot repeat: nghttp2 refuses that) */
    have = slot && *slot ? strlen(*slot) : 0;
    if (!(v = malloc(have + 2 + valuelen + 1))) {
        return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
    }
    if (have) {
        memcpy(v, *slot, have);
        memcpy(v + have, ", ", 2);
        have += 2;
    }
    memcpy(v + have, value, valuelen);
    v[have + valuelen] = '\0';
    if (!slot) { /* content-length: nghttp2 checked it is digits */
        s->clen = apr_atoi64(v);
        free(v);
    } else {
        free(*slot);
        *slot = v;
    }
    return 0;
}

static int on_data(nghttp2_session *ngh, uint8_t flags, int32_t id, const uint8_t *data,
                   size_t len, void *user) {
    strm_t *s = nghttp2_session_get_stream_user_data(ngh, id);
    uint32_t max, cap;
    char *p;

    (void)flags, (void)user;
    if (!s || s->kind != STRM_NEW) {
        return 0;
    }
    s->progress = s->c->d->now_us;
    max = s->c->site->conf.max_bytes;
    if (s->body_over || len > max - s->body_len) {
        s->body_over = 1; /* never kept: answered 413 at the end */
        return 0;
    }
    if (s->body_len + len > s->body_cap) { /* grows as it comes, up to max */
        cap = s->body_cap ? s->body_cap : 1024;
        while (cap < s->body_len + len) {
            cap *= 2;
        }
        cap = cap < max ? cap : max;
        if (!(p = realloc(s->body, cap))) {
            return NGHTTP2_ERR_TEMPORAL_CALLBACK_FAILURE;
        }
        s->body = p;
        s->body_cap = cap;
    }
    memcpy(s->body + s->body_len, data, len);
    s->body_len += (uint32_t)len;
    return 0;
}

static int on_frame(nghttp2_session *ngh, const nghttp2_frame *frame, void *user) {
    conn_t *c = user;
    const char *args;
    char *path;
    h2c_verdict_t v;
    strm_t *s;

    switch (frame->hd.type) {
    case NGHTTP2_WINDOW_UPDATE:
        h2c_direct_resume(c, 0); /* a stream may have waited for window */
        return 0;
    case NGHTTP2_HEADERS:
    case NGHTTP2_DATA:
        break;
    default:
        return 0;
    }
    if (!(s = nghttp2_session_get_stream_user_data(ngh, frame->hd.stream_id))) {
        return 0;
    }
    if (frame->hd.flags & NGHTTP2_FLAG_END_STREAM) {
        h2c_direct_dispatch(s);
    } else if (frame->hd.type == NGHTTP2_HEADERS && s->kind == STRM_NEW) {
        /* a body follows: only a POST to the chat waits for it; anything
         * else is answered now and its body dropped as it comes */
        if (s->hdr.deny != H2C_DENY_NONE || !s->method || strcmp(s->method, "POST") ||
            !target_is_ours(s, &path, &args, &v)) {
            h2c_direct_dispatch(s);
        } else if (s->clen > (int64_t)c->site->conf.max_bytes) {
            publish(s, NULL); /* refused by its declared length, before any byte of it */
        }
    }
    return 0;
}

/* The request's fields (from on_header), once answered. */
static void req_free(strm_t *s) {
    free(s->method), free(s->scheme), free(s->path), free(s->ctype), free(s->accept);
    free(s->last_event_id), free(s->origin), free(s->authority), free(s->fields);
    s->method = s->scheme = s->path = s->ctype = s->accept = NULL;
    s->last_event_id = s->origin = s->authority = s->fields = NULL;
    s->fields_len = s->fields_cap = 0;
}

void h2c_direct_strm_free(strm_t *s) {
    conn_t *c = s->c;

    if (s->job) {
        s->job->s = NULL; /* its answer is dropped when it comes back */
    }
    release_rooms(s);
    /* idempotent: also a subscriber gone while its rooms were being held */
    h2c_policy_release(&s->hold);
    if (s->entered) {
        h2c_policy_release(&s->hold);
        h2c_seg_direct_count(c->d->env.seg, c->d->env.child_slot, 0, -1);
        h2c_log(H2C_LOG_DEBUG, H2C_TAG_SUB_END,
                "subscriber ends after %" APR_UINT64_T_FMT
                " messages (direct, client %s)",
                (apr_uint64_t)s->sent, c->peer);
    }
    if (s->lprev) {
        s->lprev->lnext = s->lnext;
    } else {
        c->streams = s->lnext;
    }
    if (s->lnext) {
        s->lnext->lprev = s->lprev;
    }
    req_free(s);
    h2c_direct_check_log(s); /* httpd let it through, or the loop answered it */
    free(s->asked_buf);
    if (s->follow.n > 1) {
        free(s->follow.r); /* sub_start's places of a stream of several rooms */
        if (s->presence.told != &s->presence.told_one) {
            free(s->presence.told);
        }
    }
    free(s->body), free(s->out), free(s->user), free(s->client);
    free(s);
}

static int on_close(nghttp2_session *ngh, int32_t id, uint32_t code, void *user) {
    strm_t *s = nghttp2_session_get_stream_user_data(ngh, id);

    (void)code, (void)user;
    if (s) {
        nghttp2_session_set_stream_user_data(ngh, id, NULL);
        h2c_direct_strm_free(s);
    }
    return 0;
}

void h2c_direct_callbacks(nghttp2_session_callbacks *cbs) {
    nghttp2_session_callbacks_set_on_begin_headers_callback(cbs, on_begin_headers);
    nghttp2_session_callbacks_set_on_header_callback(cbs, on_header);
    nghttp2_session_callbacks_set_on_data_chunk_recv_callback(cbs, on_data);
    nghttp2_session_callbacks_set_on_frame_recv_callback(cbs, on_frame);
    nghttp2_session_callbacks_set_on_stream_close_callback(cbs, on_close);
}
