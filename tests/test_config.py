"""The config file: defaults, every kind of mistake, cookies never echoed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.cli import EXIT_CONFIG
from sidecar.config import (
    ConfigError,
    CookieSource,
    load_config,
    parse_config,
    parse_duration,
    parse_listen,
)

MINIMAL = """
cluster: prod
targets:
  - nodes: [app@127.0.0.1]
    cookie_env: APP_COOKIE
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "beamside.yaml"
    path.write_text(text)
    return path


def problems(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert str(tmp_path / "beamside.yaml") in str(info.value)
    return info.value.problems


def test_minimal_config_defaults(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    assert config.cluster == "prod"
    assert config.node_name is None
    assert config.intervals.metrics == 15.0 and config.intervals.live == 1.0
    assert config.http_listen == ("127.0.0.1", 9568)
    assert config.grpc_listen == ("127.0.0.1", 50051)
    assert config.otlp is None
    (target,) = config.targets
    assert target.nodes == ("app@127.0.0.1",)
    assert target.cookie == CookieSource("env", "APP_COOKIE")
    assert target.discover == "none" and target.family is None


def test_full_config(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
cluster: prod-eu
node_name: beamside@127.0.0.1
targets:
  - nodes: [a@10.0.0.1, b@10.0.0.2]
    cookie_file: /etc/beamside/cookie
    discover: connected
    family: payments
  - nodes: [c@host]
    cookie: inline-secret
intervals: {metrics: 1s, live: 500ms}
http: {listen: "0.0.0.0:9100"}
grpc: {listen: "[::1]:50052"}
otlp: {endpoint: "http://127.0.0.1:4318/v1/metrics", interval: 30s}
""",
        )
    )
    assert config.node_name == "beamside@127.0.0.1"
    assert config.targets[0].discover == "connected"
    assert config.targets[0].family == "payments"
    assert config.targets[1].cookie.kind == "inline"
    assert config.intervals.metrics == 1.0 and config.intervals.live == 0.5
    assert config.http_listen == ("0.0.0.0", 9100)
    assert config.grpc_listen == ("::1", 50052)
    assert config.otlp is not None and config.otlp.interval == 30.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (MINIMAL + "colour: blue\n", "colour: unknown key"),
        (MINIMAL + "intervals: {metrics: 15}\n", "intervals.metrics: duration 15 needs a unit"),
        (MINIMAL + "intervals: {metrics: 500ms}\n", "intervals.metrics: must be at least 1s"),
        (MINIMAL + "intervals: {metric: 5s}\n", "intervals.metric: unknown key"),
        (MINIMAL + "http: {listen: nowhere}\n", "http.listen: expected 'host:port'"),
        (MINIMAL + "http: {listen: 'a:99999'}\n", "http.listen: port in 'a:99999'"),
        ("targets: []\n", "cluster: required"),
        ("cluster: x\ntargets: []\n", "targets: expected a non-empty list"),
        ("cluster: 'bad name!'\n" + MINIMAL.split("\n", 2)[2], "cluster: cluster must be"),
        (
            "cluster: x\ntargets:\n  - nodes: [app]\n    cookie_env: C\n",
            "targets[0].nodes[0]: node name 'app' has no '@host' part",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n",
            "targets[0]: give exactly one of cookie_file, cookie_env, cookie",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\n    discover: mdns\n",
            "targets[0].discover: expected one of none, connected, kubernetes, dns",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\n    discover: dns\n",
            "targets[0].dns: required with discover: dns",
        ),
        (
            "cluster: x\ntargets:\n  - cookie_env: C\n    discover: kubernetes\n"
            "    kubernetes: {label_selector: app=shop, node_name_template: 'app@{ip}'}\n",
            "targets[0].kubernetes: ",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\n"
            "    dns: {name: shop.default.svc}\n",
            "targets[0].dns: only used with discover: dns",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\n"
            "sharding: {count: 3, index: 3}\n",
            "sharding.index: expected 0 to 2, got 3",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\nlogs: {level: loud}\n",
            "logs.level: expected one of emergency",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\n"
            "logs: {nodes: {b@h: info}}\n",
            "logs.nodes.b@h: unknown key",
        ),
        (
            "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie_env: C\n"
            "notifications: {system_monitor: yes please}\n",
            "notifications.system_monitor: expected true or false",
        ),
        (
            "cluster: x\ntargets:\n  - {nodes: [a@h], cookie_env: C}\n"
            "  - {nodes: [a@h], cookie_env: D}\n",
            "targets[1].nodes: a@h is already listed in targets[0]",
        ),
        ("cluster: [unclosed\n", "not valid YAML"),
        ("", "the file is empty"),
    ],
)
def test_errors_name_the_key(tmp_path: Path, text: str, expected: str) -> None:
    found = problems(tmp_path, text)
    assert any(expected in p for p in found), found


def test_all_problems_reported_at_once(tmp_path: Path) -> None:
    found = problems(
        tmp_path,
        "cluster: x\nbogus: 1\nintervals: {metrics: fast}\ntargets:\n  - {nodes: [a@h]}\n",
    )
    assert len(found) == 3, found


def test_cookie_never_in_errors(tmp_path: Path) -> None:
    text = (
        "cluster: x\ntargets:\n  - nodes: [a@h]\n    cookie: TOPSECRETVALUE\n    cookie_env: ALSO\n"
    )
    with pytest.raises(ConfigError) as info:
        load_config(write(tmp_path, text))
    assert "TOPSECRETVALUE" not in str(info.value)
    config = parse_config(
        {"cluster": "x", "targets": [{"nodes": ["a@h"], "cookie": "TOPSECRETVALUE"}]}
    )
    assert "TOPSECRETVALUE" not in repr(config)


def test_cookie_sources(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "cookie"
    path.write_text("from-file\n")
    path.chmod(0o400)
    assert CookieSource("file", str(path)).read() == "from-file"
    monkeypatch.setenv("BEAMSIDE_TEST_COOKIE", "from-env")
    assert CookieSource("env", "BEAMSIDE_TEST_COOKIE").read() == "from-env"
    with pytest.raises(ValueError, match="cannot read cookie file"):
        CookieSource("file", str(tmp_path / "missing")).read()
    with pytest.raises(ValueError, match="NOPE_UNSET is empty or unset"):
        CookieSource("env", "NOPE_UNSET").read()


def test_durations_and_listen() -> None:
    assert parse_duration("15s") == 15 and parse_duration("2m") == 120
    assert parse_duration("500ms") == 0.5 and parse_duration("1h") == 3600
    for bad in ("15", "s", "-1s", "1d", True, None):
        with pytest.raises(ValueError):
            parse_duration(bad)
    assert parse_listen("[::]:80") == ("::", 80)


def test_check_config_command(tmp_path: Path) -> None:
    good = subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "check-config", str(write(tmp_path, MINIMAL))],
        capture_output=True,
        text=True,
        env={**os.environ, "APP_COOKIE": "secret-cookie"},
    )
    assert good.returncode == 0, good.stderr
    assert "ok" in good.stdout and "$APP_COOKIE" in good.stdout
    bad = subprocess.run(
        [
            sys.executable,
            "-m",
            "sidecar.cli",
            "check-config",
            str(write(tmp_path, MINIMAL + "extra: 1\n")),
        ],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == EXIT_CONFIG
    assert "extra: unknown key" in bad.stderr and "Traceback" not in bad.stderr


def test_discovery_logs_notifications_sharding(tmp_path: Path) -> None:
    config = load_config(
        write(
            tmp_path,
            """
cluster: prod
targets:
  - cookie_file: /run/secrets/cookie
    discover: kubernetes
    kubernetes:
      namespace: shop
      label_selector: app.kubernetes.io/name=shop
      node_name_template: "shop@{pod_ip}"
      interval: 5s
  - cookie_env: C
    discover: dns
    dns: {name: shop-headless.shop.svc.cluster.local, node_name_template: "app@{ip}"}
  - nodes: [a@h]
    cookie_env: C
logs:
  level: error
  nodes: {a@h: debug}
  max_message_bytes: 16KiB
  crash_grace: 30s
notifications: {system_monitor: true, system_monitor_rate: 5}
sharding: {count: 4}
""",
        )
    )
    k8s, dns, static = config.targets
    assert k8s.discover == "kubernetes" and k8s.nodes == () and k8s.kubernetes is not None
    assert k8s.kubernetes.namespace == "shop" and k8s.kubernetes.interval == 5.0
    assert dns.dns is not None and dns.dns.name.startswith("shop-headless")
    assert static.kubernetes is None and static.dns is None
    assert config.logs.level_for("a@h") == "debug" and config.logs.level_for("x@h") == "error"
    assert config.logs.max_message_bytes == 16384
    assert config.logs.crash_grace == 30
    assert config.notifications.system_monitor and config.notifications.system_monitor_rate == 5
    assert config.notifications.shell and config.notifications.code
    assert config.sharding.count == 4 and config.sharding.index is None


def test_reading_a_config_loads_no_sink() -> None:
    """The config classes live beside their owners: loading the config
    module brings no HTTP client, no sink and no gRPC."""
    code = (
        "import sys, sidecar.config\n"
        "heavy = ('httpx', 'grpc', 'sidecar.loki.sink', 'sidecar.alarms.alertmanager',"
        " 'sidecar.discovery.kubernetes', 'sidecar.discovery.dns', 'dns.resolver')\n"
        "print(sorted(m for m in sys.modules if m.startswith(heavy)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"


@pytest.mark.parametrize("value", ["-1s", "1.5s", "2d", "30"])
def test_crash_grace_is_whole_seconds_up_to_a_day(tmp_path: Path, value: str) -> None:
    found = problems(tmp_path, MINIMAL + f"logs: {{crash_grace: '{value}'}}\n")
    assert len(found) == 1 and found[0].startswith("logs.crash_grace: "), found


def test_loki_url_with_a_bad_port(tmp_path: Path) -> None:
    found = problems(tmp_path, MINIMAL + "loki: {url: 'http://loki:abc'}\n")
    assert found == ["loki: url: 'http://loki:abc' is not an http(s) URL"]


def test_every_section_reports_in_one_error(tmp_path: Path) -> None:
    """One mistake in each section: all of them, in section order, with their key paths."""
    found = problems(
        tmp_path,
        """
cluster: x
node_name: q
targets:
  - {nodes: [a@h], cookie_env: C}
  - {nodes: [a@h], cookie_env: D}
intervals: {metrics: 0s}
http: {listen: x}
grpc: {listen: y}
otlp: {endpoint: z}
alarms: {q: 1}
global_config: 1
alertmanager: {urls: 1}
logs: {level: q, nodes: {a@h: z}}
notifications: {shell: q}
sharding: {count: q}
loki: {url: q}
agents: {z: 1}
""",
    )
    levels = "emergency, alert, critical, error, warning, notice, info, debug"
    assert found[6].startswith("alarms.q: unknown key (known keys: atom_limit, ")
    assert found[:6] + found[7:] == [
        "node_name: node name 'q' has no '@host' part (expected name@host)",
        "targets[1].nodes: a@h is already listed in targets[0]",
        "intervals.metrics: must be at least 1s, got '0s'",
        "http.listen: expected 'host:port', got 'x'",
        "grpc.listen: expected 'host:port', got 'y'",
        "otlp.endpoint: expected an http(s) URL of an OTLP/HTTP receiver",
        "global_config: expected a list of {app, key[, family]}",
        "alertmanager: urls: expected a list of Alertmanager URLs",
        f"logs.nodes.a@h: expected one of {levels}, got 'z'",
        f"logs.level: expected one of {levels}, got 'q'",
        "notifications.shell: expected true or false, got 'q'",
        "sharding.count: expected a whole number from 1 to 1024, got 'q'",
        "loki.url: expected Loki's http(s) base URL, e.g. http://loki:3100",
        "agents.z: unknown key (known keys: microstate_accounting, scheduler_wall_time)",
    ]


def check_config(path: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sidecar.cli", "check-config", str(path)],
        capture_output=True,
        text=True,
        env={k: v for k, v in {**os.environ, **(env or {})}.items() if k != "APP_COOKIE"}
        | (env or {}),
    )


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o440, 0o660, 0o601])
def test_cookie_file_open_to_group_or_others_is_refused_as_erl_refuses_it(
    tmp_path: Path, mode: int
) -> None:
    path = tmp_path / "cookie"
    path.write_text("the-cookie\n")
    path.chmod(mode)
    expected = (
        f"cookie file {path} has mode {mode:04o}: it must be readable by its owner only (chmod 400)"
    )
    with pytest.raises(ValueError) as info:
        CookieSource("file", str(path)).read()
    assert str(info.value) == expected
    text = f"cluster: prod\ntargets:\n  - nodes: [app@127.0.0.1]\n    cookie_file: {path}\n"
    # At start (`run` loads the config) and in check-config alike.
    assert problems(tmp_path, text) == [f"targets[0].cookie_file: {expected}"]
    proc = check_config(write(tmp_path, text))
    assert proc.returncode == EXIT_CONFIG
    assert expected in proc.stderr and "the-cookie" not in proc.stderr + proc.stdout
    path.chmod(0o400)
    assert check_config(write(tmp_path, text)).returncode == 0
    path.chmod(0o600)
    assert CookieSource("file", str(path)).read() == "the-cookie"


def test_cookie_file_that_is_not_a_regular_file_is_refused(tmp_path: Path) -> None:
    folder = tmp_path / "cookie.d"
    folder.mkdir(mode=0o700)
    with pytest.raises(ValueError, match=f"cookie file {folder} is not a regular file"):
        CookieSource("file", str(folder)).read()


def test_check_config_fails_for_a_missing_cookie_file_or_an_unset_variable(
    tmp_path: Path,
) -> None:
    missing = tmp_path / "nope"
    text = (
        "cluster: prod\ntargets:\n"
        f"  - nodes: [a@127.0.0.1]\n    cookie_file: {missing}\n"
        "  - nodes: [b@127.0.0.1]\n    cookie_env: APP_COOKIE\n"
    )
    config = write(tmp_path, text)
    load_config(config)  # `run` starts: the file may be mounted later
    proc = check_config(config)
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    assert f"targets[0].cookie_file: cannot read cookie file {missing}" in proc.stderr
    assert "targets[1].cookie_env: environment variable APP_COOKIE is empty or unset" in (
        proc.stderr
    )
    missing.write_text("c\n")
    missing.chmod(0o400)
    ok = check_config(config, {"APP_COOKIE": "set"})
    assert ok.returncode == 0, ok.stderr
    empty = check_config(config, {"APP_COOKIE": ""})
    assert empty.returncode == EXIT_CONFIG and "APP_COOKIE is empty or unset" in empty.stderr


@pytest.mark.parametrize(
    ("content", "kind", "position"),
    [
        (b"SECRET-one\nSECRET-two\n", "a line break", 11),
        (b"SECRET\0SECRET\n", "a NUL", 7),
        (b"SECRET\r\nSECRET", "a carriage return", 7),
        (b"SEC\tRET", "a tab", 4),
        (b"SECRET\x1b[0m", "control character 0x1b", 7),
        ("SECRETé".encode(), "a character outside printable ASCII", 7),
        (b"SECRET\xff", "a character outside printable ASCII", 7),
        (b"SECRET\x1f\n", "control character 0x1f", 7),
        ("SECRET\u00a0\n".encode(), "a character outside printable ASCII", 7),
    ],
)
def test_check_config_fails_for_a_cookie_file_erl_would_refuse(
    tmp_path: Path, content: bytes, kind: str, position: int
) -> None:
    """One line of printable ASCII (a trailing newline is fine): what erl
    reads from a cookie file; the message names the character, never the cookie."""
    path = tmp_path / "cookie"
    path.write_bytes(content)
    path.chmod(0o400)
    config = write(
        tmp_path, f"cluster: prod\ntargets:\n  - nodes: [app@127.0.0.1]\n    cookie_file: {path}\n"
    )
    proc = check_config(config)
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    expected = (
        f"targets[0].cookie_file: the cookie from file {path} must be one line of printable "
        f"ASCII characters: {kind} at character {position}"
    )
    assert expected in proc.stderr
    assert "SEC" not in proc.stderr + proc.stdout
    with pytest.raises(ValueError) as info:  # `run` reads it so when it attaches
        CookieSource("file", str(path)).read()
    assert str(info.value) == expected.removeprefix("targets[0].cookie_file: ")


def test_check_config_fails_for_a_variable_or_inline_cookie_of_two_lines(tmp_path: Path) -> None:
    config = write(
        tmp_path,
        "cluster: prod\ntargets:\n"
        "  - nodes: [a@127.0.0.1]\n    cookie_env: APP_COOKIE\n"
        '  - nodes: [b@127.0.0.1]\n    cookie: "inline-one\\ninline-two"\n',
    )
    proc = check_config(config, {"APP_COOKIE": "env-one\nenv-two"})
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    assert (
        "targets[0].cookie_env: the cookie from $APP_COOKIE must be one line of printable ASCII "
        "characters: a line break at character 8"
    ) in proc.stderr
    assert (
        "targets[1].cookie: the cookie from inline cookie must be one line of printable ASCII "
        "characters: a line break at character 11"
    ) in proc.stderr
    assert "-one" not in proc.stderr and "-two" not in proc.stderr
    config.write_text(config.read_text().replace("\\n", "-"))
    ok = check_config(config, {"APP_COOKIE": "env-one"})
    assert ok.returncode == 0, ok.stderr
    assert "ok" in ok.stdout and "$APP_COOKIE" in ok.stdout


def test_check_config_fails_for_a_cookie_file_that_cannot_be_read(tmp_path: Path) -> None:
    """A private regular file whose read fails: check-config reads it as `run`
    would.  (/proc/self/mem is 0600, owned by the reader, and its first page
    gives EIO, for root too, whom no mode keeps out.)"""
    config = write(
        tmp_path,
        "cluster: prod\ntargets:\n  - nodes: [app@127.0.0.1]\n    cookie_file: /proc/self/mem\n",
    )
    proc = check_config(config)
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    assert (
        "targets[0].cookie_file: cannot read cookie file /proc/self/mem: Input/output error"
        in proc.stderr
    )


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    from sidecar.pki import make_ca, make_cert

    d = tmp_path_factory.mktemp("certs")
    ca = make_ca(d, "config CA")
    client = make_cert(ca, d, "client")
    other = make_cert(ca, d, "other")
    return {
        "ca": ca.certfile,
        "cert": client.certfile,
        "key": client.keyfile,
        "other_key": other.keyfile,
    }


def tls_config(tls: str) -> str:
    return f"cluster: prod\ntargets:\n  - nodes: [app@127.0.0.1]\n    cookie: c\n    tls: {tls}\n"


def test_target_tls(tmp_path: Path, certs: dict[str, Path]) -> None:
    config = load_config(
        write(
            tmp_path,
            tls_config(
                f"{{cacertfile: {certs['ca']}, certfile: {certs['cert']}, "
                f"keyfile: {certs['key']}, server_name_indication: app.internal}}"
            ),
        )
    )
    (target,) = config.targets
    assert target.tls is not None
    assert target.tls.cacertfile == str(certs["ca"]) and target.tls.verify == "verify_peer"
    assert target.tls.server_name("127.0.0.1") == "app.internal"
    assert target.single("b@127.0.0.1").tls == target.tls  # discovered nodes keep it
    assert config.manager_config().targets[0].tls == target.tls
    plain = load_config(write(tmp_path, MINIMAL)).targets[0]
    assert plain.tls is None


def test_target_tls_mistakes(tmp_path: Path, certs: dict[str, Path]) -> None:
    missing = tmp_path / "nope.pem"
    assert problems(tmp_path, tls_config(f"{{cacertfile: {missing}}}")) == [
        f"targets[0].tls.cacertfile: cannot read {missing}: No such file or directory"
    ]
    assert problems(tmp_path, tls_config("{verify: verify_peer}")) == [
        "targets[0].tls: verify_peer needs cacertfile (the CA that signs the nodes)"
    ]
    assert problems(tmp_path, tls_config(f"{{cacertfile: {certs['ca']}, verify: maybe}}")) == [
        "targets[0].tls.verify: expected verify_peer or verify_none, got 'maybe'"
    ]
    assert problems(tmp_path, tls_config(f"{{cacertfile: {certs['ca']}, cipher: x}}")) == [
        "targets[0].tls.cipher: unknown key (known keys: cacertfile, certfile, keyfile, "
        "server_name_indication, verify)"
    ]
    mismatched = problems(
        tmp_path,
        tls_config(
            f"{{cacertfile: {certs['ca']}, certfile: {certs['cert']}, "
            f"keyfile: {certs['other_key']}}}"
        ),
    )
    assert len(mismatched) == 1
    assert mismatched[0].startswith("targets[0].tls: tls certfile/keyfile")
    assert "KEY_VALUES_MISMATCH" in mismatched[0]
    not_pem = tmp_path / "garbage.pem"
    not_pem.write_text("hello\n")
    (bad_ca,) = problems(tmp_path, tls_config(f"{{cacertfile: {not_pem}}}"))
    assert bad_ca.startswith(f"targets[0].tls: tls cacertfile ({not_pem}) cannot be used")
    keyless_tls = f"{{verify: verify_none, certfile: {certs['cert']}}}"
    (keyless,) = problems(tmp_path, tls_config(keyless_tls))
    assert keyless.endswith("(no keyfile: is the key in the certfile?)")
    assert problems(tmp_path, tls_config("{verify: verify_none, server_name_indication: ''}")) == [
        "targets[0].tls.server_name_indication: expected a host name, or disable "
        "(no SNI and no name check)"
    ]


def test_check_config_describes_tls(tmp_path: Path, certs: dict[str, Path]) -> None:
    proc = check_config(
        write(
            tmp_path,
            tls_config(
                f"{{cacertfile: {certs['ca']}, certfile: {certs['cert']}, keyfile: {certs['key']}}}"
            ),
        )
    )
    assert proc.returncode == 0, proc.stderr
    assert (
        f"    tls: verify_peer, CA {certs['ca']}, client cert {certs['cert']}, "
        "SNI the node's host" in proc.stdout
    )


LEVELS_RISE = "levels rise with severity: warning < minor < major < critical"


@pytest.mark.parametrize(
    ("alarms", "expected"),
    [
        (
            "process_message_queue: {minor: 100000, major: 10}",
            f"alarms.process_message_queue.major: 10 must be above minor (100000): {LEVELS_RISE}",
        ),
        (
            "process_message_queue: {minor: 100000}",
            "alarms.process_message_queue.minor: 100000 must be below major "
            f"(100000, the default): {LEVELS_RISE}",
        ),
        (
            "clock_skew: {major: 0.5}",
            f"alarms.clock_skew.major: 0.5 must be above minor (1, the default): {LEVELS_RISE}",
        ),
        (
            "atom_limit: {minor: 0.9, major: 0.8, critical: 0.95}",
            f"alarms.atom_limit.major: 0.8 must be above minor (0.9): {LEVELS_RISE}",
        ),
        (
            "atom_limit: {minor: 1.5}",
            "alarms.atom_limit.minor: expected a share of the limit, within (0, 1], got 1.5",
        ),
        (
            "process_limit: {minor: 70}",
            "alarms.process_limit.minor: expected a share of the limit, within (0, 1], got 70",
        ),
        (
            "system_memory_high_watermark: {major: 0}",
            "alarms.system_memory_high_watermark.major: expected a share of the limit, "
            "within (0, 1], got 0",
        ),
        (
            "disk_almost_full: {major: 101}",
            "alarms.disk_almost_full.major: expected a percentage, within (0, 100], got 101",
        ),
        (
            "ets_limit: {clear_ratio: 1.5}",
            "alarms.ets_limit.clear_ratio: expected a share of the level, within (0, 1], got 1.5",
        ),
        (
            "process_message_queue: {clear_ratio: 0}",
            "alarms.process_message_queue.clear_ratio: expected a share of the level, "
            "within (0, 1], got 0",
        ),
        (
            "binary_memory_growth: {window: 0s}",
            "alarms.binary_memory_growth.window: must be a positive duration, got '0s'",
        ),
        ("old_code: {age: 0ms}", "alarms.old_code.age: must be a positive duration, got '0ms'"),
    ],
)
def test_check_config_fails_for_alarm_settings_that_cannot_work(
    tmp_path: Path, alarms: str, expected: str
) -> None:
    """Levels rise with severity (every built-in alarm is worse when higher),
    defaults included; a share of a limit is within (0, 1]; windows and ages
    are positive.  `run` loads the same config, so it refuses them too."""
    text = f"{MINIMAL}alarms:\n  {alarms}\n"
    proc = check_config(write(tmp_path, text), {"APP_COOKIE": "set"})
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    assert proc.stderr.count("\n  alarms.") == 1, proc.stderr
    assert f"\n  {expected}\n" in proc.stderr
    assert problems(tmp_path, text) == [expected]


def test_check_config_says_ok_for_alarm_settings_that_work(tmp_path: Path) -> None:
    text = (
        f"{MINIMAL}alarms:\n"
        "  atom_limit: {minor: 0.5, major: 0.6, critical: 1, clear_ratio: 1}\n"
        "  disk_almost_full: {minor: 99.9, major: 100, window: 1s}\n"
        "  process_message_queue: {minor: 10, major: 20, clear_ratio: 0.5}\n"
        "  clock_skew: {major: 1.5}\n"
        "  node_down: {delay: 0s, hold: 0s}\n"  # 0s: none, as by default
        "  old_code: {warning: 3, age: 1s}\n"
    )
    proc = check_config(write(tmp_path, text), {"APP_COOKIE": "set"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{tmp_path / 'beamside.yaml'}: ok")
    overrides = load_config(tmp_path / "beamside.yaml").alarms.overrides
    assert overrides["atom_limit"] == {
        "minor": 0.5,
        "major": 0.6,
        "critical": 1.0,
        "clear_ratio": 1.0,
    }
    assert overrides["node_down"] == {"delay": 0.0, "hold": 0.0}


TOKENS_CONFIG = MINIMAL + "grpc:\n  auth: {tokens_file: %s}\n"


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (None, "cannot read the token file: No such file or directory"),
        ("", "expected a mapping of token to role (a line like '<token>: operator')"),
        ("- a-long-token\n", "expected a mapping of token to role"),
        ("tokens: [\n", "not valid YAML at line 2"),
        ("short: viewer\n", "entry 1: a token must be a string of at least 8 characters"),
        ("a-long-token: root\n", "entry 1: unknown role 'root' (viewer, operator or admin)"),
        (
            "a-long-token: {role: admin, nick: x}\n",
            "entry 1: unknown keys ['nick'] (role, name)",
        ),
    ],
)
def test_check_config_fails_for_a_tokens_file_missing_or_malformed(
    tmp_path: Path, content: str | None, expected: str
) -> None:
    """The gRPC tokens file, read by the function the control plane reads it
    with when it starts; the message names the entry, never the token."""
    tokens = tmp_path / "tokens.yaml"
    if content is not None:
        tokens.write_text(content)
    proc = check_config(write(tmp_path, TOKENS_CONFIG % tokens), {"APP_COOKIE": "set"})
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    assert f"\n  grpc.auth.tokens_file: {tokens}: {expected}" in proc.stderr
    assert "a-long-token" not in proc.stderr


def test_check_config_says_ok_for_a_well_formed_tokens_file(tmp_path: Path) -> None:
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("an-operator-token: operator\nan-admin-token: {role: admin, name: alice}\n")
    proc = check_config(write(tmp_path, TOKENS_CONFIG % tokens), {"APP_COOKIE": "set"})
    assert proc.returncode == 0, proc.stderr
    assert ": ok" in proc.stdout
    assert load_config(tmp_path / "beamside.yaml").grpc.tokens_file == tokens


DISCOVERY = "  - discover: %s\n    cookie_env: APP_COOKIE\n    %s\n"


@pytest.mark.parametrize(
    ("section", "path"),
    [
        ("intervals: {metrics: 0s}", "intervals.metrics"),
        ("intervals: {live: 0ms}", "intervals.live"),
        ("otlp: {endpoint: 'http://o:4318', interval: 0s}", "otlp.interval"),
        (
            "alertmanager: {urls: ['http://a:9093'], resend_interval: 0s}",
            "alertmanager.resend_interval",
        ),
        ("alertmanager: {urls: ['http://a:9093'], timeout: 0s}", "alertmanager.timeout"),
        *(
            (f"loki: {{url: 'http://l:3100', {key}: 0s}}", f"loki.{key}")
            for key in ("batch_wait", "timeout", "min_backoff", "max_backoff", "spill_after")
        ),
        *(
            (
                "targets:\n"
                + DISCOVERY
                % ("dns", f"dns: {{name: shop.svc, node_name_template: 'a@{{ip}}', {key}: 0s}}"),
                f"targets[1].dns.{key}",
            )
            for key in ("interval", "timeout")
        ),
        *(
            (
                "targets:\n"
                + DISCOVERY
                % (
                    "kubernetes",
                    "kubernetes: {label_selector: app=a, node_name_template: 'a@{ip}', "
                    f"{key}: 0s}}",
                ),
                f"targets[1].kubernetes.{key}",
            )
            for key in ("interval", "timeout")
        ),
        *(
            (f"alarms: {{{alarm}: {{{key}: 0s}}}}", f"alarms.{alarm}.{key}")
            for alarm, key in (
                ("binary_memory_growth", "window"),
                ("disk_almost_full", "window"),
                ("old_code", "age"),
            )
        ),
    ],
)
def test_check_config_fails_for_a_duration_that_is_not_positive(
    tmp_path: Path, section: str, path: str
) -> None:
    """Every duration key but an alarm's delay and hold (0s: none, their default)."""
    if section.startswith("targets:"):
        text = MINIMAL + section.removeprefix("targets:\n")
    else:
        text = f"{MINIMAL}{section}\n"
    proc = check_config(write(tmp_path, text), {"APP_COOKIE": "set"})
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    (line,) = [ln for ln in proc.stderr.splitlines() if ln.startswith("  ")]
    assert line.startswith(f"  {path}: must be "), line
    assert line.endswith(("got '0s'", "got '0ms'")), line


def test_check_config_lists_every_problem_of_the_issue_at_once(tmp_path: Path) -> None:
    """The cookies are read in the same pass as the rest is parsed: a mistake
    elsewhere does not hide them, and each names its own target."""
    open_to_all = tmp_path / "open"
    open_to_all.write_text("c\n")
    open_to_all.chmod(0o644)
    nul = tmp_path / "nul"
    nul.write_bytes(b"ab\0cd\n")
    nul.chmod(0o400)
    config = write(
        tmp_path,
        "cluster: prod\ntargets:\n"
        "  - {nodes: [bad]}\n"
        f"  - {{nodes: [a@h], cookie_file: {tmp_path / 'missing'}}}\n"
        "  - {nodes: [b@h], cookie_env: APP_COOKIE}\n"
        f"  - {{nodes: [c@h], cookie_file: {open_to_all}}}\n"
        f"  - {{nodes: [d@h], cookie_file: {nul}}}\n"
        "alarms:\n"
        "  process_message_queue: {minor: 100000, major: 10}\n"
        "  atom_limit: {minor: 1.5}\n",
    )
    proc = check_config(config)
    assert proc.returncode == EXIT_CONFIG, proc.stdout
    found = [line.strip() for line in proc.stderr.splitlines()[1:]]
    assert [line.split(":")[0] for line in found] == [
        "targets[0].nodes[0]",
        "targets[0]",
        "targets[1].cookie_file",
        "targets[2].cookie_env",
        "targets[3].cookie_file",
        "targets[4].cookie_file",
        "alarms.process_message_queue.major",
        "alarms.atom_limit.minor",
    ], found
    assert "has mode 0644" in found[4] and "a NUL at character 3" in found[5]
    assert len(problems(tmp_path, config.read_text())) == 5  # `run`: cookies read at attach


# --------------------------------------------------------------------------- metrics (issue 15)


def test_metrics_defaults_aggregate_distribution(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, MINIMAL))
    m = config.metrics
    assert (m.dist_per_peer, m.dist_max_peers, m.series_budget) == (False, 100, 1000)
    manager = config.manager_config()
    assert manager.collect_options("app@127.0.0.1") == {"dist_per_peer": False, "max_peers": 100}


def test_metrics_per_peer_reaches_the_collect_options(tmp_path: Path) -> None:
    text = MINIMAL + "metrics: {dist_per_peer: true, dist_max_peers: 1000, series_budget: 1}\n"
    config = load_config(write(tmp_path, text))
    assert config.metrics.dist_per_peer is True
    assert config.metrics.dist_max_peers == 1000 and config.metrics.series_budget == 1
    assert config.manager_config().collect_options("app@127.0.0.1") == {
        "dist_per_peer": True,
        "max_peers": 1000,
    }


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{dist_per_peer: 1}", "metrics.dist_per_peer: expected true or false, got 1"),
        ("{dist_max_peers: 0}", "metrics.dist_max_peers: expected a whole number from 1 to 1000"),
        (
            "{dist_max_peers: 1001}",
            "metrics.dist_max_peers: expected a whole number from 1 to 1000",
        ),
        ("{dist_max_peers: true}", "metrics.dist_max_peers: expected a whole number"),
        ("{series_budget: 0}", "metrics.series_budget: expected a whole number from 1 to 1000000"),
        ("{series_budget: 1000001}", "metrics.series_budget: expected a whole number from 1 to"),
        ("{series_budget: '10'}", "metrics.series_budget: expected a whole number"),
        ("{per_peer: true}", "metrics.per_peer: unknown key (known keys: dist_max_peers,"),
        ("[dist_per_peer]", "metrics: expected a mapping, got list"),
    ],
)
def test_metrics_mistakes_name_the_key(tmp_path: Path, section: str, expected: str) -> None:
    found = problems(tmp_path, MINIMAL + f"metrics: {section}\n")
    assert any(p.startswith(expected) for p in found), found
    assert len(found) == 1, found


# --------------------------------------------------------------------------- plugins (issue 16)

TWO_NODES = """
cluster: prod
targets:
  - nodes: [app@127.0.0.1, db@127.0.0.1]
    cookie_env: APP_COOKIE
"""


def test_plugins_on_everywhere_by_default(tmp_path: Path) -> None:
    manager = load_config(write(tmp_path, TWO_NODES)).manager_config()
    assert "plugins" not in manager.collect_options("app@127.0.0.1")  # the agent's all


def test_plugins_switched_off_everywhere_and_per_node(tmp_path: Path) -> None:
    text = TWO_NODES + (
        "plugins:\n"
        "  disabled: [poolboy]\n"
        "  nodes: {db@127.0.0.1: {disabled: [os_mon, mnesia]}}\n"
    )
    manager = load_config(write(tmp_path, text)).manager_config()
    common = ["ejabberd", "folsom", "lager", "mnesia", "os_mon", "rabbitmq", "ranch", "yaws"]
    assert manager.collect_options("app@127.0.0.1")["plugins"] == common
    # a node's own list replaces the common one
    own = ["ejabberd", "folsom", "lager", "poolboy", "rabbitmq", "ranch", "yaws"]
    assert manager.collect_options("db@127.0.0.1")["plugins"] == own
    assert manager.collect_options("found@10.0.0.9")["plugins"] == common
    text = TWO_NODES + "plugins: {nodes: {db@127.0.0.1: {disabled: []}}}\n"
    manager = load_config(write(tmp_path, text)).manager_config()
    assert "plugins" not in manager.collect_options("db@127.0.0.1")


def test_rabbitmq_top_queues_is_opted_in(tmp_path: Path) -> None:
    manager = load_config(write(tmp_path, TWO_NODES)).manager_config()
    assert "top_queues" not in manager.collect_options("app@127.0.0.1")
    text = TWO_NODES + "plugins: {rabbitmq: {top_queues: 20}}\n"
    manager = load_config(write(tmp_path, text)).manager_config()
    assert manager.collect_options("app@127.0.0.1")["top_queues"] == 20


@pytest.mark.parametrize(
    ("section", "expected"),
    [
        ("{disabled: [rabbit]}", "plugins.disabled: unknown plugin rabbit (known: ejabberd, "),
        ("{disabled: poolboy}", "plugins.disabled: expected a list of plugin names"),
        ("{rabbitmq: {top_queues: 500}}", "plugins.rabbitmq.top_queues: expected a whole number"),
        ("{rabbitmq: {top: 5}}", "plugins.rabbitmq.top: unknown key"),
        ("{nodes: {x@h: {disabled: []}}}", "plugins.nodes.x@h: unknown key"),
        ("{nodes: {app@127.0.0.1: {enable: []}}}", "plugins.nodes.app@127.0.0.1.enable: unknown"),
        (
            "{enabled: [poolboy]}",
            "plugins.enabled: unknown key (known keys: directory, disabled, nodes, rabbitmq)",
        ),
    ],
)
def test_plugins_mistakes_name_the_key(tmp_path: Path, section: str, expected: str) -> None:
    found = problems(tmp_path, TWO_NODES + f"plugins: {section}\n")
    assert any(p.startswith(expected) for p in found), found
    assert len(found) == 1, found
