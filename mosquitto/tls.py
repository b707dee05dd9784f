"""A private CA and the broker's server certificate, generated with ``cryptography``.

Keys are ECDSA P-256: fast to generate and to handshake, and supported by paho, the
Mosquitto clients and the usual mobile MQTT libraries. Private keys are written 0600 and
unencrypted (Mosquitto reads them at start without a passphrase prompt). Agents need
only ``ca.crt`` to verify the broker: ``arete agents add`` copies it beside the agent
configs (``DATA/agents/ca.crt``), which name it relatively.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from mosquitto.config import validate_host
from mosquitto.errors import BrokerConfigError, TlsError
from mosquitto.layout import Layout, write_private

CA_DAYS: Final = 3650
SERVER_DAYS: Final = 825  # within the CA's life; re-issue with `tls-init --force`
PUBLIC_FILE: Final = 0o644

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True, slots=True)
class TlsResult:
    ca_created: bool
    server_created: bool
    names: tuple[str, ...]  # every DNS name and IP address in the server certificate


def default_names() -> list[str]:
    """Names a client on this machine or the LAN may use for the broker."""
    names = ["localhost", "127.0.0.1", "::1"]
    for candidate in (socket.gethostname(), socket.getfqdn()):
        try:
            names.append(validate_host(candidate))
        except BrokerConfigError:
            continue  # an odd host name must not stop certificate generation
    return names


def subject_alternative_names(names: Iterable[str]) -> list[x509.GeneralName]:
    general: list[x509.GeneralName] = []
    seen: set[str] = set()
    for name in names:
        validate_host(name, "certificate name")
        key = name.lower()
        if key in seen:
            continue
        seen.add(key)
        try:
            general.append(x509.IPAddress(ipaddress.ip_address(name)))
        except ValueError:
            general.append(x509.DNSName(name))
    return general


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode()


def _cert_pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _key_usage(*, ca: bool) -> x509.KeyUsage:
    """Signing only; a CA also signs certificates and revocation lists."""
    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )


def _issue(
    *,
    subject: x509.Name,
    public_key: ec.EllipticCurvePublicKey,
    issuer: x509.Name,
    issuer_key: ec.EllipticCurvePrivateKey,
    days: int,
    extensions: Iterable[tuple[x509.ExtensionType, bool]],
) -> x509.Certificate:
    """A certificate for ``public_key``, signed by ``issuer_key``, valid from 5 minutes
    ago (clock skew) for ``days``; ``extensions`` are ``(extension, critical)`` pairs."""
    now = dt.datetime.now(dt.UTC)
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
    )
    for extension, critical in extensions:
        builder = builder.add_extension(extension, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def make_ca(
    common_name: str = "Arete broker CA", days: int = CA_DAYS
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = _new_key()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    cert = _issue(
        subject=name,
        public_key=key.public_key(),
        issuer=name,
        issuer_key=key,
        days=days,
        extensions=[
            (x509.BasicConstraints(ca=True, path_length=0), True),
            (_key_usage(ca=True), True),
        ],
    )
    return key, cert


def make_server_cert(
    ca_key: ec.EllipticCurvePrivateKey,
    ca_cert: x509.Certificate,
    names: Iterable[str],
    days: int = SERVER_DAYS,
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    alt_names = subject_alternative_names(names)
    if not alt_names:
        raise TlsError("a server certificate needs at least one name")
    key = _new_key()
    common_name = str(alt_names[0].value)
    cert = _issue(
        subject=x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
        public_key=key.public_key(),
        issuer=ca_cert.subject,
        issuer_key=ca_key,
        days=days,
        extensions=[
            (x509.BasicConstraints(ca=False, path_length=None), True),
            (_key_usage(ca=False), True),
            (x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), False),
            (x509.SubjectAlternativeName(alt_names), False),
            (x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False),
        ],
    )
    return key, cert


def write_ca(key_path: Path, cert_path: Path, *, common_name: str = "Arete broker CA") -> None:
    """Write a fresh CA (key 0600, certificate 0644) to the given paths."""
    key, cert = make_ca(common_name)
    write_private(key_path, _key_pem(key))
    write_private(cert_path, _cert_pem(cert), PUBLIC_FILE)


def _load_ca(layout: Layout) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    try:
        key = serialization.load_pem_private_key(layout.ca_key.read_bytes(), password=None)
        cert = x509.load_pem_x509_certificate(layout.ca_cert.read_bytes())
    except (OSError, ValueError, TypeError) as exc:
        raise TlsError(
            f"cannot load the CA in {layout.tls_dir}: {exc}; "
            "re-create it with `arete broker tls-init --force --new-ca`"
        ) from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise TlsError(f"{layout.ca_key} is not an EC key made by `arete broker tls-init`")
    return key, cert


def ca_pem(layout: Layout) -> str:
    """The broker's CA certificate (PEM), or :class:`TlsError` saying how to make one."""
    try:
        return layout.ca_cert.read_text(encoding="ascii")
    except FileNotFoundError:
        raise TlsError(
            f"the broker has no CA yet ({layout.ca_cert} is missing); create it with "
            f"`arete broker tls-init --data-dir {layout.data_dir}`"
        ) from None
    except (OSError, UnicodeError) as exc:
        raise TlsError(f"cannot read {layout.ca_cert}: {exc}") from None


def copy_agent_ca(layout: Layout, pem: str | None = None) -> Path:
    """Copy the CA certificate beside the agent configs, which name it relatively.

    The certificate is public, so the copy is 0644 (inside the 0700 agents dir): it can
    be handed out on its own. Returns the copy's path.
    """
    write_private(layout.agent_ca_cert, ca_pem(layout) if pem is None else pem, PUBLIC_FILE)
    return layout.agent_ca_cert


def tls_ready(layout: Layout) -> bool:
    return all(
        path.is_file()
        for path in (layout.ca_cert, layout.ca_key, layout.server_cert, layout.server_key)
    )


def init_tls(
    layout: Layout, extra_names: Iterable[str] = (), *, force: bool = False, new_ca: bool = False
) -> TlsResult:
    """Create the CA and the server certificate unless they exist.

    ``force`` re-issues the server certificate (keeping the CA, so agents keep trusting
    the broker); ``new_ca`` also replaces the CA (every agent then needs the new
    ``ca.crt``; an existing ``DATA/agents/ca.crt`` copy is refreshed).
    """
    extra = [validate_host(name, "certificate name") for name in extra_names]
    ca_exists = layout.ca_cert.is_file() and layout.ca_key.is_file()
    ca_created = False
    if new_ca or not ca_exists:
        write_ca(layout.ca_key, layout.ca_cert)
        ca_created = True
        if layout.agent_ca_cert.exists():  # the copy TLS agent configs name: keep it current
            copy_agent_ca(layout)
    server_exists = layout.server_cert.is_file() and layout.server_key.is_file()
    if server_exists and not (force or ca_created):
        return TlsResult(ca_created=False, server_created=False, names=_cert_names(layout))
    ca_key, ca_cert = _load_ca(layout)
    server_key, server_cert = make_server_cert(ca_key, ca_cert, [*default_names(), *extra])
    write_private(layout.server_key, _key_pem(server_key))
    write_private(layout.server_cert, _cert_pem(server_cert), PUBLIC_FILE)
    return TlsResult(ca_created=ca_created, server_created=True, names=_cert_names(layout))


def _cert_names(layout: Layout) -> tuple[str, ...]:
    try:
        cert = x509.load_pem_x509_certificate(layout.server_cert.read_bytes())
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except (OSError, ValueError, x509.ExtensionNotFound) as exc:
        raise TlsError(f"cannot read {layout.server_cert}: {exc}") from None
    return tuple(str(name.value) for name in san)
