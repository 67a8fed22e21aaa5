/* mod_slowauth: a test-only authn provider ("slow") that blocks, as an
 * LDAP or database provider may: user "slow" waits SLOWAUTH_MS (2000) in
 * check_password before it is let in; every other user at once. Any
 * password is right. Loaded only by t/test_direct_slowauth.py. */
#include <apr_time.h>
#include <httpd.h>
#include <http_config.h>
#include <http_request.h>
#include <mod_auth.h>
#include <string.h>

static authn_status check(request_rec *r, const char *user, const char *password) {
    (void)r, (void)password;
    if (!strcmp(user, "slow")) {
        apr_sleep(apr_time_from_msec(2000));
    }
    return AUTH_GRANTED;
}

static const authn_provider provider = {check, NULL};

static void register_hooks(apr_pool_t *p) {
    ap_register_auth_provider(p, AUTHN_PROVIDER_GROUP, "slow", AUTHN_PROVIDER_VERSION,
                              &provider, AP_AUTH_INTERNAL_PER_CONF);
}

AP_DECLARE_MODULE(slowauth) = {STANDARD20_MODULE_STUFF, NULL, NULL, NULL, NULL, NULL,
                               register_hooks};
