/* h2c_json: every JSON the module reads or writes (pure unit wrapping
 * jansson; no httpd headers). Messages are encoded once, at publish time:
 * the encoded bytes are what the ring stores and every subscriber gets. */
#ifndef H2C_JSON_H
#define H2C_JSON_H

#include <apr_errno.h>
#include <apr_pools.h>
#include <apr_tables.h>
#include <stdint.h>

#include "h2c_rooms.h"

#define H2C_JSON_USER_MAX_CHARS 64

/* Room a message line needs beyond twice the POST body (escaping at most
 * doubles the body's bytes; the rest is type, id and time). */
#define H2C_JSON_LINE_OVERHEAD 128

/* Parses and validates a POST body {"user":"..","text":".."}. `auth_user`
 * (when not NULL) is the user instead of the body's. On success *fields is
 * the encoded `"user":..,"text":..` fragment (no braces), after
 * `"room":..,` when `room` names one (NULL or "": the location's own, which
 * the line does not name, as before rooms). On failure APR_EINVAL and *why
 * says what is wrong, for the client. */
apr_status_t h2c_json_parse_post(const char *body, apr_size_t len, const char *auth_user,
                                 const char *room, apr_pool_t *p, char **fields,
                                 apr_size_t *flen, const char **why);

/* The room a stored message line names (its "room"), into buf (65 bytes):
 * "" for the location's own. APR_EINVAL if the line is no message line or
 * its room no room name. */
apr_status_t h2c_json_line_room(const char *line, apr_size_t len, char *buf);

/* What a stored line is (it names its kind first, as every line the
 * module stores): a message, cheaply told by its first bytes; a delete
 * (*target: the message it deleted) or a clear. APR_EINVAL: none of these
 * (a line of a later version, or not ours). */
apr_status_t h2c_json_line_kind(const char *line, apr_size_t len, h2c_entry_kind_t *kind,
                                uint64_t *target);

/* The moderation lines, stored in their room and sent to its streams:
 * {"type":"delete","room":"a","id":17} and {"type":"clear","room":"a"}
 * (room NULL or "": the location's own, not named). */
char *h2c_json_delete(apr_pool_t *p, const char *room, uint64_t target);
char *h2c_json_clear(apr_pool_t *p, const char *room);

/* Writes the message line {"type":"message","id":..,<fields>,"time":..}
 * (no newline) into buf; returns its length or 0 if cap is too small. */
apr_size_t h2c_json_format_message(char *buf, apr_size_t cap, uint64_t id,
                                   int64_t time_ms, const char *fields, apr_size_t flen);

/* The small fixed-shape objects of the protocol. */
char *h2c_json_error(apr_pool_t *p, const char *msg);
char *h2c_json_published(apr_pool_t *p, uint64_t id, int64_t time_ms);
/* room NULL or "": the location's own (not named, as before rooms) */
char *h2c_json_gap(apr_pool_t *p, const char *room, uint64_t missed, uint64_t from,
                   uint64_t to);
char *h2c_json_reset(apr_pool_t *p, uint64_t last_id);
char *h2c_json_heartbeat(apr_pool_t *p, int64_t time_ms);
/* {"type":"presence","room":"a","count":N} (room NULL or "": not named, the
 * location's own); and a ?presence answer {"room":"a","count":N} (as_event
 * 0: no type, the room always named, "" for the location's own). */
char *h2c_json_presence(apr_pool_t *p, const char *room, uint32_t count, int as_event);
/* A ?presence answer: one room's object, or an array of them for n > 1;
 * members (may be NULL): per room its names (apr_array_header_t of const
 * char *), as "members":[..]. */
char *h2c_json_presence_list(apr_pool_t *p, const char *const *rooms,
                             const uint32_t *counts, apr_array_header_t *const *members,
                             uint32_t n);
/* H2ChatPresence members: {"type":"members","room":"a","members":[..]}
 * (names: const char *), and {"type":"join"|"leave","room":"a","user":".."}
 * (room "" or NULL: the location's own, not named). NULL if a name is no
 * valid UTF-8 (jansson refuses it). */
char *h2c_json_members(apr_pool_t *p, const char *room, const apr_array_header_t *names);
char *h2c_json_member(apr_pool_t *p, const char *room, int join, const char *name,
                      apr_size_t len);
/* {"type":"reconnect","retry":ms}: the last line of a stream its stopping
 * child ends (H2ChatReconnectSpread) */
char *h2c_json_reconnect(apr_pool_t *p, uint32_t retry_ms);

#endif /* H2C_JSON_H */
