"""Configuration: file, environment and command-line layering, and clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from host.config import ConfigError, load_config


def test_defaults_without_file_are_development() -> None:
    config = load_config(environ={})
    assert config.development
    assert config.node["listen"] == "127.0.0.1:8470"


def test_layering_file_then_env_then_overrides(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[node]\nlisten = "0.0.0.0:9000"\nlog_level = "debug"\n[engines.external_stub]\nenabled = true\n'
    )
    config = load_config(
        path,
        environ={
            "C2D_NODE__LOG_LEVEL": "warning",
            "C2D_PLUGINS__CRASH_LOOP_RESTARTS": "9",
            "C2D_LOAD_PLUGINS": "x",
        },
        overrides={"node.listen": "127.0.0.1:1234"},
    )
    assert not config.development
    assert config.node["listen"] == "127.0.0.1:1234"
    assert config.node["log_level"] == "warning"
    assert config.plugins["crash_loop_restarts"] == 9
    assert config.engine_section("external_stub") == {"enabled": True}
    assert config.env_overrides == ["C2D_NODE__LOG_LEVEL", "C2D_PLUGINS__CRASH_LOOP_RESTARTS"]


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[node]\nlisten = "nowhere"\n', "node.listen must be HOST:PORT"),
        ("[plugins]\nhealth_failures = -1\n", "plugins.health_failures must be a non-negative number"),
        ('[plugins]\nload = "external_stub"\n', "plugins.load must be a list"),
        ("[node\n", "is not valid TOML"),
        ('[engines]\nexternal_stub = "on"\n', "[engines.external_stub] must be a table"),
    ],
)
def test_bad_config_is_refused_with_a_clear_message(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("]", r"\]")):
        load_config(path, environ={}).engine_section("external_stub")


def test_sections_are_typed_records_of_the_merged_values(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(
        '[chain]\nrpc_url = "http://127.0.0.1:1"\nchain_id = 5\nescrow_address = "0xE"\n'
        'tokens = ["0xA", "0xB"]\n[compute]\nmax_queue_seconds = 60\n'
        '[security]\nallow_hosts = ["data.lan"]\n'
    )
    config = load_config(
        path,
        environ={
            "C2D_CHAIN__CONFIRMATIONS": "2",
            "C2D_PODS__ADVERTISE": "10.0.0.1:8471",
            # TOML would read this as a hex integer; the setting is a string, so it stays text.
            "C2D_CHAIN__ESCROW_ADDRESS": "0x5FbDB2315678afecb367f032d93F642f64180aa3",
        },
    )
    assert config.chain.rpc_url == "http://127.0.0.1:1"
    assert config.chain.escrow_address == "0x5FbDB2315678afecb367f032d93F642f64180aa3"
    assert (config.chain.chain_id, config.chain.confirmations) == (5, 2)
    assert config.chain.tokens == ("0xA", "0xB")
    assert config.chain.withdraw_earnings is True  # the default, untouched by the file
    assert config.compute.max_queue_seconds == 60.0
    assert isinstance(config.compute.max_queue_seconds, float)
    assert config.pods.advertise == "10.0.0.1:8471"
    assert config.security.allow_hosts == ("data.lan",)
    assert config.security.allow_networks == ()
    assert config.storage.database_url == ""
    assert config.dev_chain() is None  # a chain is configured


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        ('[chain]\ndev_port = "8545"\n', "chain.dev_port must be a whole number, got '8545'"),
        ("[chain]\nwithdraw_earnings = 1\n", "chain.withdraw_earnings must be true or false, got 1"),
        ("[compute]\nmax_queue_seconds = true\n", "compute.max_queue_seconds must be a number, got True"),
        ("[compute]\nmax_queue_seconds = 0\n", "compute.max_queue_seconds must be between 1 and 4294967295"),
        ("[compute]\ndefault_max_duration_seconds = 1.5\n", "must be a whole number, got 1.5"),
        ("[pods]\nlisten = 8471\n", "pods.listen must be a string, got 8471"),
        ('[storage]\ndatabase_url = ["x"]\n', "storage.database_url must be a string"),
    ],
)
def test_section_values_of_the_wrong_type_are_refused(tmp_path: Path, toml: str, message: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(toml)
    with pytest.raises(ConfigError, match=re.escape(message)):
        load_config(path, environ={})


def test_cli_reports_config_errors_without_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "host", "--data-dir", str(tmp_path), "--listen", "bad"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 2
    assert "node.listen must be HOST:PORT" in result.stderr
    assert "Traceback" not in result.stderr


def test_list_plugins_shows_installed_engines_and_honours_allowlist(tmp_path: Path) -> None:
    def listing(env: dict[str, str]) -> str:
        import os

        return subprocess.run(
            [sys.executable, "-m", "host", "--list-plugins"],
            capture_output=True,
            text=True,
            timeout=30,
            env={**os.environ, **env},
            check=True,
        ).stdout

    assert "external_stub" in listing({})
    assert "c2d-external-stub" in listing({})
    assert "external_stub" not in listing({"C2D_LOAD_PLUGINS": "some_other_engine"})


def test_example_config_documents_every_default(repo_root: Path) -> None:
    """docs/config.example.toml is what operators copy: it must load and name every setting."""
    import tomllib

    from host.config import DEFAULTS

    example = tomllib.loads((repo_root / "docs" / "config.example.toml").read_text())
    load_config(repo_root / "docs" / "config.example.toml", environ={})
    for section in ("node", "plugins", "storage", "pods", "assets", "compute"):
        documented = set(example[section]) | ({"load"} if section == "plugins" else set())
        assert documented == set(DEFAULTS[section]), f"[{section}] in the example differs from the defaults"
