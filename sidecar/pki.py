"""A throwaway PKI made with the ``openssl`` command: a CA and certificates it signs.

For ``beamside demo --tls`` and the tests of distribution over TLS; never for
production (keys are unencrypted, the CA lives next to what it signs).  Each
certificate is good for both sides of a connection (``serverAuth`` and
``clientAuth``), as one certificate per Erlang node is.
"""

from __future__ import annotations

import secrets
import shutil
import subprocess
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

_CURVE = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]


class PkiError(RuntimeError):
    """``openssl`` is missing or failed (the message has its output)."""


@dataclass(frozen=True, slots=True)
class Ca:
    certfile: Path
    keyfile: Path


@dataclass(frozen=True, slots=True)
class Cert:
    certfile: Path
    keyfile: Path


def _openssl(args: Sequence[str], cwd: Path) -> None:
    exe = shutil.which("openssl")
    if exe is None:
        raise PkiError("the openssl command is needed (apt-get install -y openssl)")
    done = subprocess.run(
        [exe, *args], cwd=cwd, capture_output=True, text=True, timeout=60, check=False
    )
    if done.returncode != 0:
        raise PkiError(f"openssl {args[0]} failed: {(done.stderr or done.stdout).strip()}")


def make_ca(directory: Path, name: str = "beamside throwaway CA", *, days: int = 2) -> Ca:
    """A self-signed CA in ``directory`` (``<slug>-ca.pem`` and its key)."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = _slug(name)
    ca = Ca(directory / f"{slug}.pem", directory / f"{slug}.key")
    _openssl(
        [
            "req",
            "-x509",
            *_CURVE,
            "-keyout",
            str(ca.keyfile),
            "-out",
            str(ca.certfile),
            "-days",
            str(days),
            "-subj",
            f"/CN={name}",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
        directory,
    )
    ca.keyfile.chmod(0o600)
    return ca


def make_cert(
    ca: Ca,
    directory: Path,
    name: str,
    *,
    common_name: str | None = None,
    dns_names: Sequence[str] = (),
    ip_addresses: Sequence[str] = (),
    days: int = 2,
) -> Cert:
    """A certificate signed by ``ca`` naming ``dns_names``/``ip_addresses`` in
    its subjectAltName (none: the common name only).  ``days`` may be
    negative: the certificate then expired that many days ago."""
    directory.mkdir(parents=True, exist_ok=True)
    slug = _slug(name)
    cert = Cert(directory / f"{slug}.pem", directory / f"{slug}.key")
    csr = directory / f"{slug}.csr"
    ext = directory / f"{slug}.ext"
    sans = [f"DNS:{d}" for d in dns_names] + [f"IP:{ip}" for ip in ip_addresses]
    lines = [
        "basicConstraints=CA:FALSE",
        "keyUsage=critical,digitalSignature,keyEncipherment",
        "extendedKeyUsage=serverAuth,clientAuth",
    ]
    if sans:
        lines.append("subjectAltName=" + ",".join(sans))
    ext.write_text("\n".join(lines) + "\n")
    _openssl(
        [
            "req",
            "-new",
            *_CURVE,
            "-keyout",
            str(cert.keyfile),
            "-out",
            str(csr),
            "-subj",
            f"/CN={common_name or name}",
        ],
        directory,
    )
    _openssl(
        [
            "x509",
            "-req",
            "-in",
            str(csr),
            "-CA",
            str(ca.certfile),
            "-CAkey",
            str(ca.keyfile),
            "-set_serial",
            str(secrets.randbits(63)),
            "-days",
            str(days),
            "-extfile",
            str(ext),
            "-out",
            str(cert.certfile),
        ],
        directory,
    )
    cert.keyfile.chmod(0o600)
    csr.unlink()
    ext.unlink()
    return cert


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in name).strip("-") or "cert"


def erl_string(text: str | Path) -> str:
    """``text`` as an Erlang string literal."""
    return '"' + str(text).replace("\\", "\\\\").replace('"', '\\"') + '"'


def ssl_dist_optfile(path: Path, cert: Cert, ca: Ca, *, verify_clients: bool = True) -> Path:
    """Write an ``ssl_dist_optfile`` for a node (``erl -proto_dist inet_tls
    -ssl_dist_optfile PATH``): its certificate on both sides, the CA it
    trusts, and (``verify_clients``) no client without a certificate from it."""
    files = (
        f"{{certfile, {erl_string(cert.certfile)}}}, {{keyfile, {erl_string(cert.keyfile)}}},\n"
        f"    {{cacertfile, {erl_string(ca.certfile)}}}, {{secure_renegotiate, true}}"
    )
    checks = "{verify, verify_peer}, {fail_if_no_peer_cert, true}"
    path.write_text(
        f"[{{server, [{files},\n    {checks if verify_clients else '{verify, verify_none}'}]}},\n"
        f" {{client, [{files},\n    {{verify, verify_peer}}]}}].\n"
    )
    return path
