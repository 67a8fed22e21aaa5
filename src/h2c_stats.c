/* h2c_stats: see h2c_stats.h. */
#include "h2c_stats.h"

void h2c_stats_read(h2c_stats_t *st, h2c_store_t *store, uint32_t max_subscribers,
                    uint32_t max_per_address, apr_pool_t *p) {
    h2c_seg_t *seg = store->seg;
    h2c_rooms_t *rooms = h2c_store_history(store);
    uint32_t i, rows = h2c_seg_child_count(seg);
    int k;

    st->max_subscribers = max_subscribers;
    st->max_per_address = max_per_address;
    st->subscribers = st->direct_conns = st->direct_held = st->nchildren = 0;
    st->children = apr_palloc(p, rows * sizeof(*st->children));
    st->lat = apr_palloc(p, rows * sizeof(*st->lat));
    /* one pass over the child table: the totals and the rows agree */
    for (i = 0; i < rows; i++) {
        h2c_child_t row;

        h2c_seg_child_row(seg, i, &row);
        if (!row.pid) {
            continue;
        }
        h2c_seg_lat_row(seg, i, &st->lat[st->nchildren]);
        st->children[st->nchildren++] = row;
        st->subscribers += row.held;
        st->direct_conns += row.direct_conns;
        st->direct_held += row.direct_held;
    }
    st->published = h2c_seg_published(seg);
    st->last_id = h2c_rooms_last_id(rooms);
    st->history_count = h2c_rooms_room_count(rooms, H2C_ROOMS_DEFAULT);
    st->history_capacity = h2c_rooms_history(rooms);
    h2c_rooms_stats(rooms, &st->rooms);
    st->members = h2c_members_count(&seg->members);
    st->max_members = h2c_members_max(&seg->members);
    st->stalled_dropped = h2c_seg_stalled(seg);
    st->direct_calm = h2c_seg_calm(seg);
    st->direct_penalized = h2c_seg_penalized(seg);
    st->direct_handed = h2c_seg_handed(seg);
    for (k = 0; k < H2C_REFUSED_MAX; k++) {
        st->refused[k] = h2c_seg_refusals(seg, (h2c_refusal_t)k);
    }
    h2c_store_status(store, &st->store);
    st->store_name = store->ops->name;
}
