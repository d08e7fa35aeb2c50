"""The network's own certificate authority: the root of trust of every leaf link between nodes.

The province makes the CA once (``init_ca``: an EC P-256 key and a self-signed certificate) and
issues each node's certificate (``issue_node_cert``). A node certificate names the node by its
20-digit GB/T 28181 code, as the subject's CN and as the URI SAN ``urn:vmesh:node:<code>``,
carries the addresses and host names the node is dialled at (IP/DNS SANs, checked by the child's
TLS against the URL it dials), and is usable as a server and a client certificate (EKU serverAuth
and clientAuth): the same pair serves a hub's leaf listener and a child's leaf remote.
nats-server 2.9 (Go TLS) and Python's ssl both accept EC P-256.

Files: ``<ca_dir>/ca.pem`` (public) and ``<ca_dir>/ca.key`` (0600). An issued node gets a folder
with ``ca.pem``, ``node.pem`` and ``node.key`` (0600), ready to be copied to the node's
``<data_dir>/federation/tls/``. Files are written to temporary names and renamed into place; an
existing CA is never overwritten (it would cut every node off).

Public: ``init_ca``, ``issue_node_cert``, ``check_node_cert``, ``CaFiles``, ``NodeCertFiles``,
``NodeCertInfo``, ``node_uri``.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import os
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from vmesh.errors import Conflict, InvalidInput, NotFound
from vmesh.identity.codes import parse_code
from vmesh.node.files import write_atomic

log = logging.getLogger(__name__)

CA_CERT = "ca.pem"
CA_KEY = "ca.key"
NODE_CERT = "node.pem"
NODE_KEY = "node.key"
URI_PREFIX = "urn:vmesh:node:"


def node_uri(code: str) -> str:
    return URI_PREFIX + code


@dataclass(frozen=True)
class CaFiles:
    cert: Path
    key: Path


@dataclass(frozen=True)
class NodeCertFiles:
    ca: Path
    cert: Path
    key: Path


@dataclass(frozen=True)
class NodeCertInfo:
    code: str
    not_after: dt.datetime
    ips: tuple[str, ...]
    dns: tuple[str, ...]


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def _spki(public_key: Any) -> bytes:
    der: bytes = public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return der


def _check_days(days: int, field: str = "days") -> None:
    if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 36500:
        raise InvalidInput.one(field, "must be a whole number of days, 1 to 36500", days)


def init_ca(ca_dir: Path, *, name: str, days: int = 3650) -> CaFiles:
    """Make the network CA in ``ca_dir``; ``Conflict`` if one is already there."""
    if not name.strip():
        raise InvalidInput.one("name", "must not be empty", name)
    _check_days(days)
    files = CaFiles(ca_dir / CA_CERT, ca_dir / CA_KEY)
    for p in (files.cert, files.key):
        if p.exists():
            raise Conflict(
                f"a CA already exists at {p}; it is never overwritten (every node trusts it). "
                "Use another folder for a new network",
                errors=[],
            )
    ca_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(ca_dir, 0o700)
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, name),
            x509.NameAttribute(NameOID.COMMON_NAME, f"{name} vmesh network CA"),
        ]
    )
    now = _now()
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    # Key first: a certificate without its key would look like a usable CA.
    write_atomic(files.key, _key_pem(key), 0o600)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info("ca: created network CA %r in %s", name, ca_dir)
    return files


def _load_ca(ca_dir: Path) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    cert_path, key_path = ca_dir / CA_CERT, ca_dir / CA_KEY
    for p in (cert_path, key_path):
        if not p.exists():
            raise NotFound(
                f"ca_dir: no network CA at {ca_dir} ({p.name} missing); "
                "run `vmesh ca init` at the province first",
                errors=[],
            )
    try:
        cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
        key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    except ValueError as e:
        raise InvalidInput.one("ca_dir", f"the CA files in {ca_dir} cannot be read: {e}") from None
    if not isinstance(key, ec.EllipticCurvePrivateKey):
        raise InvalidInput.one("ca_dir", f"{key_path} is not an EC key")
    if _spki(cert.public_key()) != _spki(key.public_key()):
        raise InvalidInput.one("ca_dir", f"{key_path} is not the key of {cert_path}")
    if cert.not_valid_after_utc <= _now():
        raise InvalidInput.one(
            "ca_dir", f"the CA expired on {cert.not_valid_after_utc:%Y-%m-%d}", str(ca_dir)
        )
    return cert, key


def parse_sans(
    values: Sequence[str],
) -> tuple[list[ipaddress.IPv4Address | ipaddress.IPv6Address], list[str]]:
    """``IP:10.0.0.1``, ``DNS:hub.example``, or a bare address or host name."""
    ips: list[ipaddress.IPv4Address | ipaddress.IPv6Address] = []
    dns: list[str] = []
    for raw in values:
        v = raw.strip()
        kind, _, rest = v.partition(":")
        if kind.upper() in ("IP", "DNS") and rest:
            v = rest.strip()
            forced = kind.upper()
        else:
            forced = ""
        try:
            ip = ipaddress.ip_address(v)
        except ValueError:
            ip = None
        if forced == "IP" and ip is None:
            raise InvalidInput.one("san", "is not an IP address", raw)
        if ip is not None and forced != "DNS":
            ips.append(ip)
            continue
        labels = v.rstrip(".").split(".")
        if not v or not all(
            lb and len(lb) <= 63 and all(c.isascii() and (c.isalnum() or c in "-*") for c in lb)
            for lb in labels
        ):
            raise InvalidInput.one("san", "is neither an IP address nor a DNS name", raw)
        dns.append(v.rstrip(".").lower())
    return ips, dns


def issue_node_cert(
    ca_dir: Path,
    code: str,
    *,
    out_dir: Path,
    name: str = "",
    sans: Sequence[str] = (),
    days: int = 825,
) -> NodeCertFiles:
    """Issue the certificate of node ``code`` into ``out_dir`` (ca.pem, node.pem, node.key)."""
    parsed = parse_code(code, "node")
    if parsed.type != "200":
        raise InvalidInput.one(
            "node", f"a node's code must have type 200 (platform), has {parsed.type}", code
        )
    _check_days(days)
    ips, dns = parse_sans(sans)
    ca_cert, ca_key = _load_ca(ca_dir)
    now = _now()
    not_after = min(now + dt.timedelta(days=days), ca_cert.not_valid_after_utc)
    key = ec.generate_private_key(ec.SECP256R1())
    attrs = [x509.NameAttribute(NameOID.COMMON_NAME, parsed.text)]
    if name.strip():
        attrs.insert(0, x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, name.strip()))
    general: list[x509.GeneralName] = [x509.UniformResourceIdentifier(node_uri(parsed.text))]
    general += [x509.IPAddress(ip) for ip in ips]
    general += [x509.DNSName(d) for d in dns]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name(attrs))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=True,
                key_cert_sign=False,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(
            x509.ExtendedKeyUsage(
                [ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]
            ),
            critical=False,
        )
        .add_extension(x509.SubjectAlternativeName(general), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    out_dir.mkdir(parents=True, exist_ok=True)
    os.chmod(out_dir, 0o700)
    files = NodeCertFiles(out_dir / CA_CERT, out_dir / NODE_CERT, out_dir / NODE_KEY)
    write_atomic(files.key, _key_pem(key), 0o600)
    write_atomic(files.cert, cert.public_bytes(serialization.Encoding.PEM), 0o644)
    write_atomic(files.ca, ca_cert.public_bytes(serialization.Encoding.PEM), 0o644)
    log.info(
        "ca: issued node=%s until=%s ips=%s dns=%s into %s",
        parsed.text,
        f"{not_after:%Y-%m-%d}",
        [str(i) for i in ips],
        dns,
        out_dir,
    )
    return files


def check_node_cert(ca_file: Path, cert_file: Path, key_file: Path, code: str) -> NodeCertInfo:
    """Check before nats-server starts that the node's TLS files fit together and name ``code``.

    Raises ``InvalidInput`` naming the file and the reason: missing, unreadable, not signed by
    the CA, expired, issued for another node, or the key not matching the certificate.
    """
    blobs: dict[str, bytes] = {}
    for field, p in (("ca_file", ca_file), ("cert_file", cert_file), ("key_file", key_file)):
        try:
            blobs[field] = p.read_bytes()
        except OSError as e:
            raise InvalidInput.one(
                f"federation.{field}",
                f"cannot read {p}: {e.strerror}; issue the node's certificate with "
                "`vmesh ca issue` at the province and copy it here",
                str(p),
            ) from None
    try:
        ca = x509.load_pem_x509_certificate(blobs["ca_file"])
    except ValueError as e:
        raise InvalidInput.one("federation.ca_file", f"not a PEM certificate: {e}") from None
    try:
        cert = x509.load_pem_x509_certificate(blobs["cert_file"])
    except ValueError as e:
        raise InvalidInput.one("federation.cert_file", f"not a PEM certificate: {e}") from None
    try:
        key = serialization.load_pem_private_key(blobs["key_file"], password=None)
    except (ValueError, TypeError) as e:
        raise InvalidInput.one("federation.key_file", f"not a usable PEM key: {e}") from None
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError, InvalidSignature):
        raise InvalidInput.one(
            "federation.cert_file",
            f"was not issued by the network CA in {ca_file} "
            f"(issuer {cert.issuer.rfc4514_string()})",
            str(cert_file),
        ) from None
    now = _now()
    if cert.not_valid_after_utc <= now:
        raise InvalidInput.one(
            "federation.cert_file",
            f"expired on {cert.not_valid_after_utc:%Y-%m-%d}; issue a new one",
            str(cert_file),
        )
    cns = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value) if cns else ""
    if cn != code:
        raise InvalidInput.one(
            "federation.cert_file",
            f"was issued for node {cn!r}, not this node {code}",
            str(cert_file),
        )
    if _spki(key.public_key()) != _spki(cert.public_key()):
        raise InvalidInput.one(
            "federation.key_file", f"is not the key of {cert_file}", str(key_file)
        )
    try:
        san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        ips = tuple(str(i) for i in san.get_values_for_type(x509.IPAddress))
        dns = tuple(san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        ips, dns = (), ()
    return NodeCertInfo(code=cn, not_after=cert.not_valid_after_utc, ips=ips, dns=dns)
