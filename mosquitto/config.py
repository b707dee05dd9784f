"""``mosquitto.conf`` rendered from validated options. Pure: no I/O.

The limits below are chosen for Areté's traffic and are explained in ``docs/broker.md``;
the comments written into the file say the same, for whoever reads it on a server.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from typing import Final

from arete.errors import TopicError
from arete.payloads import MAX_REPLY_BYTES
from arete.topics import DEFAULT_ROOT, validate_root
from mosquitto.errors import BrokerConfigError
from mosquitto.layout import Layout

DEFAULT_PORT: Final = 1883
DEFAULT_HOST: Final = "127.0.0.1"
AUTOSAVE_INTERVAL_S: Final = 10
# Per client. Past either limit Mosquitto drops further QoS 1 messages for that client
# *silently*, so they are sized for the maestro's persistent session riding out a
# restart of a few minutes with a large fleet, not for the default (1000 messages).
MAX_QUEUED_MESSAGES: Final = 200_000
MAX_QUEUED_BYTES: Final = 512 * 1024 * 1024
# How often Mosquitto republishes its $SYS counters; the maestro learns of the drops
# above from ``$SYS/broker/publish/messages/dropped`` at most this much later.
SYS_INTERVAL_S: Final = 10
MAX_SYS_INTERVAL_S: Final = 3600
# A persistent session nobody resumes holds its queue in RAM until it expires.
PERSISTENT_CLIENT_EXPIRATION: Final = "7d"
# The largest payload is a reply carrying a screenshot; leave room for the topic and
# MQTT 5 properties around it.
MAX_PACKET_BYTES: Final = MAX_REPLY_BYTES + 64 * 1024

_HOSTNAME_RE: Final = re.compile(
    r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?"
    r"(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$"
)


def validate_host(host: str, what: str = "bind host") -> str:
    """An IP address or a DNS name; nothing that could smuggle a line into a config."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME_RE.fullmatch(host):
            raise BrokerConfigError(
                f"invalid {what} {host!r}: give an IP address (127.0.0.1, 0.0.0.0, ::1) "
                "or a host name"
            ) from None
    return host


def validate_port(port: int, what: str = "port") -> int:
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise BrokerConfigError(f"invalid {what} {port!r}: use 1-65535")
    return port


def _validate_count(value: int, what: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise BrokerConfigError(f"invalid {what} {value!r}: use {low}-{high}")


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """What ``arete broker run`` was asked for; validated on construction."""

    port: int = DEFAULT_PORT
    host: str = DEFAULT_HOST
    root: str = DEFAULT_ROOT
    tls_port: int | None = None
    ws_port: int | None = None
    # The websockets listener's address (an IP: Mosquitto 2.0.11 binds a websockets
    # listener to its address only with a matching ``socket_domain``, and to every
    # interface otherwise); None: ``host``. 0.0.0.0 or :: needs ws_all_interfaces.
    ws_host: str | None = None
    ws_all_interfaces: bool = False
    # Websockets with TLS (wss://), with the certificate of the TLS listener.
    ws_tls: bool = False
    # Per client; 0 would mean "no limit" to Mosquitto, so it is refused.
    max_queued_messages: int = MAX_QUEUED_MESSAGES
    sys_interval_s: int = SYS_INTERVAL_S
    # False: no maestro/viewer accounts made, no plaintext password files written
    # (a deployment creates every account with `arete broker passwd`).
    service_accounts: bool = True

    @property
    def ws_bind(self) -> str:
        return self.ws_host if self.ws_host is not None else self.host

    def __post_init__(self) -> None:
        validate_port(self.port)
        _validate_count(self.max_queued_messages, "max_queued_messages", 1, 1_000_000_000)
        _validate_count(self.sys_interval_s, "sys_interval", 1, MAX_SYS_INTERVAL_S)
        validate_host(self.host)
        try:
            validate_root(self.root)
        except TopicError as exc:
            raise BrokerConfigError(str(exc)) from None
        ports = [self.port]
        if self.tls_port is not None:
            ports.append(validate_port(self.tls_port, "TLS port"))
        if self.ws_port is not None:
            ports.append(validate_port(self.ws_port, "websockets port"))
            if not isinstance(self.ws_host, str | None) or not isinstance(self.ws_tls, bool):
                raise BrokerConfigError("ws_host must be an IP address and ws_tls true or false")
            address = ws_address(self.ws_bind)
            if address.is_unspecified and not self.ws_all_interfaces:
                raise BrokerConfigError(
                    f"the websockets listener would listen on ALL network interfaces "
                    f"({self.ws_bind}); pass --ws-all-interfaces to accept that (and "
                    "firewall the port), or give --ws-host 127.0.0.1"
                )
        elif self.ws_tls:
            raise BrokerConfigError("websockets TLS (--wss) needs a websockets port (--ws-port)")
        if len(set(ports)) != len(ports):
            raise BrokerConfigError(f"the listener ports must differ, got {ports}")


def render_config(layout: Layout, options: BrokerOptions, *, user: str | None = None) -> str:
    """The full ``mosquitto.conf``.

    ``user`` is the account Mosquitto, started as root, keeps running as (Mosquitto
    ignores the line otherwise, so it is written only when given). It comes from the
    system, which allows more than any rule we could write, so only what would break
    the config line is refused.
    """
    if user is not None and (not user or user != user.strip() or not user.isprintable()):
        raise BrokerConfigError(f"cannot write the system user name {user!r} into a config")
    lines = [
        "# Generated by `arete broker run`; edits are overwritten at the next run.",
        "# See docs/broker.md for why each value is what it is.",
        "",
        "# One set of accounts and ACLs for every listener.",
        "per_listener_settings false",
        "allow_anonymous false",
        "# Each account may connect only with its own client ids: '<username>' or",
        "# '<username>:<anything>' (docs/topics.md). The plugin refuses any other id and",
        "# leaves the password check to the password file.",
        f"plugin {layout.clientid_plugin}",
        f"password_file {layout.password_file}",
        f"acl_file {layout.acl_file}",
        "",
    ]
    if user is not None:
        lines += [
            "# Started as root, Mosquitto would switch to the 'mosquitto' user, which",
            "# cannot read the 0600 files above: stay root.",
            f"user {user}",
            "",
        ]
    lines += [
        "# Retained statuses and persistent sessions survive a restart; at most",
        f"# {AUTOSAVE_INTERVAL_S} s of changes are lost if the broker is killed.",
        "persistence true",
        f"persistence_location {layout.persistence_dir}/",
        "persistence_file mosquitto.db",
        f"autosave_interval {AUTOSAVE_INTERVAL_S}",
        f"persistent_client_expiration {PERSISTENT_CLIENT_EXPIRATION}",
        "",
        "# Queues for offline or slow persistent sessions (the maestro). Past either",
        "# limit Mosquitto DROPS further QoS 1 messages for that client; the senders",
        f"# are not told. {MAX_QUEUED_MESSAGES} messages (the default) cover a few minutes",
        "# of a 1000-agent fleet at 1 Hz; the byte cap bounds the RAM one stalled client takes.",
        f"max_queued_messages {options.max_queued_messages}",
        f"max_queued_bytes {MAX_QUEUED_BYTES}",
        "# Mosquitto counts those drops in $SYS/broker/publish/messages/dropped, updated",
        "# this often; the maestro reads it and reports them (docs/maestro.md).",
        f"sys_interval {options.sys_interval_s}",
        "",
        "# Screenshot replies are the largest payloads.",
        f"max_packet_size {MAX_PACKET_BYTES}",
        "# Commands, replies and heartbeats are small and latency-sensitive.",
        "set_tcp_nodelay true",
        "",
        "log_dest stderr",
        "# Not 'information': it logs every autosave (each 10 s) and drowns the rest.",
        "log_type error",
        "log_type warning",
        "log_type notice",
        "log_timestamp_format %Y-%m-%dT%H:%M:%S",
        "connection_messages true",
        "",
        "# Plain MQTT.",
        f"listener {options.port} {options.host}",
        "protocol mqtt",
    ]
    if options.tls_port is not None:
        lines += [
            "",
            "# MQTT over TLS with the CA and server certificate of `arete broker tls-init`.",
            f"listener {options.tls_port} {options.host}",
            "protocol mqtt",
            f"cafile {layout.ca_cert}",
            f"certfile {layout.server_cert}",
            f"keyfile {layout.server_key}",
            "tls_version tlsv1.2",
        ]
    if options.ws_port is not None:
        address = ws_address(options.ws_bind)
        lines += [
            "",
            "# MQTT over websockets (browsers, apps). Mosquitto 2.0.11 binds a websockets",
            "# listener to its address only with socket_domain; without, on ALL interfaces.",
            f"listener {options.ws_port} {address}",
            f"socket_domain ipv{address.version}",
            "protocol websockets",
        ]
        if options.ws_tls:
            lines += [
                "# wss:// with the CA and server certificate of `arete broker tls-init`.",
                f"cafile {layout.ca_cert}",
                f"certfile {layout.server_cert}",
                f"keyfile {layout.server_key}",
                "tls_version tlsv1.2",
            ]
    return "\n".join(lines) + "\n"


def ws_warnings(options: BrokerOptions) -> list[str]:
    """What to tell whoever starts a broker whose websockets listener others can reach."""
    if options.ws_port is None:
        return []
    address = ws_address(options.ws_bind)
    out = []
    if address.is_unspecified:
        out.append(
            f"the websockets listener on port {options.ws_port} is reachable on ALL network "
            "interfaces; firewall it if that is not what you want"
        )
    if not address.is_loopback and not options.ws_tls:
        out.append(
            f"the websockets listener on port {options.ws_port} has no TLS but other machines "
            "can reach it: passwords (the viewer's, an app's) would cross the network in "
            "clear; add --wss (the broker's certificate) or keep it on 127.0.0.1 behind a "
            "TLS proxy"
        )
    return out


def ws_address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    """The websockets listener's address: an IP address (Mosquitto cannot bind a
    websockets listener to a host name)."""
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        raise BrokerConfigError(
            f"the websockets listener needs an IP address to bind, not {host!r}: "
            "give --ws-host (e.g. 127.0.0.1, or 0.0.0.0 with --ws-all-interfaces)"
        ) from None
