/* mod_h2chat_publish: POST <location> -> one message into the store;
 * DELETE -> a moderation entry (a message deleted, a room cleared). */
#include "mod_h2chat.h"

#include <apr_strings.h>
#include <http_protocol.h>

#include "h2c_json.h"

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

int h2chat_publish(request_rec *r, const h2chat_dir_conf_t *dc) {
    h2chat_state_t *st = h2chat_state();
    h2c_policy_conf_t conf;
    h2c_request_t req;
    h2c_verdict_t v;
    apr_array_header_t *rooms;
    const char *room;
    apr_size_t len = 0, flen;
    char *body, *fields;
    uint64_t id;
    int64_t time_ms;
    apr_status_t rv;

    h2chat_conf_policy(dc, &conf);
    h2chat_request_describe(r, &req);
    if (!h2c_policy_rooms(&conf, &req, 0, r->pool, &rooms, &v)) {
        return h2chat_reply_refusal(r, &v);
    }
    room = APR_ARRAY_IDX(rooms, 0, const char *);
    if (!h2c_policy_publish_head(&conf, &req, st->usable, &st->seg.rate,
                                 (int64_t)(apr_time_now() / 1000), r->pool, &v)) {
        return h2chat_reply_refusal(r, &v);
    }
    body = apr_palloc(r->pool, conf.max_bytes + 1);
    rv = read_body(r, body, conf.max_bytes, &len);
    if (rv != APR_SUCCESS && rv != APR_ENOSPC) {
        h2c_policy_refuse(&v, H2C_DENY_READ_BODY, NULL);
        return h2chat_reply_refusal(r, &v);
    }
    if (!h2c_policy_publish_body(&conf, body, len, rv == APR_ENOSPC, r->user, room,
                                 r->pool, &fields, &flen, &v)) {
        return h2chat_reply_refusal(r, &v);
    }
    if ((rv = h2c_store_publish(&st->store, room, fields, flen, &id, &time_ms)) !=
        APR_SUCCESS) {
        h2c_policy_store_refusal(&v, rv);
        return h2chat_reply_refusal(r, &v);
    }
    ap_log_rerror(APLOG_MARK, APLOG_TRACE1, 0, r,
                  H2C_TAG_DELIVER ": published id %" APR_UINT64_T_FMT, (apr_uint64_t)id);
    h2chat_reply_json(r, HTTP_CREATED, h2c_json_published(r->pool, id, time_ms));
    return OK;
}

int h2chat_moderate(request_rec *r, const h2chat_dir_conf_t *dc) {
    h2chat_state_t *st = h2chat_state();
    h2c_policy_conf_t conf;
    h2c_moderation_t mod;
    h2c_request_t req;
    h2c_verdict_t v;
    uint64_t id;
    int64_t time_ms;
    apr_status_t rv;

    h2chat_conf_policy(dc, &conf);
    h2chat_request_describe(r, &req);
    if (ap_discard_request_body(r) != OK) {
        h2c_policy_refuse(&v, H2C_DENY_READ_BODY, NULL);
        return h2chat_reply_refusal(r, &v);
    }
    if (!h2c_policy_delete(&conf, &req, st->usable, r->user, r->pool, &mod, &v)) {
        return h2chat_reply_refusal(r, &v);
    }
    rv = h2c_store_moderate(&st->store, mod.room, mod.kind, mod.target, mod.line,
                            strlen(mod.line), &id, &time_ms);
    if (rv != APR_SUCCESS) {
        h2c_policy_moderate_refusal(&v, &mod, rv, r->pool);
        return h2chat_reply_refusal(r, &v);
    }
    h2c_policy_log_moderated(&mod, id, r->user, r->useragent_ip);
    h2chat_reply_json(r, HTTP_OK, mod.line);
    return OK;
}
