/* mod_h2chat_metrics: the h2chat-metrics handler, Prometheus's text
 * exposition of the statistics snapshot (h2c_stats read once, rendered by
 * h2c_metrics). Only the HTTP side is here. */
#include "mod_h2chat.h"

#include <string.h>

#include <http_protocol.h>

#include "h2c_metrics.h"
#include "h2c_stats.h"

/* Scrapers only read: anything but GET (and HEAD, which httpd counts as
 * GET) is answered 405 here, with our own Allow (httpd's would list TRACE
 * and whatever other modules registered). */
static int not_allowed(request_rec *r) {
    ap_discard_request_body(r);
    r->status = HTTP_METHOD_NOT_ALLOWED;
    r->allowed = AP_METHOD_BIT << M_GET;
    apr_table_setn(r->headers_out, "Allow", "GET, HEAD");
    ap_set_content_type(r, "text/plain; charset=utf-8");
    ap_rputs("405 method not allowed: GET or HEAD\n", r);
    return OK;
}

int h2chat_metrics_handler(request_rec *r) {
    h2chat_state_t *state = h2chat_state();
    h2c_stats_t st;
    const char *text;
    apr_size_t len;

    if (!r->handler || strcmp(r->handler, "h2chat-metrics")) {
        return DECLINED;
    }
    if (r->method_number != M_GET) {
        return not_allowed(r);
    }
    /* unusable: still 200, with h2chat_usable 0, so an alert can tell a
     * module without its segment from an Apache that does not answer */
    if (state->usable) {
        h2c_stats_read(&st, &state->store, state->limits.max_subscribers,
                       state->limits.max_per_address, r->pool);
    }
    text = h2c_metrics_render(state->usable ? &st : NULL, r->pool, &len);
    ap_set_content_type(r, H2C_METRICS_CONTENT_TYPE);
    apr_table_setn(r->headers_out, "Cache-Control", "no-store");
    ap_set_content_length(r, (apr_off_t)len);
    if (!r->header_only) {
        ap_rwrite(text, (int)len, r);
    }
    return OK;
}
