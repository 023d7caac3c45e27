"""Docker images (and an address) for tests that use a real engine; no registry is ever needed.

- :func:`busybox_image`: ``c2d-test-busybox:1``, a static busybox with its applets, ``/etc/passwd``
  naming root, ``c2d`` (uid 1000) and nobody; imported in well under a second, reused when present.
- :func:`pod_image`: the pod image ``c2d-pod:<content tag>`` (python3 3.11, the pods, the SDK), built
  offline on first use (about a minute cold, seconds with the cache) and reused while up to date.
- :func:`python_image`: an image with python3 for Python algorithms: the pod image itself.
- :func:`bridge_gateway`: the host's address on the default bridge (``172.17.0.1``), where a test
  server must listen for containers to reach it.

Plain functions taking a ``docker.DockerClient``; the session fixtures wrapping them live in
tests/conftest.py.
"""

from __future__ import annotations

import contextlib
import io
import ipaddress
import shutil
import struct
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

import pods.image

BUSYBOX_IMAGE = "c2d-test-busybox:1"
TEST_UID = 1000
TEST_USER = "c2d"
_PASSWD = (
    "root:x:0:0:root:/root:/bin/sh\n"
    f"{TEST_USER}:x:{TEST_UID}:{TEST_UID}:test user:/home/{TEST_USER}:/bin/sh\n"
    "nobody:x:65534:65534:nobody:/nonexistent:/bin/false\n"
)
_GROUP = f"root:x:0:\n{TEST_USER}:x:{TEST_UID}:\nnogroup:x:65534:\n"


def _image_exists(client: Any, name: str) -> bool:
    import docker.errors

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


# busybox --------------------------------------------------------------------------------------


def static_busybox() -> Path:
    """The host's busybox binary; it must be statically linked to run in an image of its own."""
    for candidate in ("/bin/busybox", shutil.which("busybox")):
        if candidate and Path(candidate).is_file():
            path = Path(candidate).resolve()
            if _is_static(path):
                return path
            raise RuntimeError(f"{path} is dynamically linked: apt-get install busybox-static")
    raise RuntimeError("busybox is not installed: apt-get install busybox-static")


def _is_static(path: Path) -> bool:
    """No PT_INTERP program header: the ELF file needs no dynamic loader."""
    with open(path, "rb") as handle:
        head = handle.read(64)
        if head[:4] != b"\x7fELF" or head[4] != 2:  # 64-bit ELF only
            return False
        endian = "<" if head[5] == 1 else ">"
        (phoff,) = struct.unpack_from(endian + "Q", head, 0x20)
        phentsize, phnum = struct.unpack_from(endian + "HH", head, 0x36)
        handle.seek(phoff)
        table = handle.read(phentsize * phnum)
    return all(struct.unpack_from(endian + "I", table, i * phentsize)[0] != 3 for i in range(phnum))


def _busybox_rootfs(busybox: Path) -> bytes:
    applets = subprocess.run(
        [str(busybox), "--list"], capture_output=True, text=True, check=True
    ).stdout.split()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(
            name: str,
            kind: bytes = tarfile.DIRTYPE,
            mode: int = 0o755,
            data: bytes = b"",
            target: str = "",
            uid: int = 0,
        ) -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.uid, info.gid = kind, mode, int(time.time()), uid, uid
            info.linkname = target
            info.size = len(data) if kind == tarfile.REGTYPE else 0
            tar.addfile(info, io.BytesIO(data) if kind == tarfile.REGTYPE else None)

        for folder in ("bin", "etc", "root", "home", "proc", "sys", "dev", "usr", "var"):
            add(folder)
        add("tmp", mode=0o1777)
        add(f"home/{TEST_USER}", uid=TEST_UID)
        add("sbin", tarfile.SYMTYPE, 0o777, target="bin")
        add("usr/bin", tarfile.SYMTYPE, 0o777, target="../bin")
        add("usr/sbin", tarfile.SYMTYPE, 0o777, target="../bin")
        add("bin/busybox", tarfile.REGTYPE, 0o755, busybox.read_bytes())
        for applet in sorted(set(applets) - {"busybox"}):
            add(f"bin/{applet}", tarfile.SYMTYPE, 0o777, target="busybox")
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP.encode())
    return buffer.getvalue()


def busybox_image(client: Any, name: str = BUSYBOX_IMAGE) -> str:
    """``c2d-test-busybox:1``: sh and the busybox applets, root by default, user ``c2d`` (1000) known.

    Built from the host's static busybox by ``docker import`` (no registry), reused when present.
    """
    if _image_exists(client, name):
        return name
    repository, _, tag = name.rpartition(":")
    client.api.import_image_from_data(
        _busybox_rootfs(static_busybox()),
        repository=repository,
        tag=tag,
        changes=["ENV PATH=/bin", 'CMD ["sh"]'],
    )
    if not _image_exists(client, name):
        raise RuntimeError(f"docker import of {name} did not produce the image")
    return name


# python / the pod image -----------------------------------------------------------------------


def pod_image(client: Any) -> str:
    """``c2d-pod:<content tag>``, built offline when missing (see ``python -m pods.image``)."""
    return pods.image.ensure(client, build=True)


def python_image(client: Any) -> str:
    """An image with python3 (3.11) to run Python algorithms in: the pod image (default user 1000)."""
    return pod_image(client)


# networking -----------------------------------------------------------------------------------


def bridge_gateway(client: Any) -> str:
    """The host's IPv4 address on Docker's default bridge: containers reach a server bound there."""
    network = client.networks.get("bridge").attrs
    configs = (network.get("IPAM") or {}).get("Config") or []
    for config in configs:
        if config.get("Gateway"):
            return str(config["Gateway"]).split("/")[0]
    interface = (network.get("Options") or {}).get("com.docker.network.bridge.name", "docker0")
    with contextlib.suppress(ImportError):
        from host.netaddr import interface_ipv4

        address = interface_ipv4(interface)
        if address:
            return address
    for config in configs:
        if config.get("Subnet"):
            return str(next(ipaddress.ip_network(config["Subnet"]).hosts()))
    return "172.17.0.1"
