/* h2c_policy: the rules of a chat request, once for every transport (pure
 * unit, no httpd headers).
 *
 * The handler (requests through httpd: h2 via mod_http2, HTTP/1.1) and the
 * direct loop (H2ChatDirect) each describe a request as an h2c_request_t,
 * ask this unit, and only render what it decided: the route (subscribe or
 * publish), the POST checks in their order, content negotiation, where a
 * stream resumes, and every refusal as one row of one table (status, tag,
 * message, log level, counter, Retry-After, Allow). A rule added later
 * (rooms, presence, deletion) is added here, once. */
#ifndef H2C_POLICY_H
#define H2C_POLICY_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "h2c_log.h"
#include "h2c_rate.h"
#include "h2c_rooms.h"
#include "h2c_seg.h"

/* Every way a chat request is refused. */
typedef enum {
    H2C_DENY_NONE = 0,
    H2C_DENY_UNAVAILABLE,    /* 503: the store is not usable in this process */
    H2C_DENY_PUBLISH,        /* 503: the store could not publish */
    H2C_DENY_METHOD,         /* 405 */
    H2C_DENY_ORIGIN,         /* 403: Origin not in H2ChatAllowOrigin */
    H2C_DENY_MEDIA_TYPE,     /* 415 */
    H2C_DENY_RATE,           /* 429: over H2ChatRateLimit */
    H2C_DENY_TOO_LARGE,      /* 413: body over H2ChatMaxMessageBytes */
    H2C_DENY_READ_BODY,      /* 400: the body could not be read */
    H2C_DENY_BAD_MESSAGE,    /* 400: the body is not a valid message */
    H2C_DENY_BAD_RESUME,     /* 400: since / Last-Event-ID is not an id */
    H2C_DENY_CAP,            /* 503: H2ChatMaxSubscribers reached */
    H2C_DENY_ADDRESS,        /* 503: H2ChatMaxSubscribersPerAddress reached */
    H2C_DENY_NOT_FOUND,      /* 404: a path the direct listener does not serve */
    H2C_DENY_HEADERS,        /* 431: too many header fields, or too large */
    H2C_DENY_URI_TOO_LONG,   /* 414: the path is over LimitRequestLine */
    H2C_DENY_BAD_REQUEST,    /* 400: a request httpd would not take (scheme, escapes) */
    H2C_DENY_BAD_ROOM,       /* 400: not a room name, or a bad ?room= list */
    H2C_DENY_ROOMS_FULL,     /* 503: H2ChatMaxRooms rooms exist, all with streams */
    H2C_DENY_MEMORY,         /* 503: H2ChatMemory is full of rooms with streams */
    H2C_DENY_ROOM_FORBIDDEN, /* 403: a ?room= its own URL's access config refuses */
    H2C_DENY_DELETE_USER,    /* 403: DELETE without a user, H2ChatAnonymousDelete Off */
    H2C_DENY_NO_ENTRY,       /* 404: no such message (DELETE) or room (clear) */
    H2C_DENY_BAD_USER,       /* 400: ?user= is no name (H2ChatPresence members) */
    H2C_DENY_MAX
} h2c_deny_t;

/* One row of the refusal table. */
typedef struct {
    int status;
    const char *tag;       /* h2c_tags.h */
    const char *message;   /* the JSON error; NULL: the rule gives it */
    h2c_log_level_t level; /* client mistakes at info, capacity at warn */
    h2c_refusal_t counter; /* server-status; H2C_REFUSED_MAX: not counted */
    int retry_after;       /* seconds for Retry-After; 0: none, -1: the rule's */
    const char *allow;     /* Allow header, or NULL */
    int drop_body;         /* refused before the body: read and drop a small one */
} h2c_deny_info_t;

/* What a transport renders: a refusal (deny != NONE) or "go on". */
typedef struct {
    h2c_deny_t deny;
    const char *message; /* for the JSON body and the log */
    int retry_after;     /* seconds; 0: no Retry-After */
} h2c_verdict_t;

/* H2ChatPresence */
typedef enum {
    H2C_PRESENCE_OFF = 0,
    H2C_PRESENCE_COUNT = 1,  /* streams per room */
    H2C_PRESENCE_MEMBERS = 2 /* ... and who, by name */
} h2c_presence_mode_t;

/* A location's settings, defaults applied (from its <Location>). */
typedef struct {
    uint32_t snapshot;
    uint32_t max_bytes;
    uint32_t heartbeat_s;
    uint32_t rate_interval_ms; /* H2ChatRateLimit; 0: off */
    uint32_t rate_burst;
    const apr_array_header_t *origins; /* H2ChatAllowOrigin (const char *); NULL: any */
    const char *rooms_base;            /* H2ChatRooms On: the <Location> rooms are
                                          under; NULL: off (one chat, as before) */
    uint32_t max_rooms_per_stream;     /* H2ChatMaxRoomsPerStream */
    const char *location;              /* the literal <Location> of H2Chat On, or
                                          NULL (a regex: not known) */
    int presence;                      /* H2ChatPresence: h2c_presence_mode_t */
    int anonymous_delete; /* H2ChatAnonymousDelete On: DELETE without a user */
} h2c_policy_conf_t;

/* The parts of a request the rules look at; NULL / -1 when absent. */
typedef struct {
    const char *method;
    const char *path; /* %-decoded, without the query */
    const char *args; /* query string */
    const char *content_type;
    const char *accept;
    const char *origin;
    const char *last_event_id;
    int64_t content_length; /* -1: not given */
    const char *client;     /* the address rate limits count by */
} h2c_request_t;

typedef enum {
    H2C_ROUTE_SUBSCRIBE,
    H2C_ROUTE_PUBLISH,
    H2C_ROUTE_DELETE,
    H2C_ROUTE_REFUSED
} h2c_route_t;

/* What a DELETE removes (h2c_policy_delete). */
typedef struct {
    const char *room;      /* its name; "": the location's own */
    h2c_entry_kind_t kind; /* H2C_ENTRY_DELETE: message `target`; CLEAR: the room */
    uint64_t target;
    const char *line; /* the entry to log and send (h2c_json_delete / _clear) */
} h2c_moderation_t;

/* The limits on held streams (server config, the same for both paths). */
typedef struct {
    uint32_t max_subscribers; /* H2ChatMaxSubscribers: across all children */
    uint32_t max_per_address; /* H2ChatMaxSubscribersPerAddress; 0: off */
} h2c_hold_limits_t;

/* Where a held stream is counted in the segment, for h2c_policy_release. */
typedef struct {
    h2c_seg_t *seg; /* NULL: nothing counted */
    uint32_t slot;  /* the child's row */
    int32_t bucket; /* its address's bucket; -1: not counted per address */
} h2c_hold_t;

/* Where a subscriber's stream starts and how it is framed. */
typedef struct {
    int presence_query; /* ?presence: answer the room's count, hold nothing */
    const char *member; /* H2ChatPresence members: who the stream is (NULL: nobody
                           named) */
    int sse;            /* text/event-stream, else NDJSON */
    int resume;         /* since / Last-Event-ID given */
    uint64_t since;     /* ... and its value */
    int head;           /* HEAD: the answer's headers only */
} h2c_subscription_t;

const h2c_deny_info_t *h2c_policy_info(h2c_deny_t why);

/* Fills v with refusal `why`; message NULL: the table's. */
void h2c_policy_refuse(h2c_verdict_t *v, h2c_deny_t why, const char *message);

/* The route of a method: GET and HEAD subscribe (*head set for HEAD),
 * POST publishes, DELETE moderates, anything else is refused (405) in v. */
h2c_route_t h2c_policy_route(const char *method, int *head, h2c_verdict_t *v);

/* A subscribe request: 1 with *sub set, or 0 with the refusal in v.
 * `usable`: the store is usable in this process. */
int h2c_policy_subscribe(const h2c_request_t *req, int usable, h2c_subscription_t *sub,
                         h2c_verdict_t *v);

/* The rooms a request is for, as names ("" is the location's own room):
 * with H2ChatRooms off always that one; on, the room its path names
 * (<location>/<room>) and, for a subscriber (`subscribe`), the rooms of
 * its ?room= list after it, at most H2ChatMaxRoomsPerStream in all. 1 with
 * *rooms (const char *, in p), or 0 with the refusal in v: a bad name or
 * list (400), a path outside the location or a message's (404). */
int h2c_policy_rooms(const h2c_policy_conf_t *conf, const h2c_request_t *req,
                     int subscribe, apr_pool_t *p, apr_array_header_t **rooms,
                     h2c_verdict_t *v);

/* Who a subscriber is, for H2ChatPresence members (else *member NULL):
 * the authenticated user (`auth_user`, when there is one: then ?user= is
 * ignored), else its self-declared ?user= (none: NULL, a watcher nobody
 * lists). A name is 1 to 64 characters of valid UTF-8 without control
 * characters, at most 128 bytes; a bad ?user= is refused (400), a bad
 * authenticated name just not listed. 1, or 0 with the refusal in v. */
int h2c_policy_member(const h2c_policy_conf_t *conf, const h2c_request_t *req,
                      const char *auth_user, apr_pool_t *p, const char **member,
                      h2c_verdict_t *v);

/* A store could not publish or hold rooms (rv): no record for a new room
 * (APR_EBUSY: 503 rooms full), no memory (APR_ENOMEM: 503), else 503. */
void h2c_policy_store_refusal(h2c_verdict_t *v, apr_status_t rv);

/* A subscriber that passed h2c_policy_subscribe and will hold a stream
 * (not HEAD: it holds nothing) takes its place in the counts of child
 * `slot`, in this order: the server-wide cap (H2ChatMaxSubscribers), then
 * the cap of its address, `client` (H2ChatMaxSubscribersPerAddress). The
 * cap comes first: when the server is full nobody gets in, whatever their
 * address, and that is the answer (H2C0015, RefusedCap); the per-address
 * refusal (H2C0028, RefusedAddress) then says only that this address holds
 * its share of a server with room, so the two counters tell a server too
 * small from an address that hogs it. 1 with *hold set (give it back with
 * h2c_policy_release once the stream ends), or 0 with the refusal in v
 * and nothing counted. */
int h2c_policy_hold(h2c_seg_t *seg, uint32_t slot, const h2c_hold_limits_t *lim,
                    const char *client, h2c_hold_t *hold, h2c_verdict_t *v);
void h2c_policy_release(h2c_hold_t *hold); /* idempotent */

/* A POST before its body, in this order: store usable, Origin, media
 * type, rate limit (takes a token from `rate` at now_ms), declared length.
 * 1 to read the body, or 0 with the refusal in v (p: its message). */
int h2c_policy_publish_head(const h2c_policy_conf_t *conf, const h2c_request_t *req,
                            int usable, h2c_rate_t *rate, int64_t now_ms, apr_pool_t *p,
                            h2c_verdict_t *v);

/* The body, once read (`over`: it was longer than conf->max_bytes, and
 * only that much was kept). 1 with the message's encoded fields, or 0
 * with the refusal in v. `auth_user` (may be NULL) is the user instead of
 * the body's; `room` the room it goes to ("" or NULL: the location's own). */
int h2c_policy_publish_body(const h2c_policy_conf_t *conf, const char *body,
                            apr_size_t len, int over, const char *auth_user,
                            const char *room, apr_pool_t *p, char **fields,
                            apr_size_t *flen, h2c_verdict_t *v);

/* A DELETE, in this order: store usable, Origin (as a POST), a user
 * (`user`: the authenticated one, NULL or "" without; refused unless
 * H2ChatAnonymousDelete), its target: <room>/<id> or ?id=<id> a message,
 * the room itself (<location>, <location>/<room>) a clear. 1 with *mod (in
 * p), or 0 with the refusal in v. */
int h2c_policy_delete(const h2c_policy_conf_t *conf, const h2c_request_t *req, int usable,
                      const char *user, apr_pool_t *p, h2c_moderation_t *mod,
                      h2c_verdict_t *v);

/* A store could not moderate (rv): APR_NOTFOUND is 404 (nothing to delete
 * or clear), the rest as h2c_policy_store_refusal. */
void h2c_policy_moderate_refusal(h2c_verdict_t *v, const h2c_moderation_t *mod,
                                 apr_status_t rv, apr_pool_t *p);

/* The error log's line of a moderation done (notice, H2C0062: an audit
 * trail of who deleted what), user NULL: anonymous. */
void h2c_policy_log_moderated(const h2c_moderation_t *mod, uint64_t id, const char *user,
                              const char *client);

/* 1 if a POST with this Origin (may be NULL: not a browser's cross-site
 * request) may publish. */
int h2c_policy_origin_allowed(const apr_array_header_t *origins, const char *origin);

/* Cross-origin reads (CORS) with credentials: `origin` when H2ChatAllowOrigin
 * names it (never for `*` or no list: a page of any site could then read
 * the chat with its visitor's cookies), else NULL. */
const char *h2c_policy_cors(const apr_array_header_t *origins, const char *origin);
/* What every answer to such an origin carries besides Allow-Origin. */
#define H2C_CORS_EXPOSE "retry-after, x-h2chat-heartbeat, x-h2chat-stream"
#define H2C_CORS_METHODS "GET, HEAD, POST, DELETE"
#define H2C_CORS_HEADERS "content-type, last-event-id, authorization"
#define H2C_CORS_MAX_AGE "600"

/* Content negotiation: 1 if Accept asks for text/event-stream (media
 * types compare case-insensitively, RFC 9110 8.3.1). */
int h2c_policy_wants_sse(const char *accept);

/* The response headers of a held stream: content type by framing. */
const char *h2c_policy_stream_type(int sse);

/* The refusal of a path the direct listener does not serve (`served`:
 * the one it does). */
void h2c_policy_not_found(h2c_verdict_t *v, const char *served, apr_pool_t *p);

/* ---- request framing: what httpd checks before a request reaches a
 * handler, for a transport that is not httpd (the direct loop) ---------- */

/* httpd's limits (LimitRequestFields, LimitRequestFieldSize,
 * LimitRequestLine) and the header list size a server advertises. */
typedef struct {
    uint32_t max_fields;      /* not counting pseudo-headers */
    uint32_t max_field_bytes; /* "name: value" */
    uint32_t max_line;        /* each pseudo-header's value (the :path) */
    uint32_t max_list_bytes;  /* names + values + 32 per field (RFC 9113 6.5.2) */
} h2c_header_limits_t;

/* One request's header list as it comes in; zero it at the start. */
typedef struct {
    uint32_t fields;
    uint32_t bytes;
    uint32_t after;  /* fields seen after the first refusal */
    h2c_deny_t deny; /* the first refusal, or H2C_DENY_NONE */
} h2c_header_count_t;

typedef enum {
    H2C_HEADER_KEEP, /* within the limits: use it */
    H2C_HEADER_SKIP, /* the list is refused already: ignore it, answer at its end */
    H2C_HEADER_RESET /* far past the limits: stop decoding it, reset the stream */
} h2c_header_action_t;

/* Fields past a refusal that are still read cheaply so that the answer
 * can be a 431 (as mod_http2 does); past that the stream is reset. */
#define H2C_POLICY_HEADER_GRACE 100

/* Counts one field (is_path: it is :path) against the limits. */
h2c_header_action_t h2c_policy_header(const h2c_header_limits_t *lim,
                                      h2c_header_count_t *cnt, int is_path,
                                      apr_size_t namelen, apr_size_t valuelen);

/* The refusal of a finished header list (deny set), in v. */
void h2c_policy_header_refusal(const h2c_header_count_t *cnt, h2c_verdict_t *v);

/* :scheme of a request on a listener: http or https (case-insensitive,
 * RFC 3986), else 0. */
int h2c_policy_scheme_ok(const char *scheme);

/* A request target as httpd reads it: the path up to '?', %-decoded
 * (a bad escape: 400; an encoded '/' or NUL: 404, as AllowEncodedSlashes
 * Off), "." and ".." segments resolved and repeated slashes merged
 * (MergeSlashes On). 1 with *path (in p) and *args (the query, or NULL),
 * or 0 with the refusal in v. */
int h2c_policy_target(const char *target, apr_pool_t *p, char **path, const char **args,
                      h2c_verdict_t *v);

#endif /* H2C_POLICY_H */
