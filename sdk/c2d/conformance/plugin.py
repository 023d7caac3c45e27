"""The conformance suite's pytest plugin: options, the engine under test, and its fixtures.

Loaded by ``python -m c2d.conformance`` (through the package's conftest),
by ``pytest -p c2d.conformance.plugin``, or by the package's conftest when
pytest collects ``c2d.conformance`` some other way.

Most tests share one configured plugin process (the ``engine`` fixture,
session-scoped: starting a plugin costs about a second). Tests that need a
process of their own (before Configure, draining, a crash) take
``fresh_engine``, which starts one and stops it at the end of the test.
"""

from __future__ import annotations

import os
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Protocol

import pytest

from c2d.conformance import CONFIG_ENV, ENGINE_ENV
from c2d.conformance.harness import (
    JOB_RUN_TIMEOUT,
    EngineFactory,
    EngineProcess,
    EventLoopThread,
    Target,
    WatchResult,
)
from c2d.engine.v1 import engine_pb2
from c2d.plugin.discovery import find_engine

USAGE_EXIT = 4  # pytest.ExitCode.USAGE_ERROR


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("c2d-conformance", "c2d engine conformance suite")
    group.addoption(
        "--c2d-engine",
        dest="c2d_engine",
        default=os.environ.get(ENGINE_ENV) or None,
        metavar="NAME",
        help=f"the installed engine to check (an EngineSpec name; default: ${ENGINE_ENV})",
    )
    group.addoption(
        "--c2d-config",
        dest="c2d_config",
        default=os.environ.get(CONFIG_ENV) or None,
        metavar="FILE.toml",
        help="the engine's config as a TOML file whose top-level table is the config "
        f"(default: ${CONFIG_ENV}, else the engine's dev_config, else its default_config)",
    )


def load_target(name: str | None, config_path: str | None) -> Target:
    """The engine under test with its config; raises pytest.UsageError saying what is wrong."""
    if not name:
        raise pytest.UsageError(
            f"name the engine to check: --c2d-engine NAME (or ${ENGINE_ENV}=NAME), "
            "e.g. python -m c2d.conformance NAME"
        )
    try:
        found = find_engine(name)
    except LookupError as exc:
        raise pytest.UsageError(str(exc)) from None
    spec = found.spec
    config: dict[str, Any]
    if config_path:
        try:
            config = tomllib.loads(Path(config_path).read_text())
        except (OSError, tomllib.TOMLDecodeError) as exc:
            raise pytest.UsageError(f"cannot read the engine config {config_path}: {exc}") from None
        source = config_path
    elif spec.dev_config is not None:
        config, source = dict(spec.dev_config), "the EngineSpec's dev_config"
    else:
        config, source = dict(spec.default_config), "the EngineSpec's default_config"
    return Target(
        spec=spec,
        config=config,
        config_source=source,
        distribution=f"{found.distribution} {found.distribution_version}",
    )


_TARGET_KEY = pytest.StashKey[Target]()


def pytest_configure(config: pytest.Config) -> None:
    """Checks the engine name early, so a typo is one clear usage error and not N failed tests."""
    name = config.getoption("c2d_engine", None)
    if name:
        config.stash[_TARGET_KEY] = load_target(name, config.getoption("c2d_config", None))


def pytest_report_header(config: pytest.Config) -> list[str]:
    target = config.stash.get(_TARGET_KEY, None)
    if target is None:
        return []
    return [
        f"c2d engine: {target.name} ({target.distribution}), argv: {' '.join(target.spec.argv)}",
        f"c2d engine config: {target.config} (from {target.config_source})",
    ]


@pytest.fixture(scope="session")
def target(pytestconfig: pytest.Config) -> Target:
    """The engine under test (from ``--c2d-engine``) and its config."""
    found = pytestconfig.stash.get(_TARGET_KEY, None)
    if found is not None:
        return found
    try:
        return load_target(
            pytestconfig.getoption("c2d_engine", None), pytestconfig.getoption("c2d_config", None)
        )
    except pytest.UsageError as exc:
        pytest.exit(str(exc), returncode=USAGE_EXIT)


@pytest.fixture(scope="session")
def engine_loop() -> Iterator[EventLoopThread]:
    loop = EventLoopThread()
    yield loop
    loop.close()


@pytest.fixture(scope="session")
def engines(
    target: Target, engine_loop: EventLoopThread, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[EngineFactory]:
    """Starts plugin processes; every one still running at the end of the session is stopped."""
    factory = EngineFactory(target, engine_loop, tmp_path_factory.mktemp("c2d-engine"))
    yield factory
    factory.close()


@pytest.fixture(scope="session")
def engine(engines: EngineFactory) -> Iterator[EngineProcess]:
    """The shared, configured plugin process."""
    process = engines.start(configure=True)
    yield process
    engines.close([process])


class FreshEngine(Protocol):
    def __call__(
        self, *, configure: bool = True, state_dir: str | None = None, host_id: str | None = None
    ) -> EngineProcess: ...


@pytest.fixture
def fresh_engine(engines: EngineFactory) -> Iterator[FreshEngine]:
    """Starts plugin processes of the test's own; all are stopped when the test ends."""
    mine: list[EngineProcess] = []

    def start(
        *, configure: bool = True, state_dir: str | None = None, host_id: str | None = None
    ) -> EngineProcess:
        process = engines.start(configure=configure, state_dir=state_dir, host_id=host_id)
        mine.append(process)
        return process

    yield start
    engines.close(mine)


class FinishedJob:
    """A job that ran to its end on the shared engine, and what WatchJob showed live."""

    def __init__(self, spec: engine_pb2.JobSpec, handle: engine_pb2.JobHandle, watched: WatchResult) -> None:
        self.spec = spec
        self.handle = handle
        self.watched = watched

    @property
    def job_id(self) -> str:
        return self.spec.job_id

    @property
    def events(self) -> list[engine_pb2.JobEvent]:
        return self.watched.events


HELLO_COMMAND = 'echo hello > "$C2D_DATA/outputs/hello.txt"; echo hello'


@pytest.fixture(scope="session")
def hello_job(engine: EngineProcess) -> FinishedJob:
    """The hello job, run once and watched live to its end; several tests inspect it afterwards."""
    spec, handle = engine.run(HELLO_COMMAND)
    return FinishedJob(spec, handle, engine.watch(spec.job_id, timeout=JOB_RUN_TIMEOUT))
