/* mod_h2chat_reply: the handler's side of the request policy (h2c_policy):
 * a request described for it, its refusals rendered as a status, a JSON
 * {"error":..} body, its headers and one tagged log line. */
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

void h2chat_reply_fields(request_rec *r, const h2chat_dir_conf_t *dc) {
    const char *o = h2c_policy_cors(dc->origins, apr_table_get(r->headers_in, "Origin"));

    if (o) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Origin", o);
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Credentials", "true");
        apr_table_setn(r->err_headers_out, "Access-Control-Expose-Headers",
                       H2C_CORS_EXPOSE);
        apr_table_mergen(r->err_headers_out, "Vary", "Origin");
    }
    if (dc->stream_url && *dc->stream_url) {
        apr_table_setn(r->err_headers_out, "X-H2Chat-Stream", dc->stream_url);
    }
}

int h2chat_reply_preflight(request_rec *r, const h2chat_dir_conf_t *dc) {
    if (h2c_policy_cors(dc->origins, apr_table_get(r->headers_in, "Origin"))) {
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Methods",
                       H2C_CORS_METHODS);
        apr_table_setn(r->err_headers_out, "Access-Control-Allow-Headers",
                       H2C_CORS_HEADERS);
        apr_table_setn(r->err_headers_out, "Access-Control-Max-Age", H2C_CORS_MAX_AGE);
    }
    r->status = HTTP_NO_CONTENT;
    return OK;
}

void h2chat_request_describe(request_rec *r, h2c_request_t *req) {
    const char *clen = apr_table_get(r->headers_in, "Content-Length");

    req->method = r->method;
    req->path = r->uri;
    req->args = r->args;
    req->content_type = apr_table_get(r->headers_in, "Content-Type");
    req->accept = apr_table_get(r->headers_in, "Accept");
    req->origin = apr_table_get(r->headers_in, "Origin");
    req->last_event_id = apr_table_get(r->headers_in, "Last-Event-ID");
    req->content_length = clen ? (int64_t)apr_atoi64(clen) : -1;
    req->client = r->useragent_ip;
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

int h2chat_reply_refusal(request_rec *r, const h2c_verdict_t *v) {
    const h2c_deny_info_t *info = h2c_policy_info(v->deny);
    h2chat_state_t *st = h2chat_state();

    ap_log_rerror(APLOG_MARK, h2chat_log_level(info->level), 0, r, "%s: %d %s", info->tag,
                  info->status, v->message);
    if (st->usable && info->counter < H2C_REFUSED_MAX) {
        h2c_seg_count_refusal(&st->seg, info->counter);
    }
    if (v->retry_after > 0) {
        apr_table_setn(r->err_headers_out, "Retry-After",
                       apr_itoa(r->pool, v->retry_after));
    }
    if (info->allow) {
        r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
        apr_table_setn(r->err_headers_out, "Allow", info->allow);
    }
    if (info->drop_body) {
        drop_body(r);
    }
    h2chat_reply_json(r, info->status, h2c_json_error(r->pool, v->message));
    return OK;
}
