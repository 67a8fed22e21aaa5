/* h2c_frame: what a subscriber's stream carries, byte for byte (pure unit,
 * no httpd headers). Shared by the two ways a stream is served: the
 * handler thread (mod_h2chat_subscribe) and the module's own HTTP/2 loop
 * (h2c_direct), so both send exactly the same bytes.
 *
 * NDJSON: one JSON object per line. SSE: `id:`/`data:` per message (and
 * `event: delete|clear` for moderation entries), `event:` for protocol
 * lines, a comment for heartbeats. */
#ifndef H2C_FRAME_H
#define H2C_FRAME_H

#include <apr_errno.h>
#include <apr_general.h>
#include <stdint.h>

#include "h2c_rooms.h"

/* Bytes message framing adds around a stored entry, at most. */
#define H2C_FRAME_OVERHEAD 56

/* The exact size entry m takes framed. */
apr_size_t h2c_frame_message_size(const h2c_rooms_msg_t *m, int sse);

/* Frames message m (h2c_follow_next's) into buf. APR_SUCCESS with *n
 * bytes and its commit stamp; APR_ENOSPC if it needs more than cap (*n:
 * what it needs); APR_NOTFOUND if it left its room while read (ask
 * h2c_follow_next again). */
apr_status_t h2c_frame_message(const h2c_rooms_t *rs, const h2c_rooms_msg_t *m, int sse,
                               char *buf, apr_size_t cap, apr_size_t *n,
                               uint32_t *commit_us);

/* A protocol line (`event` = gap, reset, heartbeat) carrying `json`: writes
 * it into buf if it fits in cap; returns its length either way. SSE
 * heartbeats are a comment line, without the JSON. */
apr_size_t h2c_frame_event(int sse, const char *event, const char *json, char *buf,
                           apr_size_t cap);

/* The reconnect hint, a stream's last event when its child stops: SSE
 * `retry: <ms>` and the blank line (the EventSource's reconnection time,
 * HTML's server-sent events; no event is dispatched), NDJSON the line
 * `json` (h2c_json_reconnect). Writes it into buf if it fits in cap;
 * returns its length either way. */
apr_size_t h2c_frame_reconnect(int sse, uint32_t retry_ms, const char *json, char *buf,
                               apr_size_t cap);

#endif /* H2C_FRAME_H */
