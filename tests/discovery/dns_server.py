"""A local authoritative DNS server (dnslib) for discovery tests.

Answers A, AAAA and SRV from a table the test changes while it runs, on UDP
and TCP on the same 127.0.0.1 port.  UDP answers over 512 bytes come back
truncated (TC set), as from a real server, so clients must retry over TCP.
Modes: ``servfail`` answers SERVFAIL, ``silent`` answers nothing (timeouts).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from dnslib import AAAA, QTYPE, RCODE, RR, SRV, A, DNSError, DNSRecord
from dnslib.server import DNSHandler, DNSServer

LOOPBACK = "127.0.0.1"
UDP_LIMIT = 512


class _Quiet:
    """dnslib logs every packet to stdout by default."""

    def __getattr__(self, name: str) -> Any:
        return lambda *args, **kwargs: None


class _TruncatingHandler(DNSHandler):
    """Truncates like a real server: the question stays, the answers go, TC is set
    (dnslib's own truncation drops the question, which clients reject)."""

    def get_reply(self, data: bytes) -> bytes:
        request = DNSRecord.parse(data)
        reply = self.server.resolver.resolve(request, self)
        packed: bytes = reply.pack()
        if self.protocol == "udp" and len(packed) > UDP_LIMIT:
            truncated = request.reply()
            truncated.header.tc = 1
            packed = truncated.pack()
        return packed


@dataclass
class Zone:
    a: dict[str, list[str]] = field(default_factory=dict)
    aaaa: dict[str, list[str]] = field(default_factory=dict)
    srv: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    mode: str = "normal"  # normal | servfail | silent
    queries: list[tuple[str, str, str]] = field(default_factory=list)  # (name, type, protocol)


def _key(name: str) -> str:
    return name.lower().rstrip(".") + "."


class LocalDns:
    def __init__(self) -> None:
        self.zone = Zone()
        self.lock = threading.Lock()
        self._servers: list[DNSServer] = []
        self._threads: list[threading.Thread] = []

    # -- test controls

    def set_a(self, name: str, ips: Iterable[str]) -> None:
        with self.lock:
            self.zone.a[_key(name)] = list(ips)

    def set_aaaa(self, name: str, ips: Iterable[str]) -> None:
        with self.lock:
            self.zone.aaaa[_key(name)] = list(ips)

    def set_srv(self, name: str, targets: Iterable[tuple[str, int]]) -> None:
        with self.lock:
            self.zone.srv[_key(name)] = list(targets)

    def remove(self, name: str) -> None:
        with self.lock:
            for table in (self.zone.a, self.zone.aaaa, self.zone.srv):
                table.pop(_key(name), None)

    def set_mode(self, mode: str) -> None:
        with self.lock:
            self.zone.mode = mode

    def protocols_used(self, name: str) -> set[str]:
        with self.lock:
            return {proto for q, _t, proto in self.zone.queries if q == _key(name)}

    # -- dnslib resolver interface

    def resolve(self, request: DNSRecord, handler: DNSHandler) -> DNSRecord:
        qname = str(request.q.qname).lower()
        qtype = QTYPE[request.q.qtype]
        reply = request.reply()
        with self.lock:
            self.zone.queries.append((qname, qtype, handler.protocol))
            mode = self.zone.mode
            a = list(self.zone.a.get(qname, ()))
            aaaa = list(self.zone.aaaa.get(qname, ()))
            srv = list(self.zone.srv.get(qname, ()))
        if mode == "silent":
            raise DNSError("silent mode: no answer")  # dnslib drops the reply
        if mode == "servfail":
            reply.header.rcode = RCODE.SERVFAIL
            return reply
        if not (a or aaaa or srv):
            reply.header.rcode = RCODE.NXDOMAIN
            return reply
        if qtype == "A":
            for ip in a:
                reply.add_answer(RR(qname, QTYPE.A, rdata=A(ip), ttl=5))
        elif qtype == "AAAA":
            for ip in aaaa:
                reply.add_answer(RR(qname, QTYPE.AAAA, rdata=AAAA(ip), ttl=5))
        elif qtype == "SRV":
            for target, port in srv:
                reply.add_answer(
                    RR(
                        qname,
                        QTYPE.SRV,
                        rdata=SRV(priority=0, weight=10, port=port, target=target),
                        ttl=5,
                    )
                )
        return reply  # other types, or a name without that type: NOERROR, no data

    # -- lifecycle

    @property
    def port(self) -> int:
        return int(self._servers[0].server.server_address[1])

    @property
    def address(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    def start(self) -> LocalDns:
        for _attempt in range(20):
            udp = DNSServer(
                self, address=LOOPBACK, port=0, logger=_Quiet(), handler=_TruncatingHandler
            )
            port = udp.server.server_address[1]
            try:
                tcp = DNSServer(
                    self,
                    address=LOOPBACK,
                    port=port,
                    tcp=True,
                    logger=_Quiet(),
                    handler=_TruncatingHandler,
                )
            except OSError:
                udp.server.server_close()
                continue
            self._servers = [udp, tcp]
            for server in self._servers:
                # A short poll interval keeps teardown quick.
                thread = threading.Thread(
                    target=server.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
                )
                thread.start()
                self._threads.append(thread)
            return self
        raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")

    def stop(self) -> None:
        for server in self._servers:
            server.server.shutdown()
            server.server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._servers, self._threads = [], []

    def __enter__(self) -> LocalDns:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def udp_port_answers(port: int) -> bool:
    """Whether something answers DNS on 127.0.0.1:port over UDP (fixture check)."""
    query = DNSRecord.question("check.invalid").pack()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.settimeout(2)
        sock.sendto(query, (LOOPBACK, port))
        try:
            sock.recvfrom(4096)
        except TimeoutError:
            return False
    return True
