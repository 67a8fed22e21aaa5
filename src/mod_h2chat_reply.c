/* mod_h2chat_reply: small JSON answers, and errors that say what went
 * wrong three ways: status, {"error":..} body, one tagged log line. */
#include "mod_h2chat.h"

#include <http_protocol.h>

#include "h2c_json.h"

void h2chat_reply_json(request_rec *r, int status, const char *json) {
    r->status = status;
    ap_set_content_type(r, "application/json");
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_rputs(json, r);
    ap_rputc('\n', r);
}

/* Client mistakes log at info (a client must not be able to flood the log
 * at the default level); refusals for capacity at warn, our own failures at
 * error. */
static int log_level(int status) {
    if (status >= 500) {
        return status == HTTP_SERVICE_UNAVAILABLE ? APLOG_WARNING : APLOG_ERR;
    }
    return APLOG_INFO;
}

int h2chat_reply_error(request_rec *r, int status, h2c_refusal_t why, const char *tag,
                       const char *msg) {
    h2chat_state_t *st = h2chat_state();

    ap_log_rerror(APLOG_MARK, log_level(status), 0, r, "%s: %d %s", tag, status, msg);
    if (st->usable) {
        h2c_seg_count_refusal(&st->seg, why);
    }
    if (status == HTTP_SERVICE_UNAVAILABLE) {
        apr_table_setn(r->err_headers_out, "Retry-After", H2CHAT_RETRY_AFTER);
    }
    /* Refused before the body was read: do not read what may be an
     * unbounded body just to discard it; closing makes httpd skip it (it
     * does so by itself for 400, 413 and 503). */
    if (status == HTTP_METHOD_NOT_ALLOWED || status == HTTP_UNSUPPORTED_MEDIA_TYPE) {
        r->connection->keepalive = AP_CONN_CLOSE;
    }
    h2chat_reply_json(r, status, h2c_json_error(r->pool, msg));
    return OK;
}
