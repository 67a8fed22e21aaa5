/* h2c_policy: see h2c_policy.h. */
#include <string.h>
#include <strings.h>

#include <apr_strings.h>

#include "h2c_json.h"
#include "h2c_policy.h"
#include "h2c_room.h"
#include "h2c_tags.h"
#include "h2c_text.h"

/* Seconds a client is asked to wait after a 503 (cap, store down). */
#define H2C_POLICY_RETRY_S 5

#define N H2C_REFUSED_MAX /* not counted */

/* The refusal table: every refusal's status, tag and message, once. */
static const h2c_deny_info_t table[H2C_DENY_MAX] = {
    [H2C_DENY_NONE] = {0, NULL, NULL, H2C_LOG_INFO, N, 0, NULL, 0},
    [H2C_DENY_UNAVAILABLE] = {503, H2C_TAG_UNAVAILABLE, "chat store unavailable",
                              H2C_LOG_WARN, H2C_REFUSED_UNAVAILABLE, H2C_POLICY_RETRY_S,
                              NULL, 0},
    [H2C_DENY_PUBLISH] = {503, H2C_TAG_PUBLISH, "chat store could not publish",
                          H2C_LOG_WARN, H2C_REFUSED_UNAVAILABLE, H2C_POLICY_RETRY_S, NULL,
                          0},
    [H2C_DENY_METHOD] = {405, H2C_TAG_METHOD,
                         "method not allowed: use GET, POST or DELETE", H2C_LOG_INFO,
                         H2C_REFUSED_METHOD, 0, "GET, HEAD, POST, DELETE", 1},
    [H2C_DENY_ORIGIN] = {403, H2C_TAG_ORIGIN, "this Origin may not post here",
                         H2C_LOG_INFO, H2C_REFUSED_ORIGIN, 0, NULL, 1},
    [H2C_DENY_MEDIA_TYPE] = {415, H2C_TAG_MEDIA_TYPE,
                             "Content-Type must be application/json", H2C_LOG_INFO,
                             H2C_REFUSED_MEDIA_TYPE, 0, NULL, 1},
    [H2C_DENY_RATE] = {429, H2C_TAG_RATE, "too many messages, slow down", H2C_LOG_INFO,
                       H2C_REFUSED_RATE, -1, NULL, 1},
    [H2C_DENY_TOO_LARGE] = {413, H2C_TAG_TOO_LARGE, NULL, H2C_LOG_INFO,
                            H2C_REFUSED_TOO_LARGE, 0, NULL, 0},
    [H2C_DENY_READ_BODY] = {400, H2C_TAG_READ_BODY, "request body could not be read",
                            H2C_LOG_INFO, H2C_REFUSED_INVALID, 0, NULL, 0},
    [H2C_DENY_BAD_MESSAGE] = {400, H2C_TAG_BAD_MESSAGE, NULL, H2C_LOG_INFO,
                              H2C_REFUSED_INVALID, 0, NULL, 0},
    [H2C_DENY_BAD_RESUME] =
        {400, H2C_TAG_BAD_RESUME,
         "since / Last-Event-ID must be a message id (decimal digits, at "
         "most 2^53-1)",
         H2C_LOG_INFO, H2C_REFUSED_INVALID, 0, NULL, 0},
    [H2C_DENY_CAP] = {503, H2C_TAG_CAP, "too many subscribers, retry later", H2C_LOG_WARN,
                      H2C_REFUSED_CAP, H2C_POLICY_RETRY_S, NULL, 0},
    [H2C_DENY_ADDRESS] = {503, H2C_TAG_ADDRESS,
                          "too many subscribers from this address, retry later",
                          H2C_LOG_WARN, H2C_REFUSED_ADDRESS, H2C_POLICY_RETRY_S, NULL, 0},
    [H2C_DENY_NOT_FOUND] = {404, H2C_TAG_DIRECT_PATH, NULL, H2C_LOG_INFO, N, 0, NULL, 1},
    [H2C_DENY_HEADERS] = {431, H2C_TAG_HEADERS_LARGE,
                          "request header fields too large or too many", H2C_LOG_INFO,
                          H2C_REFUSED_INVALID, 0, NULL, 0},
    [H2C_DENY_URI_TOO_LONG] = {414, H2C_TAG_URI_LONG, "request path too long",
                               H2C_LOG_INFO, H2C_REFUSED_INVALID, 0, NULL, 0},
    [H2C_DENY_BAD_ROOM] = {400, H2C_TAG_BAD_ROOM, NULL, H2C_LOG_INFO, H2C_REFUSED_INVALID,
                           0, NULL, 1},
    [H2C_DENY_ROOMS_FULL] = {503, H2C_TAG_ROOMS_FULL,
                             "too many rooms with subscribers, retry later", H2C_LOG_WARN,
                             H2C_REFUSED_ROOMS, H2C_POLICY_RETRY_S, NULL, 0},
    [H2C_DENY_MEMORY] = {503, H2C_TAG_MEMORY,
                         "chat memory is full of rooms with subscribers, retry later",
                         H2C_LOG_WARN, H2C_REFUSED_ROOMS, H2C_POLICY_RETRY_S, NULL, 0},
    [H2C_DENY_ROOM_FORBIDDEN] = {403, H2C_TAG_ROOM_FORBIDDEN, NULL, H2C_LOG_INFO, N, 0,
                                 NULL, 0},
    [H2C_DENY_BAD_REQUEST] = {400, H2C_TAG_BAD_REQUEST, NULL, H2C_LOG_INFO,
                              H2C_REFUSED_INVALID, 0, NULL, 0},
    [H2C_DENY_DELETE_USER] = {403, H2C_TAG_DELETE_USER,
                              "deleting needs an authenticated user (Require, or "
                              "H2ChatAnonymousDelete On)",
                              H2C_LOG_INFO, N, 0, NULL, 1},
    [H2C_DENY_NO_ENTRY] = {404, H2C_TAG_NO_ENTRY, NULL, H2C_LOG_INFO, N, 0, NULL, 1},
    [H2C_DENY_BAD_USER] = {400, H2C_TAG_BAD_USER,
                           "bad user: ?user= must be 1 to 64 characters of UTF-8 "
                           "without control characters",
                           H2C_LOG_INFO, H2C_REFUSED_INVALID, 0, NULL, 0},
};

#undef N

const h2c_deny_info_t *h2c_policy_info(h2c_deny_t why) {
    return &table[why < H2C_DENY_MAX ? why : H2C_DENY_NONE];
}

void h2c_policy_refuse(h2c_verdict_t *v, h2c_deny_t why, const char *message) {
    const h2c_deny_info_t *info = h2c_policy_info(why);

    v->deny = why;
    v->message = message ? message : info->message;
    v->retry_after = info->retry_after > 0 ? info->retry_after : 0;
}

h2c_route_t h2c_policy_route(const char *method, int *head, h2c_verdict_t *v) {
    *head = method && !strcmp(method, "HEAD");
    if (method && (*head || !strcmp(method, "GET"))) {
        return H2C_ROUTE_SUBSCRIBE;
    }
    if (method && !strcmp(method, "POST")) {
        return H2C_ROUTE_PUBLISH;
    }
    if (method && !strcmp(method, "DELETE")) {
        return H2C_ROUTE_DELETE;
    }
    h2c_policy_refuse(v, H2C_DENY_METHOD, NULL);
    return H2C_ROUTE_REFUSED;
}

int h2c_policy_wants_sse(const char *accept) {
    static const char want[] = "text/event-stream";
    apr_size_t n = sizeof(want) - 1;

    for (; accept && *accept; accept++) {
        if (!strncasecmp(accept, want, n)) {
            return 1;
        }
    }
    return 0;
}

const char *h2c_policy_stream_type(int sse) {
    return sse ? "text/event-stream" : "application/x-ndjson; charset=utf-8";
}

int h2c_policy_rooms(const h2c_policy_conf_t *conf, const h2c_request_t *req,
                     int subscribe, apr_pool_t *p, apr_array_header_t **rooms,
                     h2c_verdict_t *v) {
    apr_array_header_t *list = NULL;
    h2c_room_target_t t;
    const char *err;
    int i;

    *rooms = apr_array_make(p, 1, sizeof(const char *));
    if (!conf->rooms_base) {
        APR_ARRAY_PUSH(*rooms, const char *) = "";
        v->deny = H2C_DENY_NONE;
        return 1;
    }
    switch (h2c_room_target(conf->rooms_base, req->path ? req->path : "", &t)) {
    case H2C_ROOM_AT_DEFAULT:
        break;
    case H2C_ROOM_AT_ROOM:
        APR_ARRAY_PUSH(*rooms, const char *) = apr_pstrmemdup(p, t.room, t.room_len);
        break;
    case H2C_ROOM_AT_BAD:
        h2c_policy_refuse(v, H2C_DENY_BAD_ROOM,
                          "bad room: a room is <location>/<name>, the name 1 to 64 of "
                          "A-Z a-z 0-9 _ . : @ -");
        return 0;
    default: /* a message's path (DELETE only) or not under the location */
        h2c_policy_refuse(
            v, H2C_DENY_NOT_FOUND,
            apr_pstrcat(p, "not found: rooms are ", conf->rooms_base, "/<name>", NULL));
        return 0;
    }
    if (subscribe && h2c_room_list(req->args, conf->max_rooms_per_stream, p, &list,
                                   &err) != APR_SUCCESS) {
        h2c_policy_refuse(v, H2C_DENY_BAD_ROOM, err);
        return 0;
    }
    for (i = 0; list && i < list->nelts; i++) {
        const char *name = APR_ARRAY_IDX(list, i, const char *);

        if ((*rooms)->nelts && !strcmp(APR_ARRAY_IDX(*rooms, 0, const char *), name)) {
            h2c_policy_refuse(v, H2C_DENY_BAD_ROOM,
                              apr_psprintf(p, "room given twice: \"%s\"", name));
            return 0;
        }
        if ((uint32_t)(*rooms)->nelts >= conf->max_rooms_per_stream) {
            h2c_policy_refuse(v, H2C_DENY_BAD_ROOM,
                              apr_psprintf(p, "more than %u rooms: \"%s\"",
                                           conf->max_rooms_per_stream, name));
            return 0;
        }
        APR_ARRAY_PUSH(*rooms, const char *) = name;
    }
    if ((*rooms)->nelts == 0) {
        APR_ARRAY_PUSH(*rooms, const char *) = "";
    }
    v->deny = H2C_DENY_NONE;
    return 1;
}

int h2c_policy_delete(const h2c_policy_conf_t *conf, const h2c_request_t *req, int usable,
                      const char *user, apr_pool_t *p, h2c_moderation_t *mod,
                      h2c_verdict_t *v) {
    h2c_room_target_t t = {H2C_ROOM_AT_DEFAULT, NULL, 0, 0};
    const char *id;

    if (!usable) {
        h2c_policy_refuse(v, H2C_DENY_UNAVAILABLE, NULL);
        return 0;
    }
    if (!h2c_policy_origin_allowed(conf->origins, req->origin)) {
        h2c_policy_refuse(v, H2C_DENY_ORIGIN, "this Origin may not delete here");
        return 0;
    }
    if ((!user || !*user) && !conf->anonymous_delete) {
        h2c_policy_refuse(v, H2C_DENY_DELETE_USER, NULL);
        return 0;
    }
    if (conf->rooms_base) {
        h2c_room_target(conf->rooms_base, req->path ? req->path : "", &t);
    } else if (conf->location && req->path &&
               h2c_room_target(conf->location, req->path, &t) != H2C_ROOM_AT_DEFAULT) {
        /* without rooms a DELETE names the location itself: a mistyped
         * path under it must not clear the whole chat */
        h2c_policy_refuse(v, H2C_DENY_NOT_FOUND,
                          apr_pstrcat(p, "not found: DELETE ", conf->location,
                                      " (the chat) or ", conf->location, "?id=<id>",
                                      NULL));
        return 0;
    }
    switch (t.at) {
    case H2C_ROOM_AT_DEFAULT:
    case H2C_ROOM_AT_ROOM:
    case H2C_ROOM_AT_MESSAGE:
        break;
    case H2C_ROOM_AT_BAD:
        h2c_policy_refuse(
            v, H2C_DENY_BAD_ROOM,
            "bad room: DELETE <location>/<room>[/<id>], the name 1 to 64 of "
            "A-Z a-z 0-9 _ . : @ -");
        return 0;
    default:
        h2c_policy_refuse(
            v, H2C_DENY_NOT_FOUND,
            apr_pstrcat(p, "not found: rooms are ", conf->rooms_base, "/<name>", NULL));
        return 0;
    }
    mod->room = t.room ? apr_pstrmemdup(p, t.room, t.room_len) : "";
    mod->target = t.id;
    /* ?id= names a message of the path's room: the location's own room has
     * no path of its own messages (<location>/17 is room "17") */
    if (t.at != H2C_ROOM_AT_MESSAGE && (id = h2c_room_arg_value(req->args, "id", p))) {
        if (h2c_text_parse_id(id, &mod->target) != APR_SUCCESS || mod->target == 0) {
            h2c_policy_refuse(v, H2C_DENY_BAD_ROOM,
                              "id must be a message id (decimal "
                              "digits, 1 to 2^53-1)");
            return 0;
        }
    }
    mod->kind = mod->target ? H2C_ENTRY_DELETE : H2C_ENTRY_CLEAR;
    mod->line = mod->target ? h2c_json_delete(p, mod->room, mod->target)
                            : h2c_json_clear(p, mod->room);
    if (!mod->line) {
        h2c_policy_refuse(v, H2C_DENY_UNAVAILABLE, NULL);
        return 0;
    }
    v->deny = H2C_DENY_NONE;
    return 1;
}

void h2c_policy_moderate_refusal(h2c_verdict_t *v, const h2c_moderation_t *mod,
                                 apr_status_t rv, apr_pool_t *p) {
    const char *room = *mod->room ? mod->room : "(the location's own)";

    if (rv != APR_NOTFOUND) {
        h2c_policy_store_refusal(v, rv);
        return;
    }
    h2c_policy_refuse(v, H2C_DENY_NO_ENTRY,
                      mod->kind == H2C_ENTRY_DELETE
                          ? apr_psprintf(p, "no message %" APR_UINT64_T_FMT " in room %s",
                                         (apr_uint64_t)mod->target, room)
                          : apr_psprintf(p, "no room %s", room));
}

void h2c_policy_log_moderated(const h2c_moderation_t *mod, uint64_t id, const char *user,
                              const char *client) {
    const char *room = *mod->room ? mod->room : "(the location's own)";

    if (mod->kind == H2C_ENTRY_DELETE) {
        h2c_log(H2C_LOG_NOTICE, H2C_TAG_MODERATED,
                "room %s: message %" APR_UINT64_T_FMT
                " deleted by %s from %s (entry %" APR_UINT64_T_FMT ")",
                room, (apr_uint64_t)mod->target, user && *user ? user : "anonymous",
                client ? client : "-", (apr_uint64_t)id);
    } else {
        h2c_log(H2C_LOG_NOTICE, H2C_TAG_MODERATED,
                "room %s: cleared by %s from %s (entry %" APR_UINT64_T_FMT ")", room,
                user && *user ? user : "anonymous", client ? client : "-",
                (apr_uint64_t)id);
    }
}

/* A member's name: see h2c_policy_member. */
static int member_name_ok(const char *name) {
    apr_size_t len = strlen(name);

    return len > 0 && len <= H2C_MEMBERS_NAME_MAX &&
           h2c_text_check_controls(name, len) == APR_SUCCESS && !strpbrk(name, "\n\t") &&
           h2c_text_count_chars(name, len) <= H2C_JSON_USER_MAX_CHARS;
}

int h2c_policy_member(const h2c_policy_conf_t *conf, const h2c_request_t *req,
                      const char *auth_user, apr_pool_t *p, const char **member,
                      h2c_verdict_t *v) {
    const char *name;

    *member = NULL;
    v->deny = H2C_DENY_NONE;
    if (conf->presence != H2C_PRESENCE_MEMBERS) {
        return 1;
    }
    if (auth_user && *auth_user) {
        *member = member_name_ok(auth_user) ? auth_user : NULL;
        return 1;
    }
    if (!(name = h2c_room_arg_value(req->args, "user", p))) {
        if (h2c_room_arg_flag(req->args, "user")) {
            h2c_policy_refuse(v, H2C_DENY_BAD_USER, NULL); /* badly escaped */
            return 0;
        }
        return 1;
    }
    if (!member_name_ok(name)) {
        h2c_policy_refuse(v, H2C_DENY_BAD_USER, NULL);
        return 0;
    }
    *member = name;
    return 1;
}

void h2c_policy_store_refusal(h2c_verdict_t *v, apr_status_t rv) {
    h2c_policy_refuse(v,
                      rv == APR_EBUSY    ? H2C_DENY_ROOMS_FULL
                      : rv == APR_ENOMEM ? H2C_DENY_MEMORY
                                         : H2C_DENY_PUBLISH,
                      NULL);
}

int h2c_policy_subscribe(const h2c_request_t *req, int usable, h2c_subscription_t *sub,
                         h2c_verdict_t *v) {
    int resume;

    if (!usable) {
        h2c_policy_refuse(v, H2C_DENY_UNAVAILABLE, NULL);
        return 0;
    }
    resume = h2c_text_parse_resume(req->args, req->last_event_id, &sub->since);
    if (resume < 0) {
        h2c_policy_refuse(v, H2C_DENY_BAD_RESUME, NULL);
        return 0;
    }
    sub->resume = resume > 0;
    sub->sse = h2c_policy_wants_sse(req->accept);
    sub->presence_query = h2c_room_arg_flag(req->args, "presence");
    v->deny = H2C_DENY_NONE;
    return 1;
}

int h2c_policy_hold(h2c_seg_t *seg, uint32_t slot, const h2c_hold_limits_t *lim,
                    const char *client, h2c_hold_t *hold, h2c_verdict_t *v) {
    uint32_t bucket;

    hold->seg = NULL;
    hold->bucket = -1;
    if (h2c_seg_sub_enter(seg, slot, lim->max_subscribers) != APR_SUCCESS) {
        h2c_policy_refuse(v, H2C_DENY_CAP, NULL);
        return 0;
    }
    if (lim->max_per_address) {
        bucket = h2c_seg_addr_bucket(client);
        if (h2c_seg_addr_enter(seg, slot, bucket, lim->max_per_address) != APR_SUCCESS) {
            h2c_seg_sub_leave(seg, slot);
            h2c_policy_refuse(v, H2C_DENY_ADDRESS, NULL);
            return 0;
        }
        hold->bucket = (int32_t)bucket;
    }
    hold->seg = seg;
    hold->slot = slot;
    v->deny = H2C_DENY_NONE;
    return 1;
}

void h2c_policy_release(h2c_hold_t *hold) {
    if (!hold->seg) {
        return;
    }
    if (hold->bucket >= 0) {
        h2c_seg_addr_leave(hold->seg, hold->slot, (uint32_t)hold->bucket);
    }
    h2c_seg_sub_leave(hold->seg, hold->slot);
    hold->seg = NULL;
}

int h2c_policy_origin_allowed(const apr_array_header_t *origins, const char *origin) {
    int i;

    /* no list, or no Origin header (not a browser's cross-site request) */
    if (!origins || !origin) {
        return 1;
    }
    for (i = 0; i < origins->nelts; i++) {
        const char *o = APR_ARRAY_IDX(origins, i, const char *);

        if (!strcmp(o, "*") || !strcasecmp(o, origin)) {
            return 1;
        }
    }
    return 0;
}

const char *h2c_policy_cors(const apr_array_header_t *origins, const char *origin) {
    int i;

    for (i = 0; origins && origin && i < origins->nelts; i++) {
        if (!strcasecmp(APR_ARRAY_IDX(origins, i, const char *), origin)) {
            return origin;
        }
    }
    return NULL;
}

static void too_large(const h2c_policy_conf_t *conf, apr_pool_t *p, h2c_verdict_t *v) {
    h2c_policy_refuse(
        v, H2C_DENY_TOO_LARGE,
        apr_psprintf(p, "body over %lu bytes", (unsigned long)conf->max_bytes));
}

/* H2ChatRateLimit, per client address across all children: Retry-After
 * in whole seconds, at least 1. */
static int rate_ok(const h2c_policy_conf_t *conf, const char *client, h2c_rate_t *rate,
                   int64_t now_ms, h2c_verdict_t *v) {
    h2c_rate_limit_t limit = {conf->rate_interval_ms, conf->rate_burst};
    int64_t retry_ms;

    if (!conf->rate_interval_ms || h2c_rate_take(rate, &limit, client ? client : "",
                                                 now_ms, &retry_ms) == APR_SUCCESS) {
        return 1;
    }
    h2c_policy_refuse(v, H2C_DENY_RATE, NULL);
    v->retry_after = (int)((retry_ms + 999) / 1000);
    if (v->retry_after < 1) {
        v->retry_after = 1;
    }
    return 0;
}

int h2c_policy_publish_head(const h2c_policy_conf_t *conf, const h2c_request_t *req,
                            int usable, h2c_rate_t *rate, int64_t now_ms, apr_pool_t *p,
                            h2c_verdict_t *v) {
    if (!usable) {
        h2c_policy_refuse(v, H2C_DENY_UNAVAILABLE, NULL);
    } else if (!h2c_policy_origin_allowed(conf->origins, req->origin)) {
        h2c_policy_refuse(v, H2C_DENY_ORIGIN, NULL);
    } else if (!h2c_text_is_json_type(req->content_type)) {
        h2c_policy_refuse(v, H2C_DENY_MEDIA_TYPE, NULL);
    } else if (!rate_ok(conf, req->client, rate, now_ms, v)) {
        /* v set */
    } else if (req->content_length > (int64_t)conf->max_bytes) {
        too_large(conf, p, v); /* by its declared length: never read */
    } else {
        v->deny = H2C_DENY_NONE;
        return 1;
    }
    return 0;
}

int h2c_policy_publish_body(const h2c_policy_conf_t *conf, const char *body,
                            apr_size_t len, int over, const char *auth_user,
                            const char *room, apr_pool_t *p, char **fields,
                            apr_size_t *flen, h2c_verdict_t *v) {
    const char *why;

    if (over || len > conf->max_bytes) {
        too_large(conf, p, v);
        return 0;
    }
    if (h2c_json_parse_post(body ? body : "", len, auth_user, room, p, fields, flen,
                            &why) != APR_SUCCESS) {
        h2c_policy_refuse(v, H2C_DENY_BAD_MESSAGE, why);
        return 0;
    }
    v->deny = H2C_DENY_NONE;
    return 1;
}

void h2c_policy_not_found(h2c_verdict_t *v, const char *served, apr_pool_t *p) {
    h2c_policy_refuse(v, H2C_DENY_NOT_FOUND,
                      apr_pstrcat(p,
                                  "not found: this listener (H2ChatDirect) serves only ",
                                  served, NULL));
}

/* ---- request framing --------------------------------------------------- */

h2c_header_action_t h2c_policy_header(const h2c_header_limits_t *lim,
                                      h2c_header_count_t *cnt, int pseudo,
                                      apr_size_t namelen, apr_size_t valuelen) {
    if (cnt->deny != H2C_DENY_NONE) {
        return ++cnt->after > H2C_POLICY_HEADER_GRACE ? H2C_HEADER_RESET
                                                      : H2C_HEADER_SKIP;
    }
    /* as mod_http2: pseudo-headers are the request line (LimitRequestLine,
     * 414), the others are header fields (LimitRequestFields, and
     * LimitRequestFieldSize for "name: value") */
    cnt->fields += !pseudo;
    /* saturating: a list of huge fields must not wrap the sum */
    cnt->bytes += (uint32_t)(namelen + valuelen + 32 < lim->max_list_bytes
                                 ? namelen + valuelen + 32
                                 : lim->max_list_bytes + 1);
    if (pseudo && valuelen > lim->max_line) {
        cnt->deny = H2C_DENY_URI_TOO_LONG;
    } else if (cnt->fields > lim->max_fields ||
               (!pseudo && namelen + 2 + valuelen > lim->max_field_bytes) ||
               cnt->bytes > lim->max_list_bytes) {
        cnt->deny = H2C_DENY_HEADERS;
    } else {
        return H2C_HEADER_KEEP;
    }
    return H2C_HEADER_SKIP;
}

void h2c_policy_header_refusal(const h2c_header_count_t *cnt, h2c_verdict_t *v) {
    h2c_policy_refuse(v, cnt->deny, NULL);
}

int h2c_policy_scheme_ok(const char *scheme) {
    return scheme && (!strcasecmp(scheme, "http") || !strcasecmp(scheme, "https"));
}

static int hexval(char c) {
    if (c >= '0' && c <= '9') {
        return c - '0';
    }
    c = (char)(c | 0x20);
    return c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

/* %-decodes n bytes of src into dst (which has room for n + 1): 0, or the
 * refusal. */
static h2c_deny_t unescape(const char *src, apr_size_t n, char *dst) {
    apr_size_t i;

    for (i = 0; i < n; i++) {
        int hi, lo;

        if (src[i] != '%') {
            *dst++ = src[i];
            continue;
        }
        if (i + 2 >= n) {
            return H2C_DENY_BAD_REQUEST; /* truncated */
        }
        if ((hi = hexval(src[i + 1])) < 0 || (lo = hexval(src[i + 2])) < 0) {
            return H2C_DENY_BAD_REQUEST;
        }
        if (hi * 16 + lo == '/' || hi * 16 + lo == 0) {
            return H2C_DENY_NOT_FOUND; /* as httpd with AllowEncodedSlashes Off */
        }
        *dst++ = (char)(hi * 16 + lo);
        i += 2;
    }
    *dst = '\0';
    return H2C_DENY_NONE;
}

/* Resolves "." and ".." segments and merges repeated slashes in place, as
 * httpd's ap_normalize_path with MergeSlashes On; ".." above the root
 * stays at the root. */
static void normalize(char *path) {
    char *out = path, *in = path;

    while (*in) {
        if (in[0] == '/' && in[1] == '/') {
            in++;
        } else if (in[0] == '/' && in[1] == '.' && (in[2] == '/' || !in[2])) {
            in += 2;
            if (!*in) {
                *out++ = '/';
            }
        } else if (in[0] == '/' && in[1] == '.' && in[2] == '.' &&
                   (in[3] == '/' || !in[3])) {
            in += 3;
            while (out > path && *--out != '/') {
            }
            if (!*in) {
                *out++ = '/';
            }
        } else {
            *out++ = *in++;
        }
    }
    if (out == path) {
        *out++ = '/';
    }
    *out = '\0';
}

int h2c_policy_target(const char *target, apr_pool_t *p, char **path, const char **args,
                      h2c_verdict_t *v) {
    const char *q = target ? strchr(target, '?') : NULL;
    apr_size_t n;
    h2c_deny_t why;

    if (!target || target[0] != '/') {
        h2c_policy_refuse(v, H2C_DENY_BAD_REQUEST, "the request target must be a path");
        return 0;
    }
    n = q ? (apr_size_t)(q - target) : strlen(target);
    *path = apr_palloc(p, n + 1);
    if ((why = unescape(target, n, *path)) != H2C_DENY_NONE) {
        h2c_policy_refuse(v, why,
                          why == H2C_DENY_BAD_REQUEST ? "bad %-escape in the request path"
                                                      : "not found");
        return 0;
    }
    normalize(*path);
    *args = q ? q + 1 : NULL;
    v->deny = H2C_DENY_NONE;
    return 1;
}
