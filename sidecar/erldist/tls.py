"""Distribution over TLS, client side: what ``inet_tls_dist`` does when it connects.

A node started with ``-proto_dist inet_tls`` registers its port in EPMD as
any node does (EPMD stays plain TCP); the distribution port speaks TLS, and
the usual handshake and framing run inside it.  Erlang's own client
(``inet_tls_dist:do_setup_connect``) calls ``ssl:connect`` with
``{server_name_indication, Host}``, ``Host`` being the host part of the node
name, so with ``verify_peer``:

* the SNI is that host (sent even when it is an IP address), and
* the certificate must name it as ``public_key:pkix_verify_hostname`` does
  with ``[{dns_id, Host}]``: a ``dNSName`` in subjectAltName equal to it
  (ASCII case-insensitive, no wildcard), or, only when the certificate has
  no subjectAltName, a subject common name equal to it (there a ``*`` may
  stand for the leftmost label) — and never an IP address through the
  common name.  An ``iPAddress`` entry does not match (the SNI is explicit).

:func:`check_server_name` is that check; :class:`TlsConfig` is a target's
``tls:`` settings; :func:`classify` turns what ``ssl`` raised into the typed
error an operator can act on.  Nothing here touches the sans-I/O core:
:mod:`.connection` swaps the TLS stream in under it.
"""

from __future__ import annotations

import contextlib
import ipaddress
import ssl
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Literal

from .errors import (
    DistError,
    RemoteProtocolError,
    TlsCertExpired,
    TlsClientCertRefused,
    TlsConfigError,
    TlsError,
    TlsNameMismatch,
    TlsNotSpoken,
    TlsUntrusted,
)

Verify = Literal["verify_peer", "verify_none"]
VERIFY_MODES: tuple[Verify, ...] = ("verify_peer", "verify_none")
#: ``server_name_indication: disable``: no SNI and no name check (as in ``ssl``)
SNI_DISABLE = "disable"

# OpenSSL verify codes (X509_V_ERR_*) of a server certificate we refuse.
_EXPIRED = 10
_NOT_YET_VALID = 9
_UNTRUSTED = {2, 18, 19, 20, 21, 27, 28}
# Alerts the node sends when it refuses our client certificate.
_CLIENT_CERT_ALERTS = {
    "TLSV1_ALERT_UNKNOWN_CA",
    "SSLV3_ALERT_BAD_CERTIFICATE",
    "TLSV13_ALERT_CERTIFICATE_REQUIRED",
    "SSLV3_ALERT_CERTIFICATE_UNKNOWN",
    "SSLV3_ALERT_UNSUPPORTED_CERTIFICATE",
    "SSLV3_ALERT_CERTIFICATE_REVOKED",
    "TLSV1_ALERT_ACCESS_DENIED",
    "TLSV1_ALERT_DECRYPT_ERROR",
}
# What OpenSSL says when the other side does not speak TLS at all.
_NOT_TLS = {
    "WRONG_VERSION_NUMBER",
    "PACKET_LENGTH_TOO_LONG",
    "UNKNOWN_PROTOCOL",
    "RECORD_LAYER_FAILURE",
    "HTTP_REQUEST",
    "UNEXPECTED_EOF_WHILE_READING",
}


class HandshakeFraming:
    """The distribution handshake over TLS has 4-byte length prefixes where
    over TCP it has 2 (``inet_tls_dist`` sets ``{packet, 4}`` on the socket
    from the start).  The handshake core speaks the 2-byte form; this turns
    one into the other at the transport, a message at a time, so the core
    does not change.  Sans I/O."""

    def __init__(self) -> None:
        self._buf = bytearray()

    @staticmethod
    def outgoing(data: bytes) -> bytes:
        """2-byte framed messages (whole, from the core) -> 4-byte framed."""
        out = bytearray()
        view = memoryview(data)
        while view:
            n = int.from_bytes(view[:2], "big")
            out += n.to_bytes(4, "big")
            out += view[2 : 2 + n]
            view = view[2 + n :]
        return bytes(out)

    def feed(self, data: bytes) -> None:
        self._buf += data

    def next_message(self) -> bytes | None:
        """The next whole received message, 2-byte framed; None: need more."""
        if len(self._buf) < 4:
            return None
        n = int.from_bytes(self._buf[:4], "big")
        if n > 0xFFFF:
            raise RemoteProtocolError(f"handshake message of {n} bytes over TLS")
        if len(self._buf) < 4 + n:
            return None
        message = n.to_bytes(2, "big") + bytes(self._buf[4 : 4 + n])
        del self._buf[: 4 + n]
        return message

    def rest(self) -> bytes:
        """What came after the messages taken: the start of the framed stream."""
        return bytes(self._buf)


@dataclass(frozen=True, slots=True)
class TlsConfig:
    """A target's ``tls:``: the same options as an ``ssl_dist_optfile``'s client part."""

    cacertfile: str | None = None
    certfile: str | None = None
    keyfile: str | None = None
    verify: Verify = "verify_peer"
    #: None: the host part of the node name (as Erlang); ``disable``: none
    server_name_indication: str | None = None

    def __post_init__(self) -> None:
        if self.verify not in VERIFY_MODES:
            raise ValueError(f"verify must be verify_peer or verify_none, got {self.verify!r}")
        if self.verify == "verify_peer" and not self.cacertfile:
            raise ValueError("verify_peer needs cacertfile (the CA that signs the nodes)")
        if self.keyfile and not self.certfile:
            raise ValueError("keyfile without certfile")
        if self.server_name_indication == "":
            raise ValueError("server_name_indication is empty (write a host name or 'disable')")

    def server_name(self, host: str) -> str | None:
        """The SNI and the name the certificate must carry; None: neither."""
        if self.server_name_indication == SNI_DISABLE:
            return None
        return self.server_name_indication or host

    @property
    def checks_name(self) -> bool:
        return self.verify == "verify_peer" and self.server_name_indication != SNI_DISABLE

    def context(self) -> ssl.SSLContext:
        """A client context from the files as they are now (certificates are
        rotated in place); :class:`TlsConfigError` if one cannot be used."""
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        # Names are checked as Erlang checks them (check_server_name), not
        # as OpenSSL would (it matches an IP host against iPAddress only).
        ctx.check_hostname = False
        if self.verify == "verify_peer":
            ctx.verify_mode = ssl.CERT_REQUIRED
            _load(ctx.load_verify_locations, "cacertfile", self.cacertfile)
        else:
            ctx.verify_mode = ssl.CERT_NONE
        if self.certfile and self.keyfile:
            _load(ctx.load_cert_chain, "certfile/keyfile", self.certfile, self.keyfile)
        elif self.certfile:
            try:
                _load(ctx.load_cert_chain, "certfile", self.certfile)
            except TlsConfigError as exc:
                raise TlsConfigError(f"{exc} (no keyfile: is the key in the certfile?)") from None
        return ctx

    def describe(self) -> str:
        parts: list[str] = [self.verify]
        if self.cacertfile:
            parts.append(f"CA {self.cacertfile}")
        parts.append(f"client cert {self.certfile}" if self.certfile else "no client cert")
        sni = self.server_name_indication
        parts.append(
            "no SNI" if sni == SNI_DISABLE else f"SNI {sni}" if sni else "SNI the node's host"
        )
        return ", ".join(parts)


def _load(fn: Any, what: str, *args: str | None) -> None:
    try:
        fn(*args)
    except FileNotFoundError as exc:
        raise TlsConfigError(f"tls {what}: no such file {exc.filename or args[0]}") from None
    except PermissionError as exc:
        raise TlsConfigError(f"tls {what}: cannot read {exc.filename or args[0]}") from None
    except ssl.SSLError as exc:
        raise TlsConfigError(
            f"tls {what} ({', '.join(a for a in args if a)}) cannot be used: "
            f"{exc.reason or exc.strerror or exc}"
        ) from None
    except OSError as exc:
        raise TlsConfigError(f"tls {what}: {exc.strerror or exc}") from None


def check_server_name(cert: dict[str, Any], host: str) -> bool:
    """Does ``cert`` (``SSLSocket.getpeercert()``) name ``host`` as
    ``public_key:pkix_verify_hostname(Cert, [{dns_id, Host}])`` decides?"""
    want = _lower(host.rstrip("."))
    if not want:
        return False
    sans = cert.get("subjectAltName")
    if sans:
        return any(kind == "DNS" and _lower(value) == want for kind, value in sans)
    if _is_ip(want):
        return False  # the common-name fallback drops IP references
    return any(_match_cn(want, _lower(cn)) for cn in _common_names(cert))


def names_in(cert: dict[str, Any]) -> list[str]:
    """The names a certificate carries, for an error message."""
    sans = cert.get("subjectAltName")
    if sans:
        return [f"{'IP' if kind == 'IP Address' else kind}:{value}" for kind, value in sans]
    return [f"CN={cn}" for cn in _common_names(cert)]


def _common_names(cert: dict[str, Any]) -> Iterable[str]:
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            if key == "commonName":
                yield str(value)


def _lower(text: str) -> str:
    return "".join(chr(ord(c) + 32) if "A" <= c <= "Z" else c for c in text)


def _is_ip(text: str) -> bool:
    try:
        ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        return False
    return True


def _match_cn(host: str, name: str) -> bool:
    if "*" not in name:
        return host == name
    first, _, rest = host.partition(".")
    pattern, _, name_rest = name.partition(".")
    if rest != name_rest or "*" in name_rest:
        return False
    prefix, _, suffix = pattern.partition("*")
    if "*" in suffix:
        return False
    return (
        len(first) >= len(prefix) + len(suffix)
        and first.startswith(prefix)
        and first.endswith(suffix)
    )


def classify(exc: BaseException, peer: str, tls: TlsConfig) -> DistError:
    """What went wrong in the TLS handshake with ``peer``, as one line."""
    if isinstance(exc, DistError):
        return exc
    if isinstance(exc, ssl.SSLCertVerificationError):
        code, why = exc.verify_code, exc.verify_message
        if code == _EXPIRED:
            return TlsCertExpired(f"the TLS certificate of {peer} has expired ({why})")
        if code == _NOT_YET_VALID:
            return TlsUntrusted(f"the TLS certificate of {peer} is not valid yet ({why})")
        if code in _UNTRUSTED:
            return TlsUntrusted(
                f"the TLS certificate of {peer} is not signed by a CA in {tls.cacertfile} ({why})"
            )
        return TlsUntrusted(f"the TLS certificate of {peer} was refused: {why}")
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason == "SSLV3_ALERT_CERTIFICATE_EXPIRED":
            return TlsCertExpired(
                f"{peer} refused our TLS client certificate {tls.certfile}: it has expired"
            )
        if reason in _CLIENT_CERT_ALERTS or (
            reason == "SSLV3_ALERT_HANDSHAKE_FAILURE" and not tls.certfile
        ):
            if not tls.certfile:
                return TlsClientCertRefused(
                    f"{peer} requires a TLS client certificate and we have none "
                    "(set tls.certfile and tls.keyfile)"
                )
            return TlsClientCertRefused(
                f"{peer} refused our TLS client certificate {tls.certfile} "
                f"({_alert(reason)}): is it signed by a CA the node trusts?"
            )
        if reason in _NOT_TLS or isinstance(exc, ssl.SSLEOFError):
            return _plain_node(peer)
        return TlsError(f"TLS handshake with {peer} failed: {_alert(reason) or exc}")
    if isinstance(exc, ConnectionError | EOFError):
        # Closed or reset without an alert: the caller asks the port whether
        # it speaks TLS at all (a TLS node may break off after our last flight).
        return _plain_node(peer)
    return TlsError(f"TLS handshake with {peer} failed: {exc}")


def client_hello() -> bytes:
    """A TLS ClientHello, to ask a port whether it speaks TLS: a TLS node
    answers it at once, a plain node waits in silence for a name message."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    hello = ctx.wrap_bio(incoming, outgoing)
    with contextlib.suppress(ssl.SSLWantReadError):
        hello.do_handshake()
    return outgoing.read()


def refused_after_handshake(peer: str, tls: TlsConfig) -> TlsClientCertRefused:
    """A TLS node broke the handshake off after our last flight (in TLS 1.3
    the client certificate travels there, and its refusal may be lost)."""
    if not tls.certfile:
        return TlsClientCertRefused(
            f"{peer} broke off the TLS handshake: it requires a TLS client certificate "
            "and we have none (set tls.certfile and tls.keyfile)"
        )
    return TlsClientCertRefused(
        f"{peer} broke off the TLS handshake after we sent our client certificate "
        f"{tls.certfile}: is it signed by a CA the node trusts?"
    )


def _plain_node(peer: str) -> TlsNotSpoken:
    return TlsNotSpoken(
        f"{peer} did not answer the TLS handshake: it runs plain TCP distribution, "
        "not -proto_dist inet_tls (remove tls: from its target)"
    )


def _alert(reason: str) -> str:
    for prefix in ("SSLV3_ALERT_", "TLSV1_ALERT_", "TLSV13_ALERT_"):
        if reason.startswith(prefix):
            return "alert " + reason[len(prefix) :].lower()
    return reason.lower()


def name_mismatch(peer: str, host: str, cert: dict[str, Any]) -> TlsNameMismatch:
    names = ", ".join(names_in(cert)) or "no names"
    return TlsNameMismatch(
        f"the TLS certificate of {peer} does not name {host} (it names {names}); "
        "Erlang checks the node name's host as a DNS name"
    )


__all__ = [
    "SNI_DISABLE",
    "VERIFY_MODES",
    "HandshakeFraming",
    "TlsConfig",
    "check_server_name",
    "classify",
    "client_hello",
    "name_mismatch",
    "names_in",
    "refused_after_handshake",
]
