"""``alarms.old_code.age`` and ``alarms.old_code.ignore``: defaults, parsing,
and `check-config` naming every mistake."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from sidecar.alarms.catalogue import OLD_CODE_IGNORE, resolve
from sidecar.alarms.checks import AlarmChecker
from sidecar.alarms.engine import AlarmEngine
from sidecar.alarms.model import AlarmKey, Severity
from sidecar.cli import EXIT_CONFIG
from sidecar.config import ConfigError, parse_config
from sidecar.erldist.term import Atom
from sidecar.model import NodeSnapshot
from tests.support.snapshots import node_snapshot

BASE = {"cluster": "c", "targets": [{"nodes": ["app@127.0.0.1"], "cookie_env": "X"}]}


def test_defaults() -> None:
    settings = resolve({})["old_code"]
    assert settings.age == 600.0
    assert settings.ignore == OLD_CODE_IGNORE
    assert {"rabbit_ff_registry", "ets_cache_options", "xmpp_config"} <= set(OLD_CODE_IGNORE)
    # Other alarms have neither.
    assert resolve({})["process_limit"].age == 0.0 and resolve({})["process_limit"].ignore == ()


def test_age_and_ignore_parsed_ignore_adds_to_the_defaults() -> None:
    config = parse_config(
        {**BASE, "alarms": {"old_code": {"age": "2m", "ignore": ["my_gen_*", "Elixir.Gen.*"]}}}
    )
    assert config.alarms.overrides["old_code"] == {
        "age": 120.0,
        "ignore": ("my_gen_*", "Elixir.Gen.*"),
    }
    settings = resolve(config.alarms.overrides)["old_code"]
    assert settings.age == 120.0
    assert settings.ignore == (*OLD_CODE_IGNORE, "my_gen_*", "Elixir.Gen.*")


@pytest.mark.parametrize(
    ("alarms", "needle"),
    [
        ({"old_code": {"age": 10}}, "alarms.old_code.age: duration 10 needs a unit"),
        ({"old_code": {"age": "soon"}}, "alarms.old_code.age: expected a duration"),
        ({"old_code": {"ignore": "rabbit_*"}}, "alarms.old_code.ignore: expected a list"),
        ({"old_code": {"ignore": ["ok", 3]}}, "alarms.old_code.ignore: expected a module name"),
        ({"old_code": {"ignore": [""]}}, "alarms.old_code.ignore: expected a module name"),
        ({"old_code": {"ignores": []}}, "alarms.old_code.ignores: unknown key"),
        ({"process_limit": {"age": "1m"}}, "alarms.process_limit.age: unknown key"),
        ({"process_limit": {"ignore": ["x"]}}, "alarms.process_limit.ignore: unknown key"),
    ],
)
def test_mistakes(alarms: dict[str, object], needle: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**BASE, "alarms": alarms})
    assert any(p.startswith(needle) for p in info.value.problems), info.value.problems


def test_check_config_command(tmp_path: Path) -> None:
    def check(alarms: str) -> subprocess.CompletedProcess[str]:
        path = tmp_path / "beamside.yaml"
        path.write_text(
            "cluster: c\ntargets:\n  - nodes: [app@127.0.0.1]\n    cookie_env: X\n" + alarms
        )
        # check-config reads the cookie too: the variable must be set
        return subprocess.run(
            [sys.executable, "-m", "sidecar.cli", "check-config", str(path)],
            capture_output=True,
            text=True,
            env={**os.environ, "X": "cookie-for-check-config"},
        )

    good = check("alarms:\n  old_code: {age: 10m, ignore: [my_gen_mod, 'gen_*']}\n")
    assert good.returncode == 0, good.stderr
    bad = check("alarms:\n  old_code: {age: 10, ignore: gen_mod}\n")
    assert bad.returncode == EXIT_CONFIG
    assert "alarms.old_code.age: duration 10 needs a unit" in bad.stderr, bad.stderr
    assert "alarms.old_code.ignore: expected a list" in bad.stderr, bad.stderr
    assert "Traceback" not in bad.stderr


def _snap(ages: object) -> NodeSnapshot:
    old = {"count": 0, "modules": [], "ages_ms": ages}
    return node_snapshot("n@h", "f", "c", 1e6, 0.01, {"alarms": {"old_code": old}})


def test_checker_counts_old_enough_and_not_ignored() -> None:
    """The agent's ages (as decoded: atom keys) against `age` and the patterns."""
    config = parse_config(
        {**BASE, "alarms": {"old_code": {"age": "10m", "ignore": ["Elixir.Gen.*", "my_gen_*"]}}}
    )
    engine = AlarmEngine("c")
    checker = AlarmChecker(engine, config.alarms.overrides, interval=15)
    minutes = {"keep_me": 11, "older": 30, "young": 9, "my_gen_1": 60, "Elixir.Gen.Registry": 60}
    ages = {Atom(m): v * 60_000 for m, v in {**minutes, "rabbit_ff_registry": 60}.items()}
    checker.on_snapshot(_snap(ages))
    alarm = engine.get(AlarmKey("old_code", "n@h"))
    assert alarm is not None and alarm.severity is Severity.WARNING
    assert alarm.info["modules"] == ["older", "keep_me"]  # oldest first
    assert alarm.info["age_s"] == {"older": 1800, "keep_me": 660}
    assert alarm.cause == "2 module(s) have had old code for more than 10 min: older, keep_me"
    # Not attached: the ages are unknown, so the alarm is neither raised nor cleared.
    checker.on_snapshot(_snap(Atom("not_attached")))
    assert engine.get(AlarmKey("old_code", "n@h")) is not None
    # Only young or ignored old code left: cleared.
    checker.on_snapshot(_snap({Atom("young"): 1000, Atom("my_gen_2"): 10**9}))
    assert engine.get(AlarmKey("old_code", "n@h")) is None
