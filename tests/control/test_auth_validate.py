"""Token file, roles and input validation (no nodes needed)."""

from __future__ import annotations

from pathlib import Path

import grpc
import pytest

from sidecar.control.auth import METHOD_ROLES, Authenticator, AuthError, is_mutating
from sidecar.control.config import (
    ANONYMOUS,
    GrpcConfig,
    Role,
    TokenFileError,
    fingerprint,
    is_loopback,
    load_identities,
    load_tokens,
)
from sidecar.control.errors import RpcFailure
from sidecar.control.gen.beamside.v1 import (
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
from sidecar.control.server import SERVICE_NAMES, request_details
from sidecar.control.validate import atom, continuation_decode, limit, pid_or_name, table
from sidecar.redact import marker


def test_token_file(tmp_path: Path) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(
        "s3cret-token: operator\nview-only-1: viewer\nr00t-t0ken: {role: admin, name: alice}\n"
    )
    assert dict(load_tokens(path)) == {
        "s3cret-token": Role.OPERATOR,
        "view-only-1": Role.VIEWER,
        "r00t-t0ken": Role.ADMIN,
    }
    identities = load_identities(path)
    assert identities["r00t-t0ken"].name == "alice"
    assert identities["s3cret-token"].name == fingerprint("s3cret-token")
    assert "s3cret" not in identities["s3cret-token"].name


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("s3cret-token: superuser\n", "unknown role 'superuser'"),
        ("short: viewer\n", "at least 8 characters"),
        ("- a\n- b\n", "expected a mapping"),
        ("", "expected a mapping"),
        ("s3cret-token: {role: viewer, level: 3}\n", "unknown keys ['level']"),
        ("s3cret-token: [viewer\n", "not valid YAML"),
    ],
)
def test_bad_token_files(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "tokens.yaml"
    path.write_text(text)
    with pytest.raises(TokenFileError) as info:
        load_tokens(path)
    assert message in str(info.value) and str(path) in str(info.value)
    assert "s3cret-token" not in str(info.value)  # tokens never in messages


def test_missing_token_file(tmp_path: Path) -> None:
    with pytest.raises(TokenFileError, match="cannot read the token file"):
        load_tokens(tmp_path / "nope.yaml")


def test_grpc_config() -> None:
    assert GrpcConfig().listen == ("127.0.0.1", 50051) and not GrpcConfig().eval_enabled
    with pytest.raises(ValueError, match="both cert_file and key_file"):
        GrpcConfig(tls_cert_file=Path("cert.pem"))
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.1.2.3") and not is_loopback("host")


def test_every_method_has_a_role() -> None:
    modules = (
        nodes_pb2,
        processes_pb2,
        tables_pb2,
        code_pb2,
        config_pb2,
        eval_pb2,
        alarms_pb2,
        metrics_pb2,
        ports_pb2,
        trace_pb2,
        memory_pb2,
    )
    methods = {
        f"/{service.full_name}/{m.name}"
        for module in modules
        for service in module.DESCRIPTOR.services_by_name.values()
        for m in service.methods
    }
    assert methods == set(METHOD_ROLES)
    assert {s.removeprefix("beamside.v1.") for s in SERVICE_NAMES} == {
        m.split("/")[1].removeprefix("beamside.v1.") for m in methods
    }
    assert is_mutating("/beamside.v1.Processes/GarbageCollect")
    assert not is_mutating("/beamside.v1.Processes/ListProcesses")
    assert not is_mutating("/grpc.health.v1.Health/Check")
    assert is_mutating("/beamside.v1.Trace/Start")  # operator


def test_authenticator() -> None:
    auth = Authenticator(load_identities_from({"operator-token": "operator"}))
    method = "/beamside.v1.Eval/Evaluate"
    with pytest.raises(AuthError) as info:
        auth.authorize(method, [])
    assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    for header in ("operator-token", "Basic b3A=", "Bearer ", "Bearer wrong-token"):
        with pytest.raises(AuthError) as info:
            auth.authorize(method, [("authorization", header)])
        assert info.value.code is grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(AuthError) as info:
        auth.authorize(method, [("authorization", "Bearer operator-token")])
    assert info.value.code is grpc.StatusCode.PERMISSION_DENIED
    who = auth.authorize(
        "/beamside.v1.Code/SoftPurge", [("authorization", "bearer operator-token")]
    )
    assert who.role is Role.OPERATOR
    # Methods outside beamside.v1 need no role; unknown beamside.v1 ones need admin.
    auth.authorize("/grpc.health.v1.Health/Check", [("authorization", "Bearer operator-token")])
    with pytest.raises(AuthError):
        auth.authorize("/beamside.v1.Nodes/Future", [("authorization", "Bearer operator-token")])
    assert Authenticator(None).authorize(method, []) is ANONYMOUS


def load_identities_from(tokens: dict[str, str]) -> dict[str, object]:
    from sidecar.control.config import Identity

    return {t: Identity(fingerprint(t), Role.parse(r)) for t, r in tokens.items()}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("<0.123.0>", b"<0.123.0>"),
        (" <0.1.2> ", b"<0.1.2>"),
        ("code_server", b"code_server"),
        ("Elixir.MyApp.Worker", b"Elixir.MyApp.Worker"),
        ("'odd name'", b"odd name"),
    ],
)
def test_good_pids(text: str, expected: bytes) -> None:
    assert pid_or_name(text) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "is required"),
        ("<0.123>", "is not a pid"),
        ("<1.123.0>", "another node"),
        ("<0.40000.0>", "out of range"),
        ("<0.1.9000>", "out of range"),
        ("Upper", "neither a pid"),
        ("a b", "neither a pid"),
        ("x" * 300, "neither a pid"),
    ],
)
def test_bad_pids(text: str, message: str) -> None:
    with pytest.raises(RpcFailure) as info:
        pid_or_name(text)
    assert info.value.code is grpc.StatusCode.INVALID_ARGUMENT and message in info.value.message


def test_other_validators() -> None:
    assert atom("my_app", "app") == "my_app"
    with pytest.raises(RpcFailure, match="at most 255"):
        atom("a" * 256, "app")
    assert table("#Ref<0.1.2.3>") == b"#Ref<0.1.2.3>" and table("ac_tab") == b"ac_tab"
    with pytest.raises(RpcFailure):
        table("#Ref<1.2>")
    assert limit(0, "limit", 20, 1000) == 20 and limit(1000, "limit", 20, 1000) == 1000
    with pytest.raises(RpcFailure, match="from 1 to 1000"):
        limit(1001, "limit", 20, 1000)
    assert continuation_decode("") is None
    with pytest.raises(RpcFailure):
        continuation_decode("%%%")


def test_audit_details_hide_values() -> None:
    request = config_pb2.SetEnvRequest(node="a@b", app="db", key="password", value="hunter2")
    details = request_details(request)
    assert details["key"] == "password" and "hunter2" not in str(details)
    assert details["value"] == marker("hunter2")
    long = eval_pb2.EvaluateRequest(node="a@b", expression="x" * 5000)
    assert len(request_details(long)["expression"]) == 2003
