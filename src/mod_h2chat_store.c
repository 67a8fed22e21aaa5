/* mod_h2chat_store: H2ChatStore, the one place that maps the configured
 * kind to a store's table of operations (h2c_store.h). */
#include "mod_h2chat.h"

apr_status_t h2chat_store_post_config(server_rec *s, apr_pool_t *pconf,
                                      h2c_store_t *store, h2c_seg_t *seg) {
    switch (h2chat_conf_store(s)) {
    case H2CHAT_STORE_REDIS:
        return h2chat_redis_store(s, pconf, store, seg);
    default:
        h2c_store_init(store, &h2c_store_shm_ops, seg, NULL, NULL);
        return APR_SUCCESS;
    }
}
