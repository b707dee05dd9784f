/*
 * Areté client-id rule for Mosquitto 2.0 (plugin API v5).
 *
 * Each broker account owns its client ids: a client may connect only with the client id
 * "<username>" or "<username>:<anything>". ':' can never be part of a username in a
 * Mosquitto password file, so no account's ids can collide with another's. Without this
 * rule any account (the read-only viewer included) could connect with an agent's or the
 * maestro's client id and knock it off the broker, or resume its queued session.
 *
 * The plugin only refuses: when the client id is the user's own it answers
 * MOSQ_ERR_PLUGIN_DEFER, so the password file still checks the password. The same rule
 * is written in Python in arete/clientids.py (keep them in step; tests check both).
 *
 * Built by scripts/setup.sh (or `arete broker run`) with:
 *   gcc -O2 -Wall -Wextra -Werror -fPIC -shared -o arete_clientid.so arete_clientid.c
 */
#include <stddef.h>
#include <string.h>

#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>

#define ARETE_CLIENT_ID_SEPARATOR ':'

static mosquitto_plugin_id_t *plugin_id = NULL;

/* 1 when client_id is "<username>" or "<username>:<anything>", else 0. */
static int owns_client_id(const char *username, const char *client_id)
{
    size_t length;

    if (username == NULL || client_id == NULL || username[0] == '\0') {
        return 0;
    }
    length = strlen(username);
    if (strncmp(client_id, username, length) != 0) {
        return 0;
    }
    return client_id[length] == '\0' || client_id[length] == ARETE_CLIENT_ID_SEPARATOR;
}

static int on_basic_auth(int event, void *event_data, void *userdata)
{
    struct mosquitto_evt_basic_auth *auth = event_data;
    const char *client_id;

    (void)event;
    (void)userdata;
    if (auth->username == NULL) {
        /* Anonymous: allow_anonymous false (and the password file) refuse it. */
        return MOSQ_ERR_PLUGIN_DEFER;
    }
    client_id = mosquitto_client_id(auth->client);
    if (owns_client_id(auth->username, client_id)) {
        return MOSQ_ERR_PLUGIN_DEFER;
    }
    mosquitto_log_printf(
        MOSQ_LOG_NOTICE,
        "arete: refused client id '%s' for user '%s': an account may use only the client "
        "id '%s' or ids starting with '%s:'",
        client_id == NULL ? "" : client_id, auth->username, auth->username, auth->username);
    return MOSQ_ERR_AUTH;
}

int mosquitto_plugin_version(int supported_version_count, const int *supported_versions)
{
    int i;

    for (i = 0; i < supported_version_count; i++) {
        if (supported_versions[i] == 5) {
            return 5;
        }
    }
    return -1;
}

int mosquitto_plugin_init(
    mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *options,
    int option_count)
{
    (void)userdata;
    (void)options;
    (void)option_count;
    plugin_id = identifier;
    return mosquitto_callback_register(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL, NULL);
}

int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *options, int option_count)
{
    (void)userdata;
    (void)options;
    (void)option_count;
    return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_BASIC_AUTH, on_basic_auth, NULL);
}
