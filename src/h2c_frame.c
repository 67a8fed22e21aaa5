/* h2c_frame: see h2c_frame.h. */
#include <stdio.h>
#include <string.h>

#include "h2c_frame.h"

/* SSE: a moderation entry is an event of its own name, so a page's
 * EventSource listens for it apart from messages; it keeps its id: line
 * (the resume token says how far the stream got, whatever the entry). */
static const char *sse_event(uint32_t kind) {
    switch (kind) {
    case H2C_ENTRY_DELETE:
        return "event: delete\n";
    case H2C_ENTRY_CLEAR:
        return "event: clear\n";
    default:
        return "";
    }
}

apr_size_t h2c_frame_message_size(const h2c_rooms_msg_t *m, int sse) {
    apr_size_t digits = 1;
    uint64_t id = m->id;

    if (!sse) {
        return (apr_size_t)m->len + 1;
    }
    for (; id >= 10; id /= 10) {
        digits++;
    }
    return strlen(sse_event(m->kind)) + sizeof("id: \ndata: ") - 1 + digits + m->len + 2;
}

apr_status_t h2c_frame_message(const h2c_rooms_t *rs, const h2c_rooms_msg_t *m, int sse,
                               char *buf, apr_size_t cap, apr_size_t *n,
                               uint32_t *commit_us) {
    char prefix[H2C_FRAME_OVERHEAD];
    apr_size_t plen = 0, tlen = sse ? 2 : 1;
    apr_status_t rv;

    if (sse) {
        plen = (apr_size_t)snprintf(prefix, sizeof(prefix),
                                    "%sid: %llu\ndata: ", sse_event(m->kind),
                                    (unsigned long long)m->id);
    }
    *n = plen + m->len + tlen;
    if (*n > cap) {
        return APR_ENOSPC;
    }
    rv = h2c_rooms_read(rs, m, buf + plen, cap - plen - tlen, NULL, commit_us);
    if (rv != APR_SUCCESS) {
        return APR_NOTFOUND;
    }
    memcpy(buf, prefix, plen);
    memcpy(buf + plen + m->len, "\n\n", tlen);
    return APR_SUCCESS;
}

apr_size_t h2c_frame_event(int sse, const char *event, const char *json, char *buf,
                           apr_size_t cap) {
    int n;

    if (sse && !strcmp(event, "heartbeat")) {
        n = snprintf(buf, cap, ": heartbeat\n\n");
    } else if (sse) {
        n = snprintf(buf, cap, "event: %s\ndata: %s\n\n", event, json);
    } else {
        n = snprintf(buf, cap, "%s\n", json);
    }
    return n < 0 ? 0 : (apr_size_t)n;
}

apr_size_t h2c_frame_reconnect(int sse, uint32_t retry_ms, const char *json, char *buf,
                               apr_size_t cap) {
    int n;

    if (!sse) {
        return h2c_frame_event(0, "reconnect", json, buf, cap);
    }
    n = snprintf(buf, cap, "retry: %u\n\n", retry_ms);
    return n < 0 ? 0 : (apr_size_t)n;
}
