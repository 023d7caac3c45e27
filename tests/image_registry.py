"""A real image registry for tests: Debian's ``docker-registry`` with htpasswd auth, on loopback.

:func:`image_registry` (a session fixture, re-exported by tests/conftest.py) starts one on a free
``127.0.0.1`` port with one user, in a temporary folder, and stops it after the session;
:func:`registry_images` (per test) pushes images there and, after the test, removes what pulls
of them left on the daemon. Docker
pulls from a loopback registry over plain HTTP without any daemon setting, so nothing outside
the test changes. :meth:`Registry.push` puts a local image (one the tests built offline) there
under a new name and removes that name from the daemon again, so the next use must pull.

Without the ``docker-registry`` or ``htpasswd`` commands the tests skip, except under ``CI``,
where they fail (``apt-get install docker-registry apache2-utils``).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from nodeproc import free_port, wait_for

USERNAME = "c2d-test"
INSTALL_HINT = "apt-get install docker-registry apache2-utils"


@dataclass(frozen=True)
class Registry:
    """A running registry: where it is, who may use it, and what it logged."""

    server: str  # host:port, as image names and credentials name it
    username: str
    password: str
    log: Path

    def push(self, client: Any, local_image: str, name: str = "") -> str:
        """Pushes ``local_image`` as ``<server>/<name or a fresh one>:1``; the daemon keeps no such tag."""
        repository = f"{self.server}/c2d-test/{name or uuid.uuid4().hex[:12]}"
        client.images.get(local_image).tag(repository, "1")
        try:
            auth = {"username": self.username, "password": self.password, "serveraddress": self.server}
            for message in client.api.push(repository, tag="1", auth_config=auth, stream=True, decode=True):
                if isinstance(message, dict) and message.get("error"):
                    raise RuntimeError(f"push to the test registry failed: {message['error']}")
        finally:
            client.images.remove(f"{repository}:1")
        return f"{repository}:1"

    def forget(self, client: Any, image: str) -> None:
        """Removes every name of ``image``'s repository from the daemon (its tag, its repo digest)
        that a pull made, so the daemon's images are as before: a shared image (the busybox one)
        keeps no digest of this registry, which other tests would see as where it came from."""
        import docker.errors

        repository = image.rpartition(":")[0]
        try:
            attrs = client.images.get(image).attrs
        except docker.errors.ImageNotFound:
            return
        names = [
            n
            for n in (attrs.get("RepoTags") or []) + (attrs.get("RepoDigests") or [])
            if n.startswith(f"{repository}:") or n.startswith(f"{repository}@")
        ]
        for name in names:
            with contextlib.suppress(docker.errors.ImageNotFound):
                client.images.remove(name)


def _missing() -> str | None:
    absent = [tool for tool in ("docker-registry", "htpasswd") if shutil.which(tool) is None]
    return f"needs {' and '.join(absent)} ({INSTALL_HINT})" if absent else None


def _answers(url: str) -> bool:
    """True once the registry answers its API root (401 without credentials: it is up)."""
    try:
        urllib.request.urlopen(url, timeout=1)
    except urllib.error.HTTPError as exc:
        return exc.code == 401
    except OSError:
        return False
    return False


def start(folder: Path, password: str) -> tuple[Registry, subprocess.Popen[bytes]]:
    """A registry serving from ``folder``; the caller stops the process."""
    folder.mkdir(parents=True, exist_ok=True)
    htpasswd = folder / "htpasswd"
    entry = subprocess.run(
        ["htpasswd", "-Bbn", USERNAME, password], check=True, capture_output=True, text=True
    ).stdout
    htpasswd.write_text(entry)
    server = f"127.0.0.1:{free_port()}"
    config = folder / "config.yml"
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: info\n"
        f"storage:\n  filesystem:\n    rootdirectory: {folder / 'data'}\n"
        f"http:\n  addr: {server}\n"
        f"auth:\n  htpasswd:\n    realm: c2d-test\n    path: {htpasswd}\n"
    )
    log = folder / "registry.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            ["docker-registry", "serve", str(config)], stdin=subprocess.DEVNULL, stdout=out, stderr=out
        )
    registry = Registry(server=server, username=USERNAME, password=password, log=log)
    try:
        wait_for(
            lambda: process.poll() is not None or _answers(f"http://{server}/v2/"),
            30,
            "the test registry to answer",
        )
    except AssertionError:
        process.kill()
        raise
    if process.poll() is not None:
        raise RuntimeError(f"docker-registry exited: {log.read_text()[-2000:]}")
    return registry, process


@pytest.fixture(scope="session")
def image_registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    """A registry with htpasswd auth on loopback, for the session; skips (fails in CI) without one."""
    problem = _missing()
    if problem is not None:
        if os.environ.get("CI"):
            pytest.fail(f"CI requires an image registry: {problem}", pytrace=False)
        pytest.skip(problem)
    password = f"pw-{uuid.uuid4().hex}"  # unique: grepping for it finds only leaks
    registry, process = start(tmp_path_factory.mktemp("registry"), password)
    try:
        yield registry
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture
def registry_images(image_registry: Registry, docker_client: Any) -> Iterator[Callable[[str], str]]:
    """``push(local_image) -> name in the registry``; what the test pulled of them is removed after."""
    pushed: list[str] = []

    def push(local_image: str) -> str:
        pushed.append(image_registry.push(docker_client, local_image))
        return pushed[-1]

    try:
        yield push
    finally:
        for image in pushed:
            image_registry.forget(docker_client, image)
