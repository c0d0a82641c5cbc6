"""A private certificate authority and the certificates a secured Kafka needs, made with `openssl`.

Every key is written with mode 600 in a directory only its owner can enter. A broker's certificate names
`localhost` and 127.0.0.1 (and any other names given) so clients can verify the host they dialled; the same
certificate serves as the broker's client certificate on its mutual-TLS internal and controller listeners.
"""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from scalebox_stream.local.home import LocalServiceError, MissingPrerequisite

DAYS = 825


@dataclass(frozen=True)
class Certificate:
    """A PEM certificate, its unencrypted PKCS#8 key, and both in one file (a Java PEM key store)."""

    cert: Path
    key: Path
    keystore: Path


def private_dir(path: Path) -> Path:
    """`path`, created if missing, with mode 700."""
    path.mkdir(parents=True, exist_ok=True)
    path.chmod(0o700)
    return path


def write_private(path: Path, text: str) -> Path:
    """Write `text` to `path` with mode 600 (created that way, never briefly readable by others)."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(text)
    return path


def _openssl(*args: str, cwd: Path) -> None:
    if shutil.which("openssl") is None:
        raise MissingPrerequisite("openssl not found on PATH (it makes the TLS certificates).\n"
                                  "Install with: apt-get install openssl")
    proc = subprocess.run(["openssl", *args], cwd=cwd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise LocalServiceError(f"openssl {args[0]} failed: {proc.stderr.strip()[-2000:]}")


def _key(path: Path) -> None:
    path.unlink(missing_ok=True)
    old = os.umask(0o077)
    try:
        _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path),
                 cwd=path.parent)
    finally:
        os.umask(old)
    path.chmod(0o600)


def make_ca(directory: Path, name: str = "Scalebox local CA") -> Certificate:
    """A self-signed CA in `directory` (`ca.pem`, `ca.key`); an existing one is kept."""
    directory = private_dir(directory)
    cert, key = directory / "ca.pem", directory / "ca.key"
    if not (cert.is_file() and key.is_file()):
        _key(key)
        _openssl("req", "-x509", "-new", "-key", str(key), "-sha256", "-days", str(DAYS), "-subj", f"/CN={name}",
                 "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
                 "-out", str(cert), cwd=directory)
    return Certificate(cert, key, key)


def make_certificate(directory: Path, ca: Certificate, common_name: str, hosts: tuple[str, ...] = ()) -> Certificate:
    """A certificate for `common_name` signed by `ca`, valid for `hosts` (names or IP addresses) besides
    localhost and 127.0.0.1; files `<cn>.pem`, `<cn>.key` and `<cn>.keystore.pem` in `directory`."""
    directory = private_dir(directory)
    stem = common_name.replace(" ", "_")
    cert, key, csr = directory / f"{stem}.pem", directory / f"{stem}.key", directory / f"{stem}.csr"
    _key(key)
    _openssl("req", "-new", "-key", str(key), "-subj", f"/CN={common_name}", "-out", str(csr), cwd=directory)
    names = ["DNS:localhost", "IP:127.0.0.1", *(f"IP:{h}" if _is_ip(h) else f"DNS:{h}" for h in hosts)]
    ext = directory / f"{stem}.ext"
    ext.write_text(f"subjectAltName={','.join(dict.fromkeys(names))}\nbasicConstraints=CA:FALSE\n")
    _openssl("x509", "-req", "-in", str(csr), "-CA", str(ca.cert), "-CAkey", str(ca.key), "-CAcreateserial",
             "-days", str(DAYS), "-sha256", "-extfile", str(ext), "-out", str(cert), cwd=directory)
    csr.unlink(missing_ok=True)
    ext.unlink(missing_ok=True)
    keystore = write_private(directory / f"{stem}.keystore.pem", key.read_text() + cert.read_text())
    return Certificate(cert, key, keystore)


def _is_ip(host: str) -> bool:
    import ipaddress

    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
