/* mod_h2chat_publish: POST <location> -> one message into the store. */
#include "mod_h2chat.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "h2c_json.h"
#include "h2c_text.h"

/* Reads the whole body into buf (cap bytes). APR_SUCCESS with *len, or
 * APR_ENOSPC as soon as it is longer than cap: never reads further. */
static apr_status_t read_body(request_rec *r, char *buf, apr_size_t cap,
                              apr_size_t *len) {
    apr_bucket_brigade *bb = apr_brigade_create(r->pool, r->connection->bucket_alloc);
    apr_status_t rv = APR_SUCCESS;
    int seen_eos = 0;

    *len = 0;
    while (!seen_eos) {
        apr_bucket *b;

        rv = ap_get_brigade(r->input_filters, bb, AP_MODE_READBYTES, APR_BLOCK_READ,
                            (apr_off_t)(cap + 1 - *len));
        if (rv != APR_SUCCESS) {
            break;
        }
        for (b = APR_BRIGADE_FIRST(bb); b != APR_BRIGADE_SENTINEL(bb);
             b = APR_BUCKET_NEXT(b)) {
            const char *data;
            apr_size_t n;

            if (APR_BUCKET_IS_EOS(b)) {
                seen_eos = 1;
                break;
            }
            if ((rv = apr_bucket_read(b, &data, &n, APR_BLOCK_READ)) != APR_SUCCESS) {
                break;
            }
            if (n > cap - *len) {
                rv = APR_ENOSPC;
                break;
            }
            memcpy(buf + *len, data, n);
            *len += n;
        }
        apr_brigade_cleanup(bb);
        if (rv != APR_SUCCESS) {
            break;
        }
    }
    apr_brigade_destroy(bb);
    return rv;
}

/* H2ChatRateLimit, per client address across all children. On refusal
 * sets Retry-After (whole seconds, at least 1). */
static int rate_ok(request_rec *r, h2chat_state_t *st, const h2chat_dir_conf_t *dc) {
    h2c_rate_limit_t limit;
    int64_t retry_ms;

    if (dc->rate_interval_ms <= 0) {
        return 1;
    }
    limit.interval_ms = (uint32_t)dc->rate_interval_ms;
    limit.burst = (uint32_t)dc->rate_burst;
    if (h2c_rate_take(&st->seg.rate, &limit, r->useragent_ip ? r->useragent_ip : "",
                      (int64_t)(apr_time_now() / 1000), &retry_ms) == APR_SUCCESS) {
        return 1;
    }
    apr_table_setn(r->err_headers_out, "Retry-After",
                   apr_itoa(r->pool, (int)((retry_ms + 999) / 1000)));
    return 0;
}

int h2chat_publish(request_rec *r, const h2chat_dir_conf_t *dc) {
    h2chat_state_t *st = h2chat_state();
    apr_size_t max = (apr_size_t)h2chat_conf_max_bytes(dc), len, flen;
    const char *clen = apr_table_get(r->headers_in, "Content-Length"), *why;
    char *body, *fields;
    uint64_t id;
    int64_t time_ms;
    apr_status_t rv;

    if (!st->usable) {
        return h2chat_reply_error(r, HTTP_SERVICE_UNAVAILABLE, H2C_REFUSED_UNAVAILABLE,
                                  H2C_TAG_UNAVAILABLE, "chat store unavailable");
    }
    if (!h2chat_conf_origin_allowed(dc, apr_table_get(r->headers_in, "Origin"))) {
        return h2chat_reply_error(r, HTTP_FORBIDDEN, H2C_REFUSED_ORIGIN, H2C_TAG_ORIGIN,
                                  "this Origin may not post here");
    }
    if (!h2c_text_is_json_type(apr_table_get(r->headers_in, "Content-Type"))) {
        return h2chat_reply_error(r, HTTP_UNSUPPORTED_MEDIA_TYPE, H2C_REFUSED_MEDIA_TYPE,
                                  H2C_TAG_MEDIA_TYPE,
                                  "Content-Type must be application/json");
    }
    if (!rate_ok(r, st, dc)) {
        return h2chat_reply_error(r, HTTP_TOO_MANY_REQUESTS, H2C_REFUSED_RATE,
                                  H2C_TAG_RATE, "too many messages, slow down");
    }
    if (clen && apr_atoi64(clen) > (apr_int64_t)max) {
        rv = APR_ENOSPC; /* refused by its declared length, never read */
    } else {
        body = apr_palloc(r->pool, max + 1);
        rv = read_body(r, body, max, &len);
    }
    if (rv == APR_ENOSPC) {
        return h2chat_reply_error(
            r, HTTP_REQUEST_ENTITY_TOO_LARGE, H2C_REFUSED_TOO_LARGE, H2C_TAG_TOO_LARGE,
            apr_psprintf(r->pool, "body over %lu bytes", (unsigned long)max));
    }
    if (rv != APR_SUCCESS) {
        return h2chat_reply_error(r, HTTP_BAD_REQUEST, H2C_REFUSED_INVALID,
                                  H2C_TAG_READ_BODY, "request body could not be read");
    }
    if (h2c_json_parse_post(body, len, r->user, r->pool, &fields, &flen, &why) !=
        APR_SUCCESS) {
        return h2chat_reply_error(r, HTTP_BAD_REQUEST, H2C_REFUSED_INVALID,
                                  H2C_TAG_BAD_MESSAGE, why);
    }
    rv = h2c_store_publish(&st->store, fields, flen, &id, &time_ms);
    if (rv != APR_SUCCESS) {
        return h2chat_reply_error(r, HTTP_SERVICE_UNAVAILABLE, H2C_REFUSED_UNAVAILABLE,
                                  H2C_TAG_PUBLISH, "chat store could not publish");
    }
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                  H2C_TAG_DELIVER ": published id %" APR_UINT64_T_FMT, (apr_uint64_t)id);
    h2chat_reply_json(r, HTTP_CREATED, h2c_json_published(r->pool, id, time_ms));
    return OK;
}
