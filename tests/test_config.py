"""Configuration: file, environment and command-line layering, and clear errors."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, is_dataclass
from pathlib import Path
from typing import Any

import pytest

from c2d_bacalhau_engine import config as bacalhau_config
from c2d_docker_engine import config as docker_config
from c2d_external_stub import config as stub_config
from c2d_external_stub.machine import MachineSize
from c2d_k8s_engine import config as k8s_config
from host.config import DEFAULTS, ConfigError, load_config


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
        ("[http]\ntoken_max_hours = 721\n", "http.token_max_hours must be more than 0 and at most 720"),
        (
            "[http]\ntoken_hours = 48\ntoken_max_hours = 24\n",
            "http.token_hours must be more than 0 and at most",
        ),
        ("[http]\ntoken_hours = 0\n", "http.token_hours must be more than 0"),
        ('[chain]\nescrow_kind = "ocean-node"\n', "chain.escrow_kind must be c2d or ocean, got 'ocean-node'"),
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


# docs/config.example.toml -----------------------------------------------------------------------

EXAMPLE_CONFIG = Path(__file__).resolve().parent.parent / "docs" / "config.example.toml"
# A commented-out setting or table header ("# key = value", "# [[a.b]]"); prose never has " = ".
COMMENTED_SETTING = re.compile(r'^# ?((?:\[\[?[\w."-]+\]\]?)|(?:[A-Za-z_]\w* = .*))$', re.MULTILINE)


def example_config(every_setting: bool) -> dict[str, Any]:
    """docs/config.example.toml parsed as it is, or with every commented setting switched on."""
    text = EXAMPLE_CONFIG.read_text()
    return tomllib.loads(COMMENTED_SETTING.sub(r"\1", text) if every_setting else text)


def test_example_config_documents_every_default() -> None:
    """docs/config.example.toml is what operators copy: it must load and name every setting."""
    example = example_config(every_setting=True)
    load_config(EXAMPLE_CONFIG, environ={})
    # The node's own tables; [engines.*] are the engines' (below), [environments.*] the operator's.
    sections = [name for name in DEFAULTS if name not in ("engines", "environments")]
    assert {"node", "plugins", "storage", "chain", "limits"} <= set(sections)
    for section in sections:
        assert set(example.get(section, {})) == set(DEFAULTS[section]), (
            f"[{section}] in the example differs from the defaults"
        )


def test_example_config_with_every_commented_setting_on_still_loads(tmp_path: Path) -> None:
    """The "# key = value" lines are settings an operator may switch on by deleting the "# "."""
    path = tmp_path / "node.toml"
    path.write_text(COMMENTED_SETTING.sub(r"\1", EXAMPLE_CONFIG.read_text()))
    config = load_config(path, environ={})
    assert config.plugins["load"] == ["external_stub"]
    assert config.engine_section("docker") == example_config(every_setting=True)["engines"]["docker"]


# The example's engine tables, read by each engine's own parser.


@dataclass(frozen=True)
class EngineConfig:
    """How one engine plugin reads its [engines.NAME] table, and what it knows of."""

    name: str
    parse: Callable[[Mapping[str, Any]], Any]  # the plugin's own parser: a settings dataclass
    settings: type  # that dataclass
    environment: type  # the dataclass of one [[engines.NAME.environments]] entry
    top_level_keys: frozenset[str]
    environment_keys: frozenset[str]
    defaults: Mapping[str, Any]  # the least table the parser takes: what the engine does unconfigured


STUB_MACHINE = MachineSize(cpu=4.0, ram_gib=8.0, disk_gib=20.0)
ENGINES = [
    EngineConfig(
        "docker",
        docker_config.parse_settings,
        docker_config.DockerSettings,
        docker_config.EnvironmentSettings,
        docker_config.TOP_LEVEL_KEYS,
        docker_config.ENVIRONMENT_KEYS,
        {},
    ),
    EngineConfig(
        "kubernetes",
        k8s_config.parse_settings,
        k8s_config.KubernetesSettings,
        k8s_config.EnvironmentSettings,
        k8s_config.TOP_LEVEL_KEYS,
        k8s_config.ENVIRONMENT_KEYS,
        {},
    ),
    EngineConfig(
        "bacalhau",
        bacalhau_config.parse_settings,
        bacalhau_config.BacalhauSettings,
        bacalhau_config.EnvironmentSettings,
        bacalhau_config.TOP_LEVEL_KEYS,
        bacalhau_config.ENVIRONMENT_KEYS,
        {},
    ),
    EngineConfig(
        "external_stub",
        lambda raw: stub_config.parse_config(raw, STUB_MACHINE),
        stub_config.StubConfig,
        stub_config.EnvironmentConfig,
        stub_config.TOP_LEVEL_KEYS,
        stub_config.ENVIRONMENT_KEYS,
        {"enabled": True},  # off unless enabled; the example enables it for development
    ),
]


def _settings_known(engine: EngineConfig) -> set[str]:
    """Every top-level key the engine reads: its dataclass's fields and its list of known keys."""
    # gpu_sysfs is not a key: the Docker engine builds it from sysfs_gpu_vendors, gpu_groups and host_root.
    return ({f.name for f in fields(engine.settings)} | engine.top_level_keys) - {"ignored_keys", "gpu_sysfs"}


@pytest.mark.parametrize("engine", ENGINES, ids=[e.name for e in ENGINES])
def test_example_engine_table_is_accepted_and_holds_the_engines_defaults(engine: EngineConfig) -> None:
    table = example_config(every_setting=False)["engines"][engine.name]
    parsed = engine.parse(table)
    assert parsed.ignored_keys == (), f"[engines.{engine.name}] has keys the engine ignores"
    assert parsed == engine.parse(engine.defaults), (
        f"[engines.{engine.name}] in the example sets a value that is not the engine's default"
    )


@pytest.mark.parametrize("engine", ENGINES, ids=[e.name for e in ENGINES])
def test_example_engine_table_names_every_setting_the_engine_knows(engine: EngineConfig) -> None:
    table = example_config(every_setting=True)["engines"][engine.name]
    parsed = engine.parse(table)  # every commented setting is one the engine accepts
    assert parsed.ignored_keys == (), f"[engines.{engine.name}] has keys the engine ignores"
    missing = sorted(_settings_known(engine) - set(table))
    assert not missing, f"[engines.{engine.name}] in docs/config.example.toml lacks {missing}"
    for name in table.keys() & {f.name for f in fields(parsed)}:
        value = getattr(parsed, name)
        if is_dataclass(value):  # a nested table (registry_auth): every one of its keys too
            lacking = sorted({f.name for f in fields(value)} - set(table[name]))
            assert not lacking, f"[engines.{engine.name}] {name} in the example lacks {lacking}"
    (environment,) = table["environments"]
    known = {f.name for f in fields(engine.environment)} | engine.environment_keys
    missing = sorted(known - set(environment))
    assert not missing, f"[[engines.{engine.name}.environments]] in the example lacks {missing}"
