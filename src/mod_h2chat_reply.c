/* mod_h2chat_reply: small JSON answers, and errors that say what went
 * wrong three ways: status, {"error":..} body, one tagged log line. */
#include "mod_h2chat.h"

#include <apr_strings.h>
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

/* Refused before the body was read. A small declared body is read and
 * dropped, so the stream or connection ends cleanly: an HTTP/2 stream whose
 * body is left unread gets a reset, and some clients (curl 7.88) then drop
 * the answer. httpd's ap_discard_request_body cannot do this here: on h2
 * streams keepalive is always "close", which makes it return at once.
 * Anything larger or of unknown size is not read at all. */
#define H2C_DISCARD_MAX (64 * 1024)

static void drop_body(request_rec *r) {
    const char *clen = apr_table_get(r->headers_in, "Content-Length");
    apr_bucket_brigade *bb;
    apr_off_t left;
    int eos = 0;

    r->connection->keepalive = AP_CONN_CLOSE;
    if (!clen || (left = apr_atoi64(clen)) <= 0 || left > H2C_DISCARD_MAX) {
        return;
    }
    bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    while (!eos && left > 0 &&
           ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ,
                          H2C_DISCARD_MAX) == APR_SUCCESS) {
        apr_off_t n = 0;

        eos = !APR_BRIGADE_EMPTY(bb) && APR_BUCKET_IS_EOS(APR_BRIGADE_LAST(bb));
        apr_brigade_length(bb, 1, &n);
        left -= n;
        apr_brigade_cleanup(bb);
        if (n == 0 && !eos) {
            break;
        }
    }
}

int h2chat_reply_error(request_rec *r, int status, h2c_refusal_t why, const char *tag,
                       const char *msg) {
    h2chat_state_t *st = h2chat_state();

    ap_log_rerror(APLOG_MARK, log_level(status), 0, r, "%s: %d %s", tag, status, msg);
    if (st->usable) {
        h2c_seg_count_refusal(&st->seg, why);
    }
    if (status == HTTP_SERVICE_UNAVAILABLE &&
        !apr_table_get(r->err_headers_out, "Retry-After")) {
        apr_table_setn(r->err_headers_out, "Retry-After", H2CHAT_RETRY_AFTER);
    }
    if (status == HTTP_METHOD_NOT_ALLOWED || status == HTTP_UNSUPPORTED_MEDIA_TYPE ||
        status == HTTP_FORBIDDEN || status == HTTP_TOO_MANY_REQUESTS) {
        drop_body(r);
    }
    h2chat_reply_json(r, status, h2c_json_error(r->pool, msg));
    return OK;
}
