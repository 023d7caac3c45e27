"""Fixtures shared by the whole test suite.

Docker: tests that need an engine take the ``docker_client`` fixture or carry the ``docker``
marker. With no engine answering they skip, except when ``C2D_REQUIRE_DOCKER=1`` (CI sets it):
then they fail, so that CI never goes green by skipping the real-engine tests.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import c2d  # noqa: F401  (first: it turns gRPC's fork handlers off before anything imports grpc)

REPO_ROOT = Path(__file__).resolve().parent.parent


def docker_required() -> bool:
    return os.environ.get("C2D_REQUIRE_DOCKER") == "1"


@functools.cache
def _docker_problem() -> str | None:
    """Why no Docker engine can be used, or None when one answers (asked once per process)."""
    try:
        import docker
    except ImportError as exc:
        return f"the docker Python package is not installed ({exc})"
    try:
        client = docker.from_env(timeout=10)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"no Docker engine answers ({type(exc).__name__}: {exc})"
    return None


def _skip_or_fail_without_docker() -> None:
    problem = _docker_problem()
    if problem is None:
        return
    if docker_required():
        pytest.fail(
            f"C2D_REQUIRE_DOCKER=1: CI requires a Docker engine, but {problem}. "
            "Run bash scripts/setup-dev (as root it installs and starts dockerd).",
            pytrace=False,
        )
    pytest.skip(f"needs a Docker engine: {problem} (bash scripts/setup-dev starts one as root)")


@pytest.fixture(scope="session")
def repo_root() -> Path:
    """The checkout's root folder."""
    return REPO_ROOT


@pytest.fixture(scope="session")
def docker_client() -> Iterator[Any]:
    """A ``docker.DockerClient`` talking to a live engine; skips (or fails in CI) without one."""
    _skip_or_fail_without_docker()
    import docker

    client = docker.from_env(timeout=120)
    yield client
    client.close()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Tests using docker_client are docker tests, so that -m "not docker" leaves them out.
    for item in items:
        if "docker_client" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


def pytest_runtest_setup(item: pytest.Item) -> None:
    # A test marked docker that does not take docker_client gets the same skip-or-fail.
    if item.get_closest_marker("docker") and "docker_client" not in getattr(item, "fixturenames", ()):
        _skip_or_fail_without_docker()


@pytest.fixture(scope="session")
def busybox_image(docker_client: Any) -> str:
    """c2d-test-busybox:1: static busybox, root by default, user c2d = uid 1000 in /etc/passwd."""
    import docker_images

    return docker_images.busybox_image(docker_client)


@pytest.fixture(scope="session")
def pod_image(docker_client: Any) -> str:
    """c2d-pod:<content tag>, built offline when missing (~50 s cold, ~2 s after a pods change)."""
    import docker_images

    return docker_images.pod_image(docker_client)


@pytest.fixture(scope="session")
def python_image(pod_image: str) -> str:
    """An image with python3 3.11 for Python algorithms (the pod image; default user 1000)."""
    return pod_image


@pytest.fixture(scope="session")
def bridge_gateway(docker_client: Any) -> str:
    """Where a test server must listen for containers to reach it (172.17.0.1 here)."""
    import docker_images

    return docker_images.bridge_gateway(docker_client)


# Kubernetes: the API server double (tests/k8s_double) ----------------------------------------

K8S_NODE_ALLOCATABLE = {
    "cpu": "4",
    "memory": "8Gi",
    "ephemeral-storage": "20Gi",
    "pods": "110",
    "nvidia.com/gpu": "2",
}


@pytest.fixture
def k8s_api(docker_client: Any) -> Iterator[Any]:
    """A started ``k8s_double.ApiServerDouble`` whose node runs pods in Docker, closed after the test.

    Its node has ``K8S_NODE_ALLOCATABLE`` (4 CPUs, 8Gi, 2 ``nvidia.com/gpu``); ``.url`` is the base
    URL, ``.write_kubeconfig(path)`` a kubeconfig for another process. Closing removes every
    container, volume and directory it created. Needs Docker (skips, or fails in CI, without it).
    """
    from k8s_double import ApiServerDouble

    double = ApiServerDouble(docker_client, node_allocatable=K8S_NODE_ALLOCATABLE)
    double.start()
    try:
        yield double
    finally:
        double.close()


@pytest.fixture
def k8s_kubeconfig(k8s_api: Any, tmp_path: Path) -> Path:
    """A kubeconfig file (context ``c2d-double``) pointing at the ``k8s_api`` double."""
    return k8s_api.write_kubeconfig(tmp_path / "kubeconfig", context="c2d-double")


# Bacalhau: the orchestrator API double (tests/bacalhau_double) ---------------------------------


@pytest.fixture
def bacalhau_allowed_dir(tmp_path: Path) -> Path:
    """A folder the ``bacalhau_api`` double's node allow-lists read-write (``<dir>/**:rw``)."""
    allowed = tmp_path / "bacalhau-allowed"
    allowed.mkdir()
    return allowed


@pytest.fixture
def bacalhau_api(docker_client: Any, bacalhau_allowed_dir: Path) -> Iterator[Any]:
    """A started ``bacalhau_double.BacalhauDouble`` (node label ``c2d-node=double``), closed after the test.

    Its node allow-lists ``bacalhau_allowed_dir`` read-write and has ``DEFAULT_CAPACITY`` (4 CPUs,
    8 GiB, 20 GiB disk, no GPU); ``.url`` is the API's base URL. Closing removes every container
    and file it made. Needs Docker (skips, or fails in CI, without it).
    """
    from bacalhau_double import BacalhauDouble

    double = BacalhauDouble(
        docker_client, allowed_paths=[f"{bacalhau_allowed_dir}/**:rw"], node_labels={"c2d-node": "double"}
    )
    double.start()
    try:
        yield double
    finally:
        double.close()


# Jobs left running: a stub job outlives its node by design (a restarted node recovers it), so a
# test whose node it never restarts, or a test that failed half-way, leaves its job's processes
# behind. Whatever still runs in this session's temporary folders when the session ends is killed.


@pytest.fixture(scope="session", autouse=True)
def no_job_outlives_the_session(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    yield
    kill_processes_under(tmp_path_factory.getbasetemp())


def kill_processes_under(folder: Path) -> list[int]:
    """SIGKILLs the process group of every process whose command line or working folder lies in
    ``folder`` (this process and its ancestors excepted, and pytest's own group left alive); the
    pids found."""
    import signal

    mark = str(folder.resolve())
    spared = _ancestors(os.getpid())
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) in spared:
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if f"{mark}/" in command or f"{cwd}/".startswith(f"{mark}/"):
            found.append(int(entry.name))
    ours = os.getpgid(0)
    for pid in found:
        try:
            group = os.getpgid(pid)
            if group == ours:  # started in pytest's own group (a node): that process alone
                os.kill(pid, signal.SIGKILL)
            else:
                os.killpg(group, signal.SIGKILL)
        except OSError:
            continue
    return found


def _ancestors(pid: int) -> set[int]:
    """``pid`` and the processes above it (never killed: pytest itself, its xdist controller)."""
    chain = set()
    while pid > 1 and pid not in chain:
        chain.add(pid)
        try:
            pid = int(Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[1])
        except (OSError, ValueError, IndexError):
            break
    return chain


from image_registry import image_registry, registry_images  # noqa: E402,F401  (a registry with htpasswd auth)
from pg import postgres_url  # noqa: E402,F401  (a fixture: a fresh PostgreSQL database per test)


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest) -> str | None:
    """None (SQLite under the data dir) or a fresh PostgreSQL database's URL: the store both ways."""
    if request.param == "sqlite":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture(scope="module")
def anvil() -> Iterator[Any]:
    """A dev chain (anvil from ``npm ci``) for the module's tests; skips without one, fails in CI."""
    from host.chain.devchain import find_anvil, start_dev_chain

    if find_anvil() is None:
        if os.environ.get("CI"):
            pytest.fail("anvil is missing: scripts/setup-dev installs it with npm ci")
        pytest.skip("anvil is not installed (npm ci)")
    with start_dev_chain("anvil") as chain:
        yield chain
