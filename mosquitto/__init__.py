"""Areté's broker: Debian's Mosquitto, locked down and configured from the topic contract.

``arete broker run`` (:mod:`mosquitto.cli`) writes the config (:mod:`mosquitto.config`),
the per-agent ACL (:mod:`mosquitto.acl`) and the accounts (:mod:`mosquitto.accounts`,
:mod:`mosquitto.passwords`) under a data dir (:mod:`mosquitto.layout`), optionally a CA
and server certificate (:mod:`mosquitto.tls`, imported on demand: it needs
``cryptography``), then runs Mosquitto (:mod:`mosquitto.runner`). See docs/broker.md.
"""

from mosquitto.accounts import (
    add_agent_credentials,
    agent_ids,
    ensure_service_accounts,
    remove_agent_credentials,
)
from mosquitto.acl import MAESTRO, SERVICE_ACCOUNTS, VIEWER, render_acl
from mosquitto.config import BrokerOptions, render_config
from mosquitto.errors import (
    AccountExists,
    BrokerAlreadyRunning,
    BrokerConfigError,
    BrokerError,
    BrokerNotSetUp,
    DataDirError,
    MosquittoNotInstalled,
    PasswordFileError,
    PluginBuildError,
    ReloadNotPermitted,
    TlsError,
    UnknownAgent,
)
from mosquitto.layout import Layout
from mosquitto.passwords import hash_password, new_password, verify_password
from mosquitto.plugin import ensure_plugin
from mosquitto.runner import PreparedBroker, find_mosquitto, prepare_broker, run_broker
from mosquitto.state import BrokerInfo, load_info, reload_broker

__all__ = [
    "MAESTRO",
    "SERVICE_ACCOUNTS",
    "VIEWER",
    "AccountExists",
    "BrokerAlreadyRunning",
    "BrokerConfigError",
    "BrokerError",
    "BrokerInfo",
    "BrokerNotSetUp",
    "BrokerOptions",
    "DataDirError",
    "Layout",
    "MosquittoNotInstalled",
    "PasswordFileError",
    "PluginBuildError",
    "PreparedBroker",
    "ReloadNotPermitted",
    "TlsError",
    "UnknownAgent",
    "add_agent_credentials",
    "agent_ids",
    "ensure_plugin",
    "ensure_service_accounts",
    "find_mosquitto",
    "hash_password",
    "load_info",
    "new_password",
    "prepare_broker",
    "reload_broker",
    "remove_agent_credentials",
    "render_acl",
    "render_config",
    "run_broker",
    "verify_password",
]
