"""A throwaway certificate authority and one server certificate for loopback TLS.

Made with the `cryptography` package when it is installed, else with the `openssl` CLI. The
server certificate names `localhost` and `127.0.0.1`, so clients keep hostname verification on
(librdkafka's `ssl.endpoint.identification.algorithm=https` default).
"""

from __future__ import annotations

import datetime
import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from freshlake.errors import FreshlakeConfigError

VALID_DAYS = 30


@dataclass(frozen=True, kw_only=True)
class Pki:
    ca_cert: Path
    ca_key: Path
    server_cert: Path
    server_key: Path


def make_pki(*, directory: Path, hosts: tuple[str, ...] = ("localhost", "127.0.0.1")) -> Pki:
    """Write ca.pem/ca.key and server.pem/server.key under `directory` (reused if present)."""
    directory.mkdir(parents=True, exist_ok=True)
    pki = Pki(
        ca_cert=directory / "ca.pem",
        ca_key=directory / "ca.key",
        server_cert=directory / "server.pem",
        server_key=directory / "server.key",
    )
    if all(p.exists() for p in (pki.ca_cert, pki.ca_key, pki.server_cert, pki.server_key)):
        return pki
    try:
        import cryptography  # noqa: F401
    except ImportError:
        _with_openssl(pki, hosts)
    else:
        _with_cryptography(pki, hosts)
    for key in (pki.ca_key, pki.server_key):
        key.chmod(0o600)
    return pki


def _with_cryptography(pki: Pki, hosts: tuple[str, ...]) -> None:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    now = datetime.datetime.now(datetime.UTC)
    start, end = now - datetime.timedelta(minutes=5), now + datetime.timedelta(days=VALID_DAYS)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "freshlake profile CA")])
    ca = (
        x509.CertificateBuilder()
        .subject_name(ca_name)
        .issuer_name(ca_name)
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=True,
                crl_sign=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    cert = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hosts[0])]))
        .issuer_name(ca_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(start)
        .not_valid_after(end)
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    pem, pkcs8 = serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8
    plain = serialization.NoEncryption()
    pki.ca_cert.write_bytes(ca.public_bytes(pem))
    pki.ca_key.write_bytes(ca_key.private_bytes(pem, pkcs8, plain))
    pki.server_cert.write_bytes(cert.public_bytes(pem))
    pki.server_key.write_bytes(key.private_bytes(pem, pkcs8, plain))


def _with_openssl(pki: Pki, hosts: tuple[str, ...]) -> None:
    openssl = shutil.which("openssl")
    if openssl is None:
        msg = "neither the `cryptography` package nor `openssl` is here: `pip install cryptography`"
        raise FreshlakeConfigError(msg)
    san = ",".join(f"IP:{h}" if h.replace(".", "").isdigit() or ":" in h else f"DNS:{h}" for h in hosts)
    days = str(VALID_DAYS)
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], check=True, capture_output=True)

    run(
        "req",
        "-x509",
        *ec,
        "-keyout",
        str(pki.ca_key),
        "-out",
        str(pki.ca_cert),
        "-days",
        days,
        "-subj",
        "/CN=freshlake profile CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE,pathlen:0",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign,digitalSignature",
    )
    csr = pki.server_cert.with_suffix(".csr")
    run("req", "-new", *ec, "-keyout", str(pki.server_key), "-out", str(csr), "-subj", f"/CN={hosts[0]}")
    ext = pki.server_cert.with_suffix(".ext")
    ext.write_text(f"subjectAltName={san}\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=serverAuth\n")
    run(
        "x509",
        "-req",
        "-in",
        str(csr),
        "-CA",
        str(pki.ca_cert),
        "-CAkey",
        str(pki.ca_key),
        "-CAcreateserial",
        "-out",
        str(pki.server_cert),
        "-days",
        days,
        "-extfile",
        str(ext),
    )
    csr.unlink()
    ext.unlink()
