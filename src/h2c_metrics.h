/* h2c_metrics: the statistics snapshot (h2c_stats) as Prometheus's text
 * exposition format, version 0.0.4 (pure unit, no httpd headers). The
 * h2chat-metrics handler sends what this renders; like server-status it
 * renders one snapshot and never reads the segment itself. */
#ifndef H2C_METRICS_H
#define H2C_METRICS_H

#include <apr_pools.h>

#include "h2c_stats.h"

/* The Content-Type of what h2c_metrics_render returns. */
#define H2C_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* The whole exposition of `st` (NULL: the module is unusable, only
 * h2chat_usable 0), NUL-terminated, allocated from p; *len its length. */
const char *h2c_metrics_render(const h2c_stats_t *st, apr_pool_t *p, apr_size_t *len);

/* A label value escaped as the format asks (backslash, double quote and
 * newline), from p. */
const char *h2c_metrics_label_escape(const char *value, apr_pool_t *p);

/* A CamelCase name ("TooLarge", "RedisLastId") in snake case
 * ("too_large", "redis_last_id"), from p: label values and metric names
 * made from the names server-status shows. */
const char *h2c_metrics_snake(const char *name, apr_pool_t *p);

#endif /* H2C_METRICS_H */
