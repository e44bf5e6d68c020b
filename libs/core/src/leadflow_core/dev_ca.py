"""A development certificate authority: one CA and a certificate per component, for `make run`
and the tests. Production takes its certificates from cert-manager or the chart's Secret."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
from collections.abc import Iterable, Mapping
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from leadflow_core.tls import spiffe_id

# Names a development server may be reached by.
_LOCAL_NAMES = ("localhost",)
_LOCAL_IPS = ("127.0.0.1", "::1")


def _write(path: Path, data: bytes, private: bool = False) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600 if private else 0o644)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def create_ca(directory: Path, common_name: str = "Leadflow development CA") -> None:
    """Write ca.crt and ca.key into `directory` (replacing any there)."""
    directory.mkdir(parents=True, exist_ok=True)
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=3650))
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
        .sign(key, hashes.SHA256())
    )
    _write(directory / "ca.key", _key_pem(key), private=True)
    _write(directory / "ca.crt", cert.public_bytes(serialization.Encoding.PEM))


def issue(directory: Path, name: str, identities: Iterable[str], days: int = 365) -> None:
    """Write `<name>.crt`/`<name>.key` signed by the CA in `directory`, one URI SAN per identity."""
    ca_key = serialization.load_pem_private_key((directory / "ca.key").read_bytes(), password=None)
    ca_cert = x509.load_pem_x509_certificate((directory / "ca.crt").read_bytes())
    if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
        raise ValueError("the development CA key must be an EC key")
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    sans: list[x509.GeneralName] = [x509.UniformResourceIdentifier(spiffe_id(i)) for i in identities]
    sans += [x509.DNSName(n) for n in _LOCAL_NAMES]
    sans += [x509.IPAddress(ipaddress.ip_address(a)) for a in _LOCAL_IPS]
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.SubjectAlternativeName(sans), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
            critical=False,
        )
        .sign(ca_key, hashes.SHA256())
    )
    # Key first: a server reloading between the two writes keeps its old pair (fails to match).
    _write(directory / f"{name}.key", _key_pem(key), private=True)
    _write(directory / f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM))


def ensure(directory: Path, certificates: Mapping[str, Iterable[str]]) -> list[str]:
    """Create the CA and any missing certificate; return the names created."""
    created: list[str] = []
    new_ca = not (directory / "ca.crt").exists() or not (directory / "ca.key").exists()
    if new_ca:
        create_ca(directory)
        created.append("ca")
    for name, identities in certificates.items():
        # A new CA invalidates every certificate the old one signed.
        if new_ca or not (directory / f"{name}.crt").exists() or not (directory / f"{name}.key").exists():
            issue(directory, name, identities)
            created.append(name)
    return created
