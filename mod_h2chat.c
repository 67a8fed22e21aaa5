/* mod_h2chat: a chat and pub/sub endpoint over held-open HTTP/2 streams.
 *
 * Glue only: the module record, the lifecycle (what starts and stops, in
 * which order), and the handler that routes each request of an `H2Chat On`
 * location to subscribe (GET) or publish (POST) as the request policy says.
 * The work is in src/: mod_h2chat_*.c talk to httpd, h2c_*.c do not. */
#include <httpd.h>
#include <http_config.h>
#include <http_connection.h>
#include <http_log.h>
#include <http_core.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_status.h>
#include <mpm_common.h>

#include "src/mod_h2chat.h"

static int h2chat_handler(request_rec *r) {
    const h2chat_dir_conf_t *dc = ap_get_module_config(r->per_dir_config, &h2chat_module);
    h2c_verdict_t v;
    int head;

    if (!dc || dc->enabled != 1 || r->main) {
        return DECLINED;
    }
    h2chat_reply_fields(r, dc);
    if (r->method_number == M_OPTIONS && apr_table_get(r->headers_in, "Origin")) {
        return h2chat_reply_preflight(r, dc);
    }
    switch (h2c_policy_route(r->method, &head, &v)) {
    case H2C_ROUTE_SUBSCRIBE:
        return h2chat_subscribe(r, dc);
    case H2C_ROUTE_PUBLISH:
        return h2chat_publish(r, dc);
    case H2C_ROUTE_DELETE:
        return h2chat_moderate(r, dc);
    default:
        return h2chat_reply_refusal(r, &v);
    }
}

/* ---- the lifecycle, in order ------------------------------------------ */

static int h2chat_pre_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp) {
    (void)plog, (void)ptemp;
    h2chat_conf_reset();
    return h2chat_shm_pre_config(pconf);
}

/* In the parent, once per generation: segment and lock, the store over
 * them, the journal into a new segment. Any failure leaves the module
 * unusable (requests get 503), never httpd down. */
static int h2chat_post_config(apr_pool_t *pconf, apr_pool_t *plog, apr_pool_t *ptemp,
                              server_rec *s) {
    h2chat_state_t *st = h2chat_state();
    int fresh;

    (void)plog, (void)ptemp;
    if (ap_state_query(AP_SQ_MAIN_STATE) == AP_SQ_MS_CREATE_PRE_CONFIG) {
        return OK;
    }
    h2chat_log_install(s);
    if (h2chat_shm_post_config(s, &fresh) != APR_SUCCESS ||
        h2chat_store_post_config(s, pconf, &st->store, &st->seg) != APR_SUCCESS) {
        return OK;
    }
    h2chat_journal_post_config(s, &st->store, fresh);
    st->usable = 1; /* for the parent; each child confirms in child_init */
    return OK;
}

/* In each child: its row and lock, then what follows the store's commits
 * (journal, wake-up gate), then the store's own threads (they see those
 * hooks in place), then the direct loop, which serves from the store. */
static void h2chat_child_init(apr_pool_t *pchild, server_rec *s) {
    h2chat_state_t *st = h2chat_state();
    apr_status_t rv;

    h2chat_log_install(s);
    if (!st->usable || h2chat_shm_child_init(pchild, s) != APR_SUCCESS) {
        st->usable = 0;
        return;
    }
    h2chat_journal_child_init(pchild, s, &st->store);
    if ((rv = h2chat_wake_child_init(pchild, s, &st->store)) != APR_SUCCESS ||
        (rv = h2chat_presence_child_init(pchild, &st->store, st->child_slot)) !=
            APR_SUCCESS ||
        (rv = h2c_store_open(&st->store, pchild)) != APR_SUCCESS) {
        ap_log_error(APLOG_MARK, APLOG_CRIT, rv, s,
                     H2C_TAG_CHILD_INIT ": cannot start the %s store's threads",
                     st->store.ops->name);
        return;
    }
    st->usable = 1;
    h2chat_spread_child_init(s);
    h2chat_direct_child_init(pchild, s);
}

/* Graceful stop or restart of this child: the reconnect hint's window is
 * chosen (H2ChatReconnectSpread), the store lets go of what another child
 * takes over, the waker ends (waking what it held back), every held stream
 * of the handler ends with its hint (clients resume), then the loop's. */
static void h2chat_child_stopping(apr_pool_t *pchild, int graceful) {
    h2chat_state_t *st = h2chat_state();

    (void)pchild, (void)graceful;
    if (!st->usable) {
        return;
    }
    h2chat_spread_child_stopping();
    __atomic_store_n(&st->stopping, 1, __ATOMIC_RELEASE);
    h2c_store_stop(&st->store);
    h2chat_presence_child_stopping();
    h2chat_wake_child_stopping();
    /* the handler's streams end now, while the loop below may take a moment
     * to drain; waiters in other children wake, find nothing new and sleep
     * again */
    h2c_store_wake_now(&st->store);
    h2chat_direct_child_stopping();
}

static const char *const direct_after[] = {"mod_ssl.c", "mod_reqtimeout.c", NULL};
static const char *const tls_before[] = {"mod_http2.c", NULL};

static void h2chat_register_hooks(apr_pool_t *p) {
    (void)p;
    ap_hook_pre_config(h2chat_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(h2chat_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(h2chat_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(h2chat_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    /* H2ChatDirect: before mod_http2 (APR_HOOK_LAST) looks at the preface */
    ap_hook_process_connection(h2chat_direct_process_connection, direct_after, NULL,
                               APR_HOOK_MIDDLE);
    /* H2ChatDirect over TLS: ALPN's "h2" is ours on such a host (before
     * mod_http2 claims it); after mod_ssl's handshake the connection goes
     * to the loop, once the MPM let it go (suspend_connection) */
    ap_hook_protocol_propose(h2chat_direct_tls_propose, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_protocol_switch(h2chat_direct_tls_switch, NULL, tls_before, APR_HOOK_MIDDLE);
    ap_hook_protocol_get(h2chat_direct_tls_protocol, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_process_connection(h2chat_direct_tls_process_connection, direct_after, NULL,
                               APR_HOOK_MIDDLE);
    ap_hook_suspend_connection(h2chat_direct_tls_suspend, NULL, NULL, APR_HOOK_MIDDLE);
    h2chat_direct_tls_register();
    h2chat_direct_req_register(); /* httpd's processing of their requests */
    /* before mod_dir/default handler: the location is ours, whatever file
     * may or may not exist there */
    ap_hook_handler(h2chat_handler, NULL, NULL, APR_HOOK_FIRST);
    /* SetHandler h2chat-metrics: the same snapshot as server-status */
    ap_hook_handler(h2chat_metrics_handler, NULL, NULL, APR_HOOK_MIDDLE);
    APR_OPTIONAL_HOOK(ap, status_hook, h2chat_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

/* APLOG_USE_MODULE(h2chat) is in mod_h2chat.h, for every glue unit. */
module AP_MODULE_DECLARE_DATA h2chat_module = {
    STANDARD20_MODULE_STUFF, h2chat_create_dir_conf,
    h2chat_merge_dir_conf,   h2chat_create_srv_conf,
    h2chat_merge_srv_conf,   h2chat_cmds,
    h2chat_register_hooks,   0,
};
