/* h2c_direct_reply: the loop's complete answers (see h2c_direct.h): the
 * chat's JSON ones and refusals, httpd's own (a check's), CORS fields and
 * preflights. Same statuses, bodies, counters and tags as the handler's. */
#include <stdlib.h>
#include <string.h>

#include <apr_lib.h>
#include <apr_strings.h>

#include "h2c_direct_int.h"
#include "h2c_json.h"
#include "h2c_tags.h"

/* one header into nv[n++]: names and values are copied by nghttp2 */
#define NV(k, v)                                                                         \
    nv[n++] = (nghttp2_nv) {                                                             \
        (uint8_t *)(k), (uint8_t *)(v), strlen(k), strlen(v), NGHTTP2_NV_FLAG_NONE       \
    }

/* ---- replies ---------------------------------------------------------- */

static ssize_t out_read(nghttp2_session *ngh, int32_t id, uint8_t *buf, size_t length,
                        uint32_t *flags, nghttp2_data_source *src, void *user) {
    strm_t *s = src->ptr;
    apr_size_t n = s->out_len - s->out_off;

    (void)ngh, (void)id, (void)user;
    if (length > H2C_DIRECT_DATA_MAX) {
        length = H2C_DIRECT_DATA_MAX; /* see h2c_direct_int.h */
    }
    if (n > length) {
        n = length;
    }
    memcpy(buf, s->out + s->out_off, n);
    s->out_off += n;
    s->progress = s->c->d->now_us;
    h2c_direct_sent_data(s, n);
    if (s->out_off == s->out_len) {
        *flags |= NGHTTP2_DATA_FLAG_EOF;
    }
    return (ssize_t)n;
}

/* Replaces the stream's pending bytes; 0 if out of memory. */
int h2c_direct_set_out(strm_t *s, const char *data, apr_size_t len) {
    char *p = malloc(len ? len : 1);

    if (!p) {
        return 0;
    }
    memcpy(p, data, len);
    free(s->out);
    s->out = p;
    s->out_len = len;
    s->out_off = 0;
    return 1;
}

/* A complete answer: status, JSON body (none for HEAD) and headers. */
void h2c_direct_reply(strm_t *s, int status, const char *json, const char *retry_after,
                      const char *allow) {
    char st[4];
    nghttp2_nv nv[10];
    size_t n = 0;
    nghttp2_data_provider dp;
    const char *body = apr_pstrcat(s->c->d->scratch, json, "\n", NULL);

    apr_snprintf(st, sizeof(st), "%d", status);
    s->status = status;
    NV(":status", st);
    NV("date", s->c->d->date);
    NV("content-type", "application/json");
    NV("cache-control", "no-store");
    if (retry_after) {
        NV("retry-after", retry_after);
    }
    if (allow) {
        NV("allow", allow);
    }
    n += h2c_direct_cors(s, nv + n);
    s->kind = STRM_REPLY;
    s->progress = s->c->d->now_us;
    if (s->head || !h2c_direct_set_out(s, body, strlen(body))) {
        nghttp2_submit_response(s->c->ngh, s->id, nv, n, NULL);
        return;
    }
    dp.source.ptr = s;
    dp.read_callback = out_read;
    nghttp2_submit_response(s->c->ngh, s->id, nv, n, &dp);
}

/* The CORS fields of an answer to a listed origin (h2c_policy_cors), into
 * nv (room for 4): how many. */
size_t h2c_direct_cors(const strm_t *s, nghttp2_nv *nv) {
    const char *o = h2c_policy_cors(s->c->site->conf.origins, s->origin);
    size_t n = 0;

    if (o) {
        NV("access-control-allow-origin", o);
        NV("access-control-allow-credentials", "true");
        NV("access-control-expose-headers", H2C_CORS_EXPOSE);
        NV("vary", "origin");
    }
    return n;
}

/* httpd's own answer to a request its processing refused (the check's: a
 * 401 with its challenge, a 403, a redirect, an ErrorDocument), as
 * mod_http2 would send it: its fields, less those HTTP/2 has no place for. */
void h2c_direct_reply_pass(strm_t *s, const h2c_direct_pass_t *pass) {
    static const char *const hop[] = {"connection",
                                      "keep-alive",
                                      "proxy-connection",
                                      "transfer-encoding",
                                      "upgrade",
                                      "content-length",
                                      "date"};
    apr_pool_t *p = s->c->d->scratch;
    char *st = apr_psprintf(p, "%d", pass->status), *line, *last, *colon;
    nghttp2_nv nv[24];
    size_t n = 0, i;
    nghttp2_data_provider dp;

    s->status = pass->status;
    NV(":status", st);
    NV("date", s->c->d->date);
    n += h2c_direct_cors(s, nv + n);
    for (line =
             apr_strtok(apr_pstrdup(p, pass->headers ? pass->headers : ""), "\n", &last);
         line && n < sizeof(nv) / sizeof(nv[0]); line = apr_strtok(NULL, "\n", &last)) {
        if (!(colon = strchr(line, ':'))) {
            continue;
        }
        *colon = '\0';
        for (i = 0; line[i]; i++) {
            line[i] = (char)apr_tolower(line[i]); /* HTTP/2 field names */
        }
        for (i = 0; i < sizeof(hop) / sizeof(hop[0]) && strcmp(line, hop[i]); i++) {
        }
        if (i == sizeof(hop) / sizeof(hop[0])) {
            NV(line, colon + 1 + strspn(colon + 1, " "));
        }
    }
    s->kind = STRM_REPLY;
    s->progress = s->c->d->now_us;
    if (s->head || !pass->body_len ||
        !h2c_direct_set_out(s, pass->body, pass->body_len)) {
        nghttp2_submit_response(s->c->ngh, s->id, nv, n, NULL);
        return;
    }
    dp.source.ptr = s;
    dp.read_callback = out_read;
    nghttp2_submit_response(s->c->ngh, s->id, nv, n, &dp);
}

/* A refusal as the policy decided it: status, {"error":..}, its headers
 * and one tagged log line, as the handler renders it. */
void h2c_direct_refuse(strm_t *s, const h2c_verdict_t *v) {
    const h2c_deny_info_t *info = h2c_policy_info(v->deny);
    h2c_direct_t *d = s->c->d;
    char retry[24];

    h2c_direct_check_asked(s); /* before httpd's check: the loop's own line */
    h2c_log(info->level, info->tag, "%d %s (client %s, direct)", info->status, v->message,
            s->c->peer);
    if (info->counter < H2C_REFUSED_MAX) {
        h2c_seg_count_refusal(d->env.seg, info->counter);
    }
    apr_snprintf(retry, sizeof(retry), "%d", v->retry_after);
    h2c_direct_reply(s, info->status, h2c_json_error(d->scratch, v->message),
                     v->retry_after > 0 ? retry : NULL, info->allow);
}

/* The request as the policy reads it. */
void h2c_direct_describe(const strm_t *s, const char *path, const char *args,
                         h2c_request_t *req) {
    req->method = s->method;
    req->path = path;
    req->args = args;
    req->content_type = s->ctype;
    req->accept = s->accept;
    req->origin = s->origin;
    req->last_event_id = s->last_event_id;
    req->content_length = s->clen;
    req->client = h2c_direct_client(s);
}

/* A CORS preflight: 204, with the CORS fields for a listed origin (an
 * unlisted one gets none: the browser then refuses the request itself). */
void h2c_direct_preflight(strm_t *s) {
    nghttp2_nv nv[10];
    size_t n = 0;

    NV(":status", "204");
    NV("date", s->c->d->date);
    if (h2c_policy_cors(s->c->site->conf.origins, s->origin)) {
        n += h2c_direct_cors(s, nv + n);
        NV("access-control-allow-methods", H2C_CORS_METHODS);
        NV("access-control-allow-headers", H2C_CORS_HEADERS);
        NV("access-control-max-age", H2C_CORS_MAX_AGE);
    }
    s->status = 204;
    s->kind = STRM_REPLY;
    h2c_direct_check_asked(s);
    nghttp2_submit_response(s->c->ngh, s->id, nv, n, NULL);
}
