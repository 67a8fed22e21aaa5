/* h2c_room: where a chat request points, for rooms (one <Location> serves
 * many rooms). Pure unit, no httpd headers; everything here parses input
 * from the network: fuzzed (fuzz/fuzz_room.c).
 *
 * Both transports (httpd's handler and the direct loop) route through
 * here, so the rules on names, paths and the query live once. */
#ifndef H2C_ROOM_H
#define H2C_ROOM_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "h2c_text.h"

/* A room name: 1 .. this many bytes. */
#define H2C_ROOM_NAME_MAX 64

/* 1 if name[0..len) is a room name: 1 .. H2C_ROOM_NAME_MAX bytes, each
 * from A-Z a-z 0-9 _ . : @ - (safe unescaped in a path, a query, JSON, a
 * log line and a Redis key), and neither "." nor ".."; else 0. */
int h2c_room_name_ok(const char *name, apr_size_t len);

typedef enum {
    H2C_ROOM_AT_DEFAULT, /* the location itself: the default room */
    H2C_ROOM_AT_ROOM,    /* location/NAME[/] */
    H2C_ROOM_AT_MESSAGE, /* location/NAME/ID */
    H2C_ROOM_AT_BAD,     /* under the location, but no such route (400/404) */
    H2C_ROOM_AT_OUTSIDE  /* not under the location at all */
} h2c_room_at_t;

typedef struct {
    h2c_room_at_t at;
    const char *room;    /* ROOM, MESSAGE: points into path (not terminated) */
    apr_size_t room_len; /* ROOM, MESSAGE: bytes at room */
    uint64_t id;         /* MESSAGE: 1 .. H2C_ROOM_ID_MAX */
} h2c_room_target_t;

/* The largest message id in a path: the largest id a client may resume
 * from (H2C_TEXT_ID_MAX, 2^53-1: exact in JavaScript), one rule for both. */
#define H2C_ROOM_ID_MAX H2C_TEXT_ID_MAX

/* Routes path (%-decoded, dot-segments resolved, no query) relative to
 * location (the <Location> prefix; one trailing slash is ignored, so "/"
 * is the root). Fills *t (room NULL and id 0 where they do not apply) and
 * returns t->at. An id is decimal without sign or leading zero; a slash
 * after a room name is allowed (people add it), after an id it is not. */
h2c_room_at_t h2c_room_target(const char *location, const char *path,
                              h2c_room_target_t *t);

/* The rooms of a multiplexed subscription: every `room=` value of args
 * (the query, may be NULL), %-decoded ('+' stays '+', so it fails the
 * name check), in order, into *rooms (const char *, in p); other
 * parameters are ignored. APR_SUCCESS (zero rooms is fine: the path's
 * room counts), or APR_EINVAL with *err (in p, for the JSON error; it
 * quotes the offending value, at most 64 bytes, non-printable bytes as
 * '?'; *rooms then holds what came before) when a value is badly
 * escaped, empty (`room` or `room=`) or not a name, repeats an earlier
 * one, or is one more than max_rooms (0: no room= allowed). */
apr_status_t h2c_room_list(const char *args, uint32_t max_rooms, apr_pool_t *p,
                           apr_array_header_t **rooms, const char **err);

/* 1 if args (may be NULL) has a parameter `name`, with or without a
 * value (`?presence`, `?presence=1`), else 0. */
int h2c_room_arg_flag(const char *args, const char *name);

/* The value of the first parameter `name` in args (may be NULL),
 * %-decoded with '+' as a space (for user=), in p; "" for a bare `name`.
 * NULL if there is none, or if it is badly escaped or holds %00 (a C
 * string cannot carry it, and silently cutting a user name short is
 * worse than refusing it). */
const char *h2c_room_arg_value(const char *args, const char *name, apr_pool_t *p);

#endif /* H2C_ROOM_H */
