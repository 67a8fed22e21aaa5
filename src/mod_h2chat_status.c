/* mod_h2chat_status: the mod_h2chat section of mod_status's server-status,
 * as an HTML table and as `H2Chat...: value` lines for ?auto. */
#include "mod_h2chat.h"

#include <apr_strings.h>
#include <http_protocol.h>
#include <mod_status.h>

/* "pid=held,pid=held" for the children that hold a row now. */
static const char *per_child(request_rec *r, const h2c_seg_t *seg) {
    const char *out = "";
    uint32_t i;

    for (i = 0; i < h2c_seg_child_count(seg); i++) {
        uint32_t pid = __atomic_load_n(&seg->children[i].pid, __ATOMIC_ACQUIRE);

        if (pid) {
            out = apr_psprintf(r->pool, "%s%s%u=%u", out, *out ? "," : "", pid,
                               __atomic_load_n(&seg->children[i].held, __ATOMIC_ACQUIRE));
        }
    }
    return out;
}

static void status_auto(request_rec *r, h2chat_state_t *st) {
    h2c_seg_t *seg = &st->seg;
    int i;

    ap_rprintf(r, "H2ChatSubscribers: %u\n", h2c_seg_sub_total(seg));
    ap_rprintf(r, "H2ChatMaxSubscribers: %u\n", st->max_subscribers);
    ap_rprintf(r, "H2ChatSubscribersPerChild: %s\n", per_child(r, seg));
    ap_rprintf(r, "H2ChatPublished: %" APR_UINT64_T_FMT "\n",
               (apr_uint64_t)h2c_seg_published(seg));
    ap_rprintf(r, "H2ChatLastId: %" APR_UINT64_T_FMT "\n",
               (apr_uint64_t)h2c_ring_last_id(&seg->ring));
    ap_rprintf(r, "H2ChatHistoryFill: %u/%u\n", h2c_ring_count(&seg->ring),
               h2c_ring_capacity(&seg->ring));
    if (!strcmp(st->store.ops->name, "redis")) {
        h2c_seg_shared_t *sh = h2c_seg_shared(seg);

        ap_rprintf(r, "H2ChatRedis: %s\n",
                   __atomic_load_n(&sh->redis_up, __ATOMIC_ACQUIRE) ? "up" : "down");
        ap_rprintf(r, "H2ChatRedisLastId: %" APR_UINT64_T_FMT "\n",
                   (apr_uint64_t)__atomic_load_n(&sh->redis_last_id, __ATOMIC_ACQUIRE));
        ap_rprintf(r, "H2ChatRedisReader: %u\n",
                   __atomic_load_n(&sh->reader_pid, __ATOMIC_ACQUIRE));
    }
    {
        uint32_t conns, held;

        h2c_seg_direct_totals(seg, &conns, &held);
        ap_rprintf(r, "H2ChatDirectConnections: %u\nH2ChatDirectSubscribers: %u\n", conns,
                   held);
    }
    ap_rprintf(r, "H2ChatDroppedStalled: %u\n",
               __atomic_load_n(&h2c_seg_shared(seg)->stalled_dropped, __ATOMIC_RELAXED));
    for (i = 0; i < H2C_REFUSED_MAX; i++) {
        ap_rprintf(r, "H2ChatRefused%s: %" APR_UINT64_T_FMT "\n",
                   h2c_seg_refusal_name((h2c_refusal_t)i),
                   (apr_uint64_t)h2c_seg_refusals(seg, (h2c_refusal_t)i));
    }
}

static void status_html(request_rec *r, h2chat_state_t *st) {
    h2c_seg_t *seg = &st->seg;
    uint32_t i, dconns, dheld;
    int k;

    ap_rputs("<hr />\n<h2>mod_h2chat</h2>\n<table border=\"1\">\n", r);
    ap_rprintf(r, "<tr><th>held subscribers</th><td>%u of at most %u</td></tr>\n",
               h2c_seg_sub_total(seg), st->max_subscribers);
    ap_rprintf(r, "<tr><th>messages published</th><td>%" APR_UINT64_T_FMT "</td></tr>\n",
               (apr_uint64_t)h2c_seg_published(seg));
    ap_rprintf(r, "<tr><th>last id</th><td>%" APR_UINT64_T_FMT "</td></tr>\n",
               (apr_uint64_t)h2c_ring_last_id(&seg->ring));
    ap_rprintf(r, "<tr><th>history</th><td>%u of %u</td></tr>\n",
               h2c_ring_count(&seg->ring), h2c_ring_capacity(&seg->ring));
    if (!strcmp(st->store.ops->name, "redis")) {
        h2c_seg_shared_t *sh = h2c_seg_shared(seg);

        ap_rprintf(r,
                   "<tr><th>Redis link</th><td>%s, last id read %" APR_UINT64_T_FMT
                   ", reader pid %u</td></tr>\n",
                   __atomic_load_n(&sh->redis_up, __ATOMIC_ACQUIRE) ? "up" : "down",
                   (apr_uint64_t)__atomic_load_n(&sh->redis_last_id, __ATOMIC_ACQUIRE),
                   __atomic_load_n(&sh->reader_pid, __ATOMIC_ACQUIRE));
    }
    h2c_seg_direct_totals(seg, &dconns, &dheld);
    ap_rprintf(r,
               "<tr><th>H2ChatDirect</th><td>%u connections, %u of the held "
               "subscribers</td></tr>\n",
               dconns, dheld);
    ap_rprintf(r, "<tr><th>dropped: client stopped reading</th><td>%u</td></tr>\n",
               __atomic_load_n(&h2c_seg_shared(seg)->stalled_dropped, __ATOMIC_RELAXED));
    for (k = 0; k < H2C_REFUSED_MAX; k++) {
        ap_rprintf(r, "<tr><th>refused: %s</th><td>%" APR_UINT64_T_FMT "</td></tr>\n",
                   h2c_seg_refusal_name((h2c_refusal_t)k),
                   (apr_uint64_t)h2c_seg_refusals(seg, (h2c_refusal_t)k));
    }
    ap_rputs("</table>\n<table border=\"1\"><tr><th>child pid</th><th>held</th></tr>\n",
             r);
    for (i = 0; i < h2c_seg_child_count(seg); i++) {
        uint32_t pid = __atomic_load_n(&seg->children[i].pid, __ATOMIC_ACQUIRE);

        if (pid) {
            ap_rprintf(r, "<tr><td>%u</td><td>%u</td></tr>\n", pid,
                       __atomic_load_n(&seg->children[i].held, __ATOMIC_ACQUIRE));
        }
    }
    ap_rputs("</table>\n", r);
}

int h2chat_status_hook(request_rec *r, int flags) {
    h2chat_state_t *st = h2chat_state();

    if (!st->usable) {
        ap_rputs((flags & AP_STATUS_SHORT) ? "H2ChatUsable: 0\n"
                                           : "<hr /><h2>mod_h2chat</h2><p>unusable</p>\n",
                 r);
        return OK;
    }
    if (flags & AP_STATUS_SHORT) {
        status_auto(r, st);
    } else {
        status_html(r, st);
    }
    return OK;
}
