/* h2c_metrics: see h2c_metrics.h. */
#include <ctype.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "h2c_metrics.h"

/* The text grows in one pool block, doubled when full: one scrape costs a
 * few KiB of its request's pool, nothing long-lived. */
typedef struct {
    apr_pool_t *p;
    char *data;
    apr_size_t len, cap;
} out_t;

static void out_printf(out_t *o, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void out_printf(out_t *o, const char *fmt, ...) {
    va_list ap;
    int n;

    va_start(ap, fmt);
    n = vsnprintf(o->data + o->len, o->cap - o->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
        return;
    }
    if ((apr_size_t)n >= o->cap - o->len) {
        apr_size_t cap = o->cap;
        char *bigger;

        while (cap - o->len <= (apr_size_t)n) {
            cap *= 2;
        }
        bigger = apr_palloc(o->p, cap);
        memcpy(bigger, o->data, o->len + 1);
        o->data = bigger;
        o->cap = cap;
        va_start(ap, fmt);
        vsnprintf(o->data + o->len, o->cap - o->len, fmt, ap);
        va_end(ap);
    }
    o->len += (apr_size_t)n;
}

/* The HELP and TYPE lines of a family; help texts are ours, with no
 * backslash or newline to escape. */
static void family(out_t *o, const char *name, const char *type, const char *help) {
    out_printf(o, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void one(out_t *o, const char *name, const char *type, const char *help,
                uint64_t value) {
    family(o, name, type, help);
    out_printf(o, "%s %" PRIu64 "\n", name, value);
}

const char *h2c_metrics_label_escape(const char *value, apr_pool_t *p) {
    apr_size_t n = strlen(value), i, j = 0;
    char *out = apr_palloc(p, 2 * n + 1);

    for (i = 0; i < n; i++) {
        if (value[i] == '\\' || value[i] == '"') {
            out[j++] = '\\';
            out[j++] = value[i];
        } else if (value[i] == '\n') {
            out[j++] = '\\';
            out[j++] = 'n';
        } else {
            out[j++] = value[i];
        }
    }
    out[j] = '\0';
    return out;
}

/* Anything but a letter or a digit becomes '_': the result is always a
 * valid part of a metric name. */
const char *h2c_metrics_snake(const char *name, apr_pool_t *p) {
    apr_size_t n = strlen(name), i, j = 0;
    char *out = apr_palloc(p, 2 * n + 1);

    for (i = 0; i < n; i++) {
        unsigned char c = (unsigned char)name[i];

        if (isupper(c) && i > 0 && !isupper((unsigned char)name[i - 1])) {
            out[j++] = '_';
        }
        out[j++] = isalnum(c) ? (char)tolower(c) : '_';
    }
    out[j] = '\0';
    return out;
}

/* Held streams by transport and by child: two families, not one with two
 * kinds of labels, so that sum() over either gives the total. */
static void subscribers(out_t *o, const h2c_stats_t *st) {
    uint32_t handler = st->subscribers > st->direct_held
                           ? st->subscribers - st->direct_held
                           : 0; /* rows read word by word may disagree a moment */
    uint32_t i;

    family(o, "h2chat_subscribers", "gauge",
           "Held subscriber streams, all children, by transport (handler: "
           "mod_http2 and HTTP/1.1; direct: H2ChatDirect's loop).");
    out_printf(o, "h2chat_subscribers{transport=\"handler\"} %u\n", handler);
    out_printf(o, "h2chat_subscribers{transport=\"direct\"} %u\n", st->direct_held);
    family(o, "h2chat_child_subscribers", "gauge",
           "Held subscriber streams of each live child process.");
    for (i = 0; i < st->nchildren; i++) {
        out_printf(o, "h2chat_child_subscribers{pid=\"%u\"} %u\n", st->children[i].pid,
                   st->children[i].held);
    }
    one(o, "h2chat_max_subscribers", "gauge",
        "H2ChatMaxSubscribers: held streams allowed across all children.",
        st->max_subscribers);
    one(o, "h2chat_max_subscribers_per_address", "gauge",
        "H2ChatMaxSubscribersPerAddress: held streams allowed per client address "
        "(0: off).",
        st->max_per_address);
}

/* One series per child (label pid): a child's counts live in its row and
 * go when it ends, so a sum over children would fall then and read as a
 * counter reset; per child every series only grows, and
 * sum by (le) (rate(..._bucket[5m])) is the server's. */
static void latency(out_t *o, const h2c_stats_t *st) {
    uint32_t i, b;

    family(o, "h2chat_delivery_latency_seconds", "histogram",
           "From a message's commit to its bytes handed to the socket (to mod_http2 "
           "for h2 streams), one sample per held stream and delivery pass, per child.");
    for (i = 0; i < st->nchildren; i++) {
        const h2c_lat_t *l = &st->lat[i];
        uint64_t n = 0;

        for (b = 0; b < H2C_LAT_BUCKETS; b++) {
            n += l->bucket[b];
            if (b < H2C_LAT_BUCKETS - 1) {
                out_printf(o,
                           "h2chat_delivery_latency_seconds_bucket{pid=\"%u\",le=\"%g\"} "
                           "%" PRIu64 "\n",
                           st->children[i].pid, h2c_lat_bounds_us[b] / 1e6, n);
            } else {
                out_printf(
                    o,
                    "h2chat_delivery_latency_seconds_bucket{pid=\"%u\",le=\"+Inf\"} "
                    "%" PRIu64 "\n",
                    st->children[i].pid, n);
            }
        }
        out_printf(o, "h2chat_delivery_latency_seconds_sum{pid=\"%u\"} %.6f\n",
                   st->children[i].pid, l->sum_us / 1e6);
        out_printf(o, "h2chat_delivery_latency_seconds_count{pid=\"%u\"} %" PRIu64 "\n",
                   st->children[i].pid, n);
    }
}

static void refusals(out_t *o, const h2c_stats_t *st, apr_pool_t *p) {
    int k;

    family(o, "h2chat_refused_total", "counter",
           "Requests refused, by reason (the H2ChatRefused* lines of server-status).");
    for (k = 0; k < H2C_REFUSED_MAX; k++) {
        out_printf(o, "h2chat_refused_total{reason=\"%s\"} %" PRIu64 "\n",
                   h2c_metrics_label_escape(
                       h2c_metrics_snake(h2c_seg_refusal_name((h2c_refusal_t)k), p), p),
                   st->refused[k]);
    }
}

/* 1 if s is a decimal number that fits a uint64_t. */
static int decimal(const char *s, uint64_t *v) {
    uint64_t n = 0;

    if (!*s || strlen(s) > 19) {
        return 0;
    }
    for (; *s; s++) {
        if (!isdigit((unsigned char)*s)) {
            return 0;
        }
        n = n * 10 + (uint64_t)(*s - '0');
    }
    *v = n;
    return 1;
}

/* The store's own status lines, mapped generically, as h2c_store.h wants
 * ("nothing outside a store asks which one it is"): a field whose value is
 * up or down becomes the gauge h2chat_<field>_up (1 or 0), a decimal one
 * the gauge h2chat_<field>, anything else is left out. So the Redis store's
 * Redis, RedisLastId and RedisReader are h2chat_redis_up,
 * h2chat_redis_last_id and h2chat_redis_reader (its pid), and a new store
 * shows its fields without a change here. */
static void store(out_t *o, const h2c_stats_t *st, apr_pool_t *p) {
    int i;

    if (st->store_name) {
        family(o, "h2chat_store_info", "gauge", "The store (H2ChatStore), as a label.");
        out_printf(o, "h2chat_store_info{store=\"%s\"} 1\n",
                   h2c_metrics_label_escape(st->store_name, p));
    }
    for (i = 0; i < st->store.n && i < H2C_STORE_FIELDS; i++) {
        const char *name = h2c_metrics_snake(st->store.field[i].name, p);
        const char *value = st->store.field[i].value;
        uint64_t v;

        if (!strcmp(value, "up") || !strcmp(value, "down")) {
            out_printf(o,
                       "# HELP h2chat_%s_up The store's H2Chat%s line: 1 up, 0 down.\n",
                       name, st->store.field[i].name);
            out_printf(o, "# TYPE h2chat_%s_up gauge\nh2chat_%s_up %d\n", name, name,
                       value[0] == 'u');
        } else if (decimal(value, &v)) {
            out_printf(o, "# HELP h2chat_%s The store's H2Chat%s line.\n", name,
                       st->store.field[i].name);
            out_printf(o, "# TYPE h2chat_%s gauge\nh2chat_%s %" PRIu64 "\n", name, name,
                       v);
        }
    }
}

const char *h2c_metrics_render(const h2c_stats_t *st, apr_pool_t *p, apr_size_t *len) {
    out_t o = {p, NULL, 0, 4096};

    o.data = apr_palloc(p, o.cap);
    o.data[0] = '\0';
    one(&o, "h2chat_usable", "gauge",
        "1 if the module has its shared segment in this child (else requests get 503).",
        st != NULL);
    if (st) {
        subscribers(&o, st);
        one(&o, "h2chat_messages_published_total", "counter",
            "Messages published (accepted POSTs, or entries the Redis reader fed).",
            st->published);
        one(&o, "h2chat_last_id", "gauge", "Id of the newest message in the history.",
            st->last_id);
        one(&o, "h2chat_history_messages", "gauge",
            "Messages the history holds now (H2ChatHistory at most).", st->history_count);
        one(&o, "h2chat_history_capacity_messages", "gauge",
            "Messages the history can hold (H2ChatHistory).", st->history_capacity);
        one(&o, "h2chat_rooms", "gauge", "Rooms in use (the location's own among them).",
            st->rooms.rooms);
        one(&o, "h2chat_rooms_max", "gauge",
            "Rooms that may exist at once (H2ChatMaxRooms).", st->rooms.max_rooms);
        one(&o, "h2chat_memory_used_bytes", "gauge",
            "Shared memory the rooms' messages take now (H2ChatMemory at most).",
            st->rooms.chunks_used * H2C_ROOMS_CHUNK);
        one(&o, "h2chat_memory_bytes", "gauge",
            "Shared memory for the rooms' messages (H2ChatMemory).",
            st->rooms.chunks * H2C_ROOMS_CHUNK);
        one(&o, "h2chat_evicted_messages_total", "counter",
            "Messages rooms without streams gave back when memory ran out.",
            st->rooms.evicted);
        one(&o, "h2chat_rooms_reclaimed_total", "counter",
            "Rooms without streams whose record a new room took (H2ChatMaxRooms).",
            st->rooms.rooms_freed);
        one(&o, "h2chat_members", "gauge",
            "People listed by H2ChatPresence members: a (room, name) each.", st->members);
        one(&o, "h2chat_members_max", "gauge",
            "Members that may be listed at once (H2ChatMaxMembers).", st->max_members);
        one(&o, "h2chat_direct_connections", "gauge",
            "Connections the H2ChatDirect loops serve, all children.", st->direct_conns);
        one(&o, "h2chat_direct_calm_total", "counter",
            "H2ChatDirect connections closed with GOAWAY(ENHANCE_YOUR_CALM).",
            st->direct_calm);
        one(&o, "h2chat_direct_handed_total", "counter",
            "H2ChatDirect connections handed by the child that accepted them to a "
            "less loaded one.",
            st->direct_handed);
        one(&o, "h2chat_direct_penalized_total", "counter",
            "H2ChatDirect connections refused at once: their address was closed "
            "for no progress (H2ChatDirectPenalty).",
            st->direct_penalized);
        one(&o, "h2chat_stalled_dropped_total", "counter",
            "Held streams dropped because their client stopped reading.",
            st->stalled_dropped);
        latency(&o, st);
        refusals(&o, st, p);
        store(&o, st, p);
    }
    *len = o.len;
    return o.data;
}
