/* mod_h2chat: a chat and pub/sub endpoint over held-open HTTP/2 streams.
 *
 * Glue only: the module record, the hooks, and the handler that sends each
 * request of an `H2Chat On` location to subscribe (GET) or publish (POST).
 * The work is in src/: mod_h2chat_*.c talk to httpd, h2c_*.c do not. */
#include <httpd.h>
#include <http_config.h>
#include <http_connection.h>
#include <http_protocol.h>
#include <http_request.h>
#include <mod_status.h>
#include <mpm_common.h>

#include "src/mod_h2chat.h"

static int h2chat_handler(request_rec *r) {
    const h2chat_dir_conf_t *dc = ap_get_module_config(r->per_dir_config, &h2chat_module);

    if (!dc || dc->enabled != 1 || r->main) {
        return DECLINED;
    }
    switch (r->method_number) {
    case M_GET:
        return h2chat_subscribe(r, dc);
    case M_POST:
        return h2chat_publish(r, dc);
    default:
        r->allowed = (AP_METHOD_BIT << M_GET) | (AP_METHOD_BIT << M_POST);
        apr_table_setn(r->err_headers_out, "Allow", "GET, POST");
        return h2chat_reply_error(r, HTTP_METHOD_NOT_ALLOWED, H2C_REFUSED_METHOD,
                                  H2C_TAG_METHOD, "method not allowed: use GET or POST");
    }
}

static const char *const direct_after[] = {"mod_ssl.c", "mod_reqtimeout.c", NULL};

static void h2chat_register_hooks(apr_pool_t *p) {
    (void)p;
    ap_hook_pre_config(h2chat_shm_pre_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_post_config(h2chat_shm_post_config, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_init(h2chat_shm_child_init, NULL, NULL, APR_HOOK_MIDDLE);
    ap_hook_child_stopping(h2chat_shm_child_stopping, NULL, NULL, APR_HOOK_MIDDLE);
    /* H2ChatDirect: before mod_http2 (APR_HOOK_LAST) looks at the preface */
    ap_hook_process_connection(h2chat_direct_process_connection, direct_after, NULL,
                               APR_HOOK_MIDDLE);
    /* before mod_dir/default handler: the location is ours, whatever file
     * may or may not exist there */
    ap_hook_handler(h2chat_handler, NULL, NULL, APR_HOOK_FIRST);
    APR_OPTIONAL_HOOK(ap, status_hook, h2chat_status_hook, NULL, NULL, APR_HOOK_MIDDLE);
}

/* APLOG_USE_MODULE(h2chat) is in mod_h2chat.h, for every glue unit. */
module AP_MODULE_DECLARE_DATA h2chat_module = {
    STANDARD20_MODULE_STUFF, h2chat_create_dir_conf,
    h2chat_merge_dir_conf,   h2chat_create_srv_conf,
    h2chat_merge_srv_conf,   h2chat_cmds,
    h2chat_register_hooks,   0,
};
