"""The offline route: Debian bookworm from its package archive, the dependencies from PyPI, no registry.

Two images, so that a change to the pods rebuilds in seconds:

``c2d-pod-base:<hash of the recipe and requirements.txt>``
    ``debootstrap --variant=minbase --include=python3,... bookworm`` (bookworm's
    python3 is 3.11), the locked wheels installed in a chroot by pip run from its
    own wheel, the user ``c2d`` (uid 1000), a ``.pth`` naming ``/opt/c2d/python``,
    docs, locales, apt lists and caches stripped; ``docker import``-ed as one layer.
``c2d-pod:<content tag>``
    ``docker build`` ``FROM`` that base (works offline): the sources copied to
    ``/opt/c2d/python``, compiled, checked to import, ``USER 1000:1000``.

The debootstrapped root filesystem (a tarball) and the wheels are kept in the
cache folder (``$C2D_CACHE_DIR/pod-image`` or ``~/.cache/c2d/pod-image``), so
that even a lost base image is rebuilt in seconds.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from pods.image import content, dockerio
from pods.image.errors import ImageBuildError

Log = Callable[[str], None]

BASE_REPOSITORY = "c2d-pod-base"
SUITE = "bookworm"  # its python3 is 3.11
PYTHON_VERSION = "3.11"
VARIANT = "minbase"
# python3; CA certificates for https inputs; /etc/services and /etc/protocols.
PACKAGES = ("python3", "ca-certificates", "netbase")
DEFAULT_MIRROR = "http://deb.debian.org/debian"
MIRROR_VARIABLE = "C2D_DEBIAN_MIRROR"
INSTALLER = "pip"  # run from its wheel in the chroot; never installed into the image
# Bump when the base recipe (this file's steps) changes: a new base image and rootfs tarball.
ROOTFS_RECIPE = "rootfs/1"
BASE_RECIPE = "base/1"

USER_NAME = "c2d"
UID = GID = 1000
SOURCE_DIR = "/opt/c2d/python"
CHROOT_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
WHEELS_IN_ROOT = "/tmp/c2d-wheels"

# Removed from the debootstrapped tree before it is cached (globs under the root).
ROOTFS_STRIP = (
    "var/cache/apt/*",
    "var/lib/apt/lists/*",
    "usr/share/doc/*",
    "usr/share/man/*",
    "usr/share/info/*",
    "usr/share/locale/*",
    "usr/share/lintian/*",
    "var/cache/debconf/*-old",
    "var/log/*",
)
# Removed from the installed packages: compiled extensions' sources and test suites.
SITE_STRIP_SUFFIXES = (".c", ".cpp", ".h", ".pyx", ".pxd")
SITE_STRIP_DIRS = ("tests",)

# The final image, FROM the base: the same steps as pods/Dockerfile after its pip install.
FINAL_DOCKERFILE = """\
FROM {base}
COPY sdk/c2d {source_dir}/c2d
COPY pods {source_dir}/pods
RUN python3 -m compileall -q {source_dir} && python3 -c "import pods.configuration, pods.publishing"
ENV PYTHONUNBUFFERED=1
USER {uid}:{gid}
"""
FINAL_DOCKERFILE_NAME = ".c2d-pod-offline.Dockerfile"


# Where things are -----------------------------------------------------------------------------


def arch() -> str:
    machine = platform.machine().lower()
    return {"amd64": "x86_64", "arm64": "aarch64"}.get(machine, machine)


def wheel_platforms() -> list[str]:
    """pip --platform tags a bookworm python3 (glibc 2.36) accepts: manylinux_2_36 down to manylinux1."""
    machine = arch()
    tags = [f"manylinux_2_{minor}_{machine}" for minor in range(36, 4, -1)]
    return [*tags, f"manylinux2014_{machine}", f"manylinux2010_{machine}", f"manylinux1_{machine}"]


def debian_mirror() -> str:
    """$C2D_DEBIAN_MIRROR, else the Debian archive apt is configured with here, else deb.debian.org."""
    if os.environ.get(MIRROR_VARIABLE):
        return os.environ[MIRROR_VARIABLE]
    for uri in _apt_uris():
        if uri.rstrip("/").endswith("/debian"):
            return uri.rstrip("/")
    return DEFAULT_MIRROR


def _apt_uris() -> Iterator[str]:
    apt = Path("/etc/apt")
    lists = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in lists:
        with contextlib.suppress(OSError):
            for line in path.read_text().splitlines():
                words = re.sub(r"\[[^]]*\]", "", line.split("#")[0]).split()
                if len(words) >= 2 and words[0] == "deb":
                    yield words[1]
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        with contextlib.suppress(OSError):
            for stanza in path.read_text().split("\n\n"):
                fields = dict(
                    line.split(":", 1)
                    for line in stanza.splitlines()
                    if ":" in line and not line.startswith("#")
                )
                if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes").strip() != "no":
                    yield from fields.get("URIs", "").split()


def cache_dir() -> Path:
    """``$C2D_CACHE_DIR/pod-image``, else ``$XDG_CACHE_HOME/c2d/pod-image`` (``~/.cache/c2d/pod-image``)."""
    if os.environ.get("C2D_CACHE_DIR"):
        root = Path(os.environ["C2D_CACHE_DIR"])
    else:
        root = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "c2d"
    path = root / "pod-image"
    path.mkdir(parents=True, exist_ok=True)
    return path


def _short_hash(*parts: object) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def rootfs_key() -> str:
    return _short_hash(ROOTFS_RECIPE, SUITE, VARIANT, PACKAGES, arch())


def wheels_key() -> str:
    return _short_hash(content.requirements().decode(), PYTHON_VERSION, wheel_platforms(), INSTALLER)


def base_tag() -> str:
    return _short_hash(BASE_RECIPE, rootfs_key(), wheels_key(), USER_NAME, UID, SOURCE_DIR)


def base_image_name() -> str:
    return f"{BASE_REPOSITORY}:{base_tag()}"


# Helpers ---------------------------------------------------------------------------------------


@contextlib.contextmanager
def _step(log: Log, what: str) -> Iterator[None]:
    log(f"{what} ...")
    started = time.monotonic()
    yield
    log(f"{what}: done in {time.monotonic() - started:.1f} s")


def _run(cmd: Sequence[str], what: str, *, env: dict[str, str] | None = None, hint: str = "") -> None:
    """Runs ``cmd``; on a failure an ImageBuildError naming ``what`` with the last lines it printed."""
    try:
        result = subprocess.run(list(cmd), capture_output=True, text=True, env=env, check=False)
    except FileNotFoundError as exc:
        raise ImageBuildError(f"{what}: {cmd[0]} is not installed{hint and '; ' + hint}") from exc
    if result.returncode != 0:
        lines = (result.stdout + result.stderr).strip().splitlines()[-25:]
        raise ImageBuildError(f"{what} failed (exit status {result.returncode}){hint and '; ' + hint}", lines)


def _require_root_tools() -> None:
    if os.geteuid() != 0:
        raise ImageBuildError(
            "the offline pod image build needs root (debootstrap and chroot); run it as root, "
            "or build from pods/Dockerfile where a registry is reachable (python -m pods.image build --dockerfile)"
        )
    for tool, package in (("debootstrap", "debootstrap"), ("chroot", "coreutils"), ("tar", "tar")):
        if shutil.which(tool) is None:
            raise ImageBuildError(f"{tool} is not installed: apt-get install {package}")


def _workdir(cache: Path, prefix: str) -> Path:
    tmp = cache / "tmp"
    tmp.mkdir(exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=prefix, dir=tmp))


def _unmount_under(path: Path) -> None:
    """Unmounts whatever a failed debootstrap left mounted under ``path`` (its /proc, /sys)."""
    with contextlib.suppress(OSError):
        mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
        for mount in sorted(mounts, key=len, reverse=True):
            if mount == str(path) or mount.startswith(f"{path}/"):
                subprocess.run(["umount", "-l", mount], capture_output=True, check=False)


def _remove_tree(path: Path) -> None:
    _unmount_under(path)
    shutil.rmtree(path, ignore_errors=True)


def _strip(root: Path, patterns: Sequence[str]) -> None:
    for pattern in patterns:
        for found in root.glob(pattern):
            if found.is_dir() and not found.is_symlink():
                shutil.rmtree(found, ignore_errors=True)
            else:
                found.unlink(missing_ok=True)


# The cached pieces ------------------------------------------------------------------------------


def rootfs_tarball(cache: Path, log: Log, refresh: bool = False) -> Path:
    """The debootstrapped root filesystem as a tarball in the cache: made once, then reused."""
    tarball = cache / f"rootfs-{SUITE}-{VARIANT}-{rootfs_key()}.tar"
    if tarball.exists() and not refresh:
        log(f"debootstrap: reusing {tarball}")
        return tarball
    mirror = debian_mirror()
    work = _workdir(cache, "rootfs-")
    root = work / "root"
    try:
        with _step(log, f"debootstrap {SUITE} ({VARIANT} + {', '.join(PACKAGES)}) from {mirror}"):
            _run(
                [
                    "debootstrap",
                    f"--variant={VARIANT}",
                    f"--include={','.join(PACKAGES)}",
                    SUITE,
                    str(root),
                    mirror,
                ],
                "debootstrap",
                hint=f"is the Debian archive reachable? set {MIRROR_VARIABLE} to another mirror",
            )
        _strip(root, ROOTFS_STRIP)
        partial = tarball.with_suffix(".tar.part")
        _run(["tar", "--numeric-owner", "-C", str(root), "-cf", str(partial), "."], "archiving the rootfs")
        os.replace(partial, tarball)
    finally:
        _remove_tree(work)
    log(f"debootstrap: cached {tarball} ({tarball.stat().st_size / 1e6:.0f} MB)")
    return tarball


def wheels(cache: Path, log: Log, refresh: bool = False) -> Path:
    """The locked wheels (CPython 3.11, manylinux) plus pip's own, downloaded once into the cache."""
    folder = cache / "wheels" / wheels_key()
    done = folder / ".complete"
    if done.exists() and not refresh:
        log(f"wheels: reusing {folder}")
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    partial = folder.with_name(folder.name + ".part")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    platforms = [arg for tag in wheel_platforms() for arg in ("--platform", tag)]
    with _step(log, f"pip download of the locked wheels for CPython {PYTHON_VERSION}"):
        _run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--disable-pip-version-check",
                "--quiet",
                "--only-binary=:all:",
                "--python-version",
                PYTHON_VERSION,
                "--implementation",
                "cp",
                "--abi",
                "cp" + PYTHON_VERSION.replace(".", ""),
                *platforms,
                "--dest",
                str(partial),
                "--requirement",
                str(content.REQUIREMENTS),
                INSTALLER,
            ],
            "pip download",
            hint="PyPI (or a configured pip index) must be reachable",
        )
    shutil.copyfile(content.REQUIREMENTS, partial / "requirements.txt")
    (partial / ".complete").touch()
    os.replace(partial, folder)
    return folder


# The base image ---------------------------------------------------------------------------------


def ensure_base(client: Any, log: Log, refresh: bool = False) -> str:
    """``c2d-pod-base:<tag>``: reused when present, else made from the cached rootfs and wheels."""
    name = base_image_name()
    if not refresh and dockerio.image_exists(client, name):
        log(f"base image {name}: present")
        return name
    _require_root_tools()
    cache = cache_dir()
    # Builds hold the build lock, so whatever lies in tmp/ was left by one that was killed.
    for stale in sorted((cache / "tmp").glob("*")):
        log(f"removing {stale}, left by an interrupted build")
        _remove_tree(stale)
    with ThreadPoolExecutor(max_workers=2) as pool:  # debootstrap and pip download at once
        rootfs_job = pool.submit(rootfs_tarball, cache, log, refresh)
        wheels_job = pool.submit(wheels, cache, log, refresh)
        rootfs, wheel_dir = rootfs_job.result(), wheels_job.result()
    work = _workdir(cache, "base-")
    try:
        root = work / "root"
        root.mkdir()
        with _step(log, f"base image {name}: installing the wheels"):
            _run(["tar", "--numeric-owner", "-xpf", str(rootfs), "-C", str(root)], "unpacking the rootfs")
            _install_wheels(root, wheel_dir)
            _add_user(root)
            _strip(root, ("tmp/*", "root/.cache", "var/log/*", "dev/*"))
        tar = work / "root.tar"
        with _step(log, f"base image {name}: docker import"):
            _run(
                ["tar", "--numeric-owner", "-C", str(root), "-cf", str(tar), "."], "archiving the base image"
            )
            dockerio.import_rootfs(
                client,
                tar,
                name,
                [f"ENV PATH={CHROOT_PATH}", "ENV LANG=C.UTF-8", 'CMD ["python3"]'],
            )
    finally:
        _remove_tree(work)
    return name


def _chroot(root: Path, *args: str, what: str) -> None:
    env = {"PATH": CHROOT_PATH, "HOME": "/root", "LANG": "C.UTF-8"}
    _run(["chroot", str(root), *args], what, env=env)


def _install_wheels(root: Path, wheel_dir: Path) -> None:
    target = root / WHEELS_IN_ROOT.lstrip("/")
    shutil.copytree(wheel_dir, target)
    installers = sorted(target.glob(f"{INSTALLER}-*.whl"))
    if not installers:
        raise ImageBuildError(f"no {INSTALLER} wheel in {wheel_dir}: remove that folder and build again")
    pip = f"{WHEELS_IN_ROOT}/{installers[-1].name}/pip"
    _chroot(
        root,
        "python3",
        pip,
        "install",
        "--quiet",
        "--no-index",
        "--find-links",
        WHEELS_IN_ROOT,
        "--no-cache-dir",
        "--disable-pip-version-check",
        "--root-user-action=ignore",
        "--break-system-packages",  # bookworm's python3 is "externally managed" (PEP 668)
        "--requirement",
        f"{WHEELS_IN_ROOT}/requirements.txt",
        what="pip install in the chroot",
    )
    shutil.rmtree(target)
    site = _purelib(root)
    for path in sorted(site.rglob("*"), reverse=True):
        if path.is_dir() and path.name in SITE_STRIP_DIRS:
            shutil.rmtree(path, ignore_errors=True)
        elif path.is_file() and path.suffix in SITE_STRIP_SUFFIXES:
            path.unlink()
    # The sources go to SOURCE_DIR (by the final image's COPY); a .pth puts it on sys.path.
    (site / "c2d-pod.pth").write_text(SOURCE_DIR + "\n")
    (root / SOURCE_DIR.lstrip("/")).mkdir(parents=True, exist_ok=True)
    _chroot(
        root,
        "python3",
        "-c",
        "import grpc, google.protobuf, eth_keys, coincurve, structlog, pluggy",
        what="importing the dependencies in the chroot",
    )


def _purelib(root: Path) -> Path:
    result = subprocess.run(
        ["chroot", str(root), "python3", "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        env={"PATH": CHROOT_PATH},
        check=True,
    )
    return root / result.stdout.strip().lstrip("/")


def _add_user(root: Path) -> None:
    """The pods' user: ``c2d``, uid and gid 1000, home /home/c2d."""
    entries = {
        "etc/passwd": f"{USER_NAME}:x:{UID}:{GID}:Compute-to-Data pods:/home/{USER_NAME}:/bin/sh\n",
        "etc/group": f"{USER_NAME}:x:{GID}:\n",
        "etc/shadow": f"{USER_NAME}:*:19700:0:99999:7:::\n",
        "etc/gshadow": f"{USER_NAME}:!::\n",
    }
    for name, line in entries.items():
        path = root / name
        existing = path.read_text() if path.exists() else ""
        if not any(row.split(":")[0] == USER_NAME for row in existing.splitlines()):
            path.write_text(existing + ("" if existing.endswith("\n") or not existing else "\n") + line)
    home = root / "home" / USER_NAME
    home.mkdir(parents=True, exist_ok=True)
    os.chown(home, UID, GID)
    home.chmod(0o755)


# The pod image ----------------------------------------------------------------------------------


def build(client: Any, name: str, tag: str, log: Log, refresh: bool = False) -> None:
    """``name`` (``c2d-pod:<tag>``) from the base image, building that first when it is missing."""
    base = ensure_base(client, log, refresh)
    dockerfile = FINAL_DOCKERFILE.format(base=base, source_dir=SOURCE_DIR, uid=UID, gid=GID)
    context = content.context_tar({FINAL_DOCKERFILE_NAME: dockerfile.encode()})
    with _step(log, f"{name}: docker build FROM {base}"):
        dockerio.build(
            client,
            context,
            FINAL_DOCKERFILE_NAME,
            name,
            log,
            labels={"org.c2d.pod.tag": tag, "org.c2d.pod.route": "offline"},
        )
