"""The operator's own plugin (``plugins.directory``): the example under
``examples/`` compiled with erlc, loaded by ``beamside run`` on an OTP 25 and
an OTP 28 node (no restart), its section exported under its own names
(promtool-clean), and gone from the nodes when beamside stops; a directory
beamside cannot use is a config error that names the file."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from sidecar.config import ConfigError, load_config
from tests.conftest import NodeFactory
from tests.support.daemon_proc import BeamsideProcess
from tests.support.prometheus import promtool_check_metrics
from tests.test_run_e2e import NO_RESIDUE, RESIDUE, cookie_file, start_beamside  # noqa: F401

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "beamside_plugin_example.erl"


def compile_example(directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    erlc = shutil.which("erlc")
    assert erlc, "erlc: apt-get install -y erlang-base"
    done = subprocess.run(
        [erlc, "-o", str(directory), str(EXAMPLE)], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return directory / "beamside_plugin_example.beam"


def test_the_example_plugin_end_to_end(
    node_factory: NodeFactory,
    cookie_file: Path,  # noqa: F811
    tmp_path: Path,
    beamside_procs: list[BeamsideProcess],
) -> None:
    plugins = tmp_path / "plugins"
    compile_example(plugins)
    (plugins / "README.txt").write_text("sources and notes next to the beams are left alone\n")
    nodes = [node_factory("otp25"), node_factory("otp28")]
    beamside = start_beamside(
        beamside_procs, tmp_path, nodes, cookie_file, extra={"plugins": {"directory": str(plugins)}}
    )
    for node in nodes:
        beamside.wait_until(
            lambda n=node: beamside.value("erlang_plugin_example_registered", node=n.name),
            30,
            f"the example plugin's series of {node.name}",
        )
        assert node.eval("code:is_loaded(beamside_plugin_example) =/= false.") == "true"
    body = beamside.exposition().decode()
    lines = [x for x in body.splitlines() if x.startswith("erlang_plugin_example_")]
    queue = [x for x in lines if x.startswith("erlang_plugin_example_process_message_queue_len{")]
    assert any('process="code_server"' in x for x in queue), lines
    assert any(x.startswith("erlang_plugin_example_process_memory_bytes{") for x in lines)
    assert "beamside_agent_section_error{" not in body
    lint = promtool_check_metrics(body.encode())
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert beamside.terminate() == 0
    for node in nodes:
        assert node.eval(RESIDUE) == NO_RESIDUE, node.name


def test_a_plugin_directory_beamside_cannot_use(tmp_path: Path) -> None:
    plugins = tmp_path / "plugins"
    beam = compile_example(plugins)

    def problems(directory: object) -> str:
        config = tmp_path / "beamside.yaml"
        config.write_text(
            "cluster: c\ntargets:\n  - nodes: [a@127.0.0.1]\n    cookie_env: C\n"
            f"plugins: {{directory: {directory}}}\n"
        )
        with pytest.raises(ConfigError) as raised:
            load_config(config)
        return str(raised.value)

    assert "plugins.directory: " in problems(tmp_path / "none")
    assert "is not a directory" in problems(tmp_path / "none")
    (plugins / "Beamside_Plugin_X.beam").write_bytes(beam.read_bytes())
    assert "Beamside_Plugin_X.beam: a plugin's module is named" in problems(plugins)
    (plugins / "Beamside_Plugin_X.beam").unlink()
    (plugins / "beamside_plugin_text.beam").write_text("not compiled\n")
    assert "beamside_plugin_text.beam: not a BEAM file" in problems(plugins)
    (plugins / "beamside_plugin_text.beam").unlink()
    (plugins / "beamside_plugin_ranch.beam").write_bytes(beam.read_bytes())
    assert "a built-in plugin has that name" in problems(plugins)
