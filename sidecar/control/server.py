"""The gRPC server: services of ``beamside.v1``, health, reflection, auth, audit.

:func:`create_server` builds a ``grpc.aio`` server bound to
``GrpcConfig.listen`` (not started); :func:`serve` runs one until an event is
set.  Handlers are registered from the services' descriptors, each method
wrapped by the dispatcher, which

* sets the caller (:mod:`sidecar.control.identity`) for the servicer,
* turns :class:`~sidecar.control.errors.RpcFailure` into the status it
  carries (its message redacted: :func:`sidecar.redact.redact_text`), and
  any other exception into ``INTERNAL`` (logged, never shown),
* audits every call of a mutating method, and every read that reveals
  secrets (:func:`~sidecar.control.auth.is_audited`): who, what, node,
  result, the request and a short response, both redacted
  (:func:`request_details`, :func:`response_summary`); to the
  ``sidecar.audit`` log, or to ``Deps.audit`` when given.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import weakref
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.descriptor import FileDescriptor, MethodDescriptor, ServiceDescriptor
from google.protobuf.json_format import MessageToDict
from google.protobuf.message import Message
from grpc import aio
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2

from sidecar.audit import AuditRecord, AuditSink, log_audit, redact_request
from sidecar.redact import PAIR_VALUE_FIELDS, is_secret_key, redact_named, redact_text

from .auth import Authenticator, AuthError, AuthInterceptor, is_audited
from .base import Deps
from .config import GrpcConfig, Identity, is_loopback, load_identities
from .errors import RpcFailure
from .gen.beamside.v1 import (
    alarms_pb2,
    code_pb2,
    config_pb2,
    eval_pb2,
    memory_pb2,
    metrics_pb2,
    nodes_pb2,
    ports_pb2,
    processes_pb2,
    tables_pb2,
    trace_pb2,
)
from .identity import CALLER
from .services.alarms import AlarmsService
from .services.code import CodeService
from .services.config import ConfigService
from .services.eval import EvalService
from .services.memory import MemoryService
from .services.metrics import MetricsService
from .services.nodes import NodesService
from .services.ports import PortsService
from .services.processes import ProcessesService
from .services.tables import TablesService
from .services.trace import TraceService

__all__ = ["Deps", "bound_port", "create_server", "serve", "set_serving"]

log = logging.getLogger(__name__)

MAX_MESSAGE_BYTES = 8 * 1024 * 1024

_DESCRIPTORS: tuple[tuple[Any, str], ...] = (
    (nodes_pb2, "Nodes"),
    (processes_pb2, "Processes"),
    (tables_pb2, "Tables"),
    (code_pb2, "Code"),
    (config_pb2, "Config"),
    (eval_pb2, "Eval"),
    (alarms_pb2, "Alarms"),
    (metrics_pb2, "Metrics"),
    (ports_pb2, "Ports"),
    (trace_pb2, "Trace"),
    (memory_pb2, "Memory"),
)
SERVICE_NAMES: tuple[str, ...] = tuple(f"beamside.v1.{name}" for _, name in _DESCRIPTORS)

_PORTS: weakref.WeakKeyDictionary[aio.Server, int] = weakref.WeakKeyDictionary()
_HEALTH: weakref.WeakKeyDictionary[aio.Server, Any] = weakref.WeakKeyDictionary()


class Auditor:
    """Makes the audit records of the dispatcher; ``sink`` gets them (default:
    :func:`sidecar.audit.log_audit`, the ``sidecar.audit`` log only)."""

    def __init__(self, sink: AuditSink | None) -> None:
        self._sink: AuditSink = sink or log_audit

    def record(
        self,
        method: str,
        who: Identity | None,
        node: str,
        result: str,
        ok: bool,
        details: Mapping[str, Any],
    ) -> None:
        record = AuditRecord(
            who=who.name if who is not None else "unauthenticated",
            role=str(who.role) if who is not None else "",
            action=method.removeprefix("/beamside.v1."),
            node=node,
            result=result,
            ok=ok,
            details=details,
        )
        try:
            self._sink(record)
        except Exception:  # an audit sink bug must not fail the call it records
            log.exception("audit sink failed")
            log_audit(record)

    def denied(self, method: str, who: Identity | None, exc: AuthError) -> None:
        self.record(method, who, "", f"{exc.code.name}: {exc.message}", False, {})


def request_details(request: Message) -> dict[str, Any]:
    """The request as audit details: hidden fields replaced, secrets
    redacted, long texts cut (:func:`sidecar.audit.redact_request`)."""
    return redact_request(MessageToDict(request, preserving_proto_field_name=True))


def response_summary(
    method: str, response: Message, request: Message | None = None
) -> dict[str, Any]:
    """What an audited call did, short and redacted.  No evaluation results,
    no table rows, no env values (they may hold secrets; a revealed value is
    exactly what must not reach a log): their count and keys instead.  When
    the request's ``key`` names a secret, the response's values of it
    (``value``, ``previous``, at any depth) are markers."""
    if method.endswith("/Evaluate"):
        return {"raised": bool(getattr(response, "exception", ""))}
    raw = MessageToDict(response, preserving_proto_field_name=True)
    if method.endswith("/ReadTable"):
        return {
            "rows": len(raw.get("rows", [])),
            "size": raw.get("size", "0"),
            "more": bool(raw.get("continuation")),
        }
    if method.endswith("/GetEnv"):
        entries = raw.get("entries", [])
        return {
            "app": raw.get("app", ""),
            "loaded": raw.get("loaded", False),
            "keys": [e.get("key", "") for e in entries[:50]],
            "entries": len(entries),
        }
    out: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(value, list) and len(value) > 20:
            out[key] = [*value[:20], f"... {len(value) - 20} more"]
        elif isinstance(value, str) and len(value) > 300:
            out[key] = value[:300] + "..."
        else:
            out[key] = value
    asked = getattr(request, "key", "") if request is not None else ""
    if isinstance(asked, str) and is_secret_key(asked):
        out = _hide_values(out, asked)
    return redact_request(out)


def _hide_values(value: Any, key: str) -> Any:
    """``value`` with every ``value``/``previous``/``old``/``new`` field, at
    any depth, shown as the value of ``key`` (a secret: its marker)."""
    if isinstance(value, dict):
        return {
            k: redact_named(key, v)
            if k in PAIR_VALUE_FIELDS and isinstance(v, str)
            else _hide_values(v, key)
            for k, v in value.items()
        }
    if isinstance(value, list):
        return [_hide_values(v, key) for v in value]
    return value


class Dispatcher:
    """Wraps servicer methods: caller, status mapping, audit."""

    def __init__(self, authenticator: Authenticator, auditor: Auditor) -> None:
        self.auth = authenticator
        self.auditor = auditor

    def _caller(self, context: aio.ServicerContext[Any, Any]) -> Identity | None:
        try:
            return self.auth.identify(context.invocation_metadata())
        except AuthError:  # the interceptor already refused such calls
            return None

    def unary(
        self, method: str, impl: Callable[[Any, Any], Awaitable[Message]]
    ) -> Callable[[Any, aio.ServicerContext[Any, Any]], Awaitable[Message]]:
        async def behavior(request: Any, context: aio.ServicerContext[Any, Any]) -> Message:
            audited = is_audited(method, request)
            who = self._caller(context)
            if who is not None:
                CALLER.set(who)
            node = str(getattr(request, "node", "") or "")
            started = time.monotonic()
            try:
                response = await impl(request, context)
            except RpcFailure as exc:
                if audited:
                    self._audit(method, who, node, request, str(exc), False, started)
                await context.abort(exc.code, redact_text(exc.message))
            except (asyncio.CancelledError, aio.AbortError):
                raise
            except Exception as exc:
                log.exception("%s failed", method)
                if audited:
                    self._audit(method, who, node, request, f"INTERNAL: {exc!r}", False, started)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the log"
                )
            if audited:
                self._audit(method, who, node, request, "ok", True, started, response)
            return response

        return behavior

    def stream(
        self, method: str, impl: Callable[[Any, Any], AsyncGenerator[Message, None]]
    ) -> Callable[[Any, aio.ServicerContext[Any, Any]], AsyncIterator[Message]]:
        async def behavior(
            request: Any, context: aio.ServicerContext[Any, Any]
        ) -> AsyncIterator[Message]:
            try:
                # aclosing: a cancelled call closes the servicer's generator now,
                # not whenever it is garbage collected.
                async with contextlib.aclosing(impl(request, context)) as items:
                    async for item in items:
                        yield item
            except RpcFailure as exc:
                await context.abort(exc.code, redact_text(exc.message))
            except (asyncio.CancelledError, aio.AbortError):
                raise
            except Exception as exc:
                log.exception("%s failed", method)
                await context.abort(
                    grpc.StatusCode.INTERNAL, f"internal error ({type(exc).__name__}); see the log"
                )

        return behavior

    def _audit(
        self,
        method: str,
        who: Identity | None,
        node: str,
        request: Message,
        result: str,
        ok: bool,
        started: float,
        response: Message | None = None,
    ) -> None:
        details: dict[str, Any] = {
            "request": request_details(request),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        if response is not None:
            details["response"] = response_summary(method, response, request)
        self.auditor.record(method, who, node, result, ok, details)


def _handlers(
    servicer: object, service: ServiceDescriptor, dispatcher: Dispatcher
) -> grpc.GenericRpcHandler:
    handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}
    method: MethodDescriptor
    for method in service.methods:
        impl = getattr(servicer, method.name, None)
        if impl is None:
            raise TypeError(f"{type(servicer).__name__} does not implement {method.full_name}")
        full = f"/{service.full_name}/{method.name}"
        request_cls = message_factory.GetMessageClass(method.input_type)
        response_cls = message_factory.GetMessageClass(method.output_type)
        if method.client_streaming:
            raise TypeError(f"{method.full_name}: client streaming is not supported")
        if method.server_streaming:
            handlers[method.name] = grpc.unary_stream_rpc_method_handler(
                dispatcher.stream(full, impl),
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
        else:
            handlers[method.name] = grpc.unary_unary_rpc_method_handler(
                dispatcher.unary(full, impl),
                request_deserializer=request_cls.FromString,
                response_serializer=response_cls.SerializeToString,
            )
    return grpc.method_handlers_generic_handler(service.full_name, handlers)


def _json_name(name: str) -> str:
    """protobuf's default JSON name: lower_snake -> lowerCamel."""
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def _with_json_names(messages: Any) -> None:
    for message in messages:
        for field in message.field:
            if not field.json_name:
                field.json_name = _json_name(field.name)
        _with_json_names(message.nested_type)


def reflection_pool(files: Sequence[FileDescriptor]) -> descriptor_pool.DescriptorPool:
    """The descriptors reflection serves, with their JSON field names.

    protoc's Python output leaves ``json_name`` out of the descriptors it
    embeds, and grpcurl then prints ``otp_release`` where the JSON mapping
    says ``otpRelease``: put the names back in a pool of our own.
    """
    pool = descriptor_pool.DescriptorPool()

    def add(file: FileDescriptor) -> None:
        try:
            pool.FindFileByName(file.name)
            return
        except KeyError:
            pass
        for dependency in file.dependencies:
            add(dependency)
        proto = descriptor_pb2.FileDescriptorProto()
        file.CopyToProto(proto)
        _with_json_names(proto.message_type)
        pool.Add(proto)

    for file in files:
        add(file)
    return pool


def create_server(deps: Deps, config: GrpcConfig) -> aio.Server:
    """A ``grpc.aio`` server for the control plane, bound but not started.

    Raises ``ValueError`` for a non-loopback ``listen`` without a token file,
    :class:`~sidecar.control.config.TokenFileError` for a bad token file,
    ``OSError`` when the address cannot be bound or the TLS files read.
    :func:`bound_port` tells the port (``listen`` port 0 picks a free one).
    """
    host, port = config.listen
    identities = load_identities(config.tokens_file) if config.tokens_file is not None else None
    if identities is None and not is_loopback(host):
        raise ValueError(
            f"grpc.listen {host}:{port} is not a loopback address: configure grpc.auth "
            "(a tokens_file) to serve beyond this host"
        )
    authenticator = Authenticator(identities)
    auditor = Auditor(deps.audit)
    dispatcher = Dispatcher(authenticator, auditor)
    server = aio.server(
        interceptors=[AuthInterceptor(authenticator, on_denied=auditor.denied)],
        options=[
            ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
            ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
            ("grpc.so_reuseport", 0),
        ],
    )
    servicers: dict[str, object] = {
        "Nodes": NodesService(deps),
        "Processes": ProcessesService(deps),
        "Tables": TablesService(deps),
        "Code": CodeService(deps),
        "Config": ConfigService(deps),
        "Eval": EvalService(deps, enabled=config.eval_enabled),
        "Alarms": AlarmsService(deps),
        "Metrics": MetricsService(deps),
        "Ports": PortsService(deps),
        "Trace": TraceService(deps),
        "Memory": MemoryService(deps),
    }
    for module, name in _DESCRIPTORS:
        service = module.DESCRIPTOR.services_by_name[name]
        server.add_generic_rpc_handlers([_handlers(servicers[name], service, dispatcher)])

    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    health_name = health_pb2.DESCRIPTOR.services_by_name["Health"].full_name
    files = [module.DESCRIPTOR for module, _ in _DESCRIPTORS]
    files += [health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR]
    reflection.enable_server_reflection(
        (*SERVICE_NAMES, health_name, reflection.SERVICE_NAME),
        server,
        pool=reflection_pool(files),
    )
    _HEALTH[server] = health_servicer

    address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    try:
        if config.tls_cert_file is not None and config.tls_key_file is not None:
            credentials = grpc.ssl_server_credentials(
                [(config.tls_key_file.read_bytes(), config.tls_cert_file.read_bytes())]
            )
            bound = server.add_secure_port(address, credentials)
        else:
            bound = server.add_insecure_port(address)
    except RuntimeError:  # grpc's "Failed to bind"
        bound = 0
    if bound == 0:
        raise OSError(f"cannot listen on {address} (address in use?)")
    _PORTS[server] = bound
    log.info(
        "gRPC control plane on %s (auth %s, TLS %s, eval %s)",
        address if port else f"{host}:{bound}",
        "on" if authenticator.enabled else "off (loopback only)",
        "on" if config.tls_cert_file is not None else "off",
        "enabled" if config.eval_enabled else "disabled",
    )
    return server


def bound_port(server: aio.Server) -> int:
    """The port :func:`create_server` bound (useful with ``listen`` port 0)."""
    return _PORTS[server]


async def set_serving(server: aio.Server, serving: bool) -> None:
    """Health status of every service (and of the server, service "")."""
    servicer = _HEALTH.get(server)
    if servicer is None:
        return
    status = (
        health_pb2.HealthCheckResponse.SERVING
        if serving
        else health_pb2.HealthCheckResponse.NOT_SERVING
    )
    for name in ("", *SERVICE_NAMES):
        await servicer.set(name, status)


async def serve(deps: Deps, config: GrpcConfig, stop: asyncio.Event, grace: float = 2.0) -> None:
    """Run the control plane until ``stop`` is set; in-flight calls get ``grace`` s."""
    server = create_server(deps, config)
    await server.start()
    await set_serving(server, True)
    try:
        await stop.wait()
    finally:
        await set_serving(server, False)
        await server.stop(grace)
