"""Confinement of the algorithm: its own namespaces, an unprivileged user, a root built from an allow list.

The stub runs consumer code as local processes, next to the node's key, its
database, the private data root and the stage's pod key. So the algorithm runs
in a sandbox whose filesystem holds only read-only system paths (``/usr``,
``/bin``, ``/lib*``, a few files of ``/etc``, the Python install outside
``/usr`` if any), a private ``/tmp`` and the job's contract directories at
their usual paths (``$C2D_DATA/inputs`` read-only, ``outputs``, ``logs``,
``transformations``): everything else (the node's data dir, the data root,
home directories, the job's own ``spec.json`` with the pod key) simply is not
there. It has its own user, mount, pid, ipc and uts namespaces (so no other
process's ``/proc/<pid>/environ`` is visible), the network unshared unless the
job may use it, and when the node runs as root it runs as ``nobody`` (65534).

Two backends; ``sandbox = "auto"`` takes bwrap first for an ordinary user,
unshare first for root:

- ``bwrap`` (bubblewrap, Debian package ``bubblewrap``), started through
  ``setpriv`` as nobody when root (then it binds only what nobody can reach);
- ``unshare``: util-linux ``unshare`` (on every Debian) with a small shell
  script that builds the same root with ``mount`` and enters it with
  ``chroot``, then ``setpriv`` drops to nobody (root) or drops every
  capability (an ordinary user, who is root of its own user namespace only).

The pods run in a sandbox of the same backend too (:meth:`Sandbox.pod_argv`): they
are the node's code, but they handle what consumers send (downloads, archives), so a
flaw there must not reach the node either. They share the machine's network (they
call the node back and fetch inputs) and see the job's folders writable (they fill
``inputs``, and use ``.configuration`` and ``.publishing`` as work folders), plus
their own code read-only (``pod_code``: where the pod interpreter finds ``pods``
and ``c2d``); the job's ``spec.json`` and the shim's records are not there.

Whether a backend works here is found once, at Configure, by running ``true``
through it (:func:`detect`). Standard library only: the shim imports this module.
"""

from __future__ import annotations

import glob
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

BACKENDS = ("bwrap", "unshare")
CHOICES = ("auto", *BACKENDS, "none")
NOBODY = 65534
PROBE_TIMEOUT_SECONDS = 20.0
# Top-level system paths bound read-only (a symlink, as /bin on merged-/usr Debian, stays a symlink).
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32")
# What of /etc programs need to run (users, name resolution, TLS roots, the loader), nothing more.
ETC_ENTRIES = (
    "passwd",
    "group",
    "hosts",
    "host.conf",
    "resolv.conf",
    "nsswitch.conf",
    "gai.conf",
    "localtime",
    "timezone",
    "ld.so.cache",
    "ld.so.conf",
    "ld.so.conf.d",
    "ssl",
    "ca-certificates",
    "alternatives",
    "mime.types",
    "protocols",
    "services",
    "os-release",
    "debian_version",
    "python3*",
)
DEVICES = ("null", "zero", "full", "random", "urandom", "tty")
# The contract's directories the algorithm sees, and whether it may write them.
CONTRACT = (("inputs", False), ("transformations", True), ("outputs", True), ("logs", True))
# What the pods see of the job: the contract's directories, all writable, and their work folders.
POD_FOLDERS = (*((name, True) for name, _ in CONTRACT), (".configuration", True), (".publishing", True))
Folders = tuple[tuple[str, bool], ...]
# Builds the sandbox's root inside fresh namespaces; the arguments are data, never parsed as shell.
# $1 job dir, $2 uid mode ("nobody" or "caps"), $3 command, $4 every mount point's folder, relative
# to the new root, one a line (created by one mkdir), then "--" and the read-only paths (files or
# directories), then "--" and the symlinks as name=target, then "--" and the job's folders as
# name=rw or name=ro. The new root is a tmpfs over <job>/.root: a path no source lies under (a tmpfs
# over /tmp would hide a job dir in /tmp). Every program it runs is an exec that each pod and each
# algorithm pays for, so it runs as few as it can: one mkdir, one mount per bind (a read-only bind
# in one call, libmount remounts it), builtins for the rest.
UNSHARE_SCRIPT = r"""
set -e
job=$1 mode=$2 cmd=$3 folders=$4
shift 5
R=$job/.root
mkdir -p "$R"
mount -t tmpfs -o mode=0755 c2d-root "$R"
# The private /tmp first: code bound below may lie under /tmp (a checkout there), and a tmpfs
# mounted after it would hide it.
mkdir -p "$R/tmp"
mount -t tmpfs -o mode=1777 c2d-private-tmp "$R/tmp"
cd "$R"
IFS='
'
set -f
mkdir -p -- $folders
set +f
unset IFS
ro_bind() {
  # A mount that locks nosuid/nodev (an ordinary user's namespace) is remounted read-only only with them.
  mount --rbind -o ro "$1" "$2" 2>/dev/null || mount --rbind -o ro,nosuid,nodev "$1" "$2"
}
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do
  [ -d "$1" ] || : > "$R$1"
  ro_bind "$1" "$R$1"
  shift
done
shift
while [ "$#" -gt 0 ] && [ "$1" != "--" ]; do ln -s "${1#*=}" "$R${1%%=*}"; shift; done
shift
for d in null zero full random urandom tty; do : > "$R/dev/$d"; mount --bind "/dev/$d" "$R/dev/$d"; done
ln -s /proc/self/fd "$R/dev/fd"
mount -t proc proc "$R/proc"
for folder in "$@"; do
  d=${folder%%=*}
  if [ "${folder#*=}" = ro ]; then
    ro_bind "$job/$d" "$R$job/$d"
  else
    mount --bind "$job/$d" "$R$job/$d"
  fi
done
cd /
mount -o remount,bind,ro "$R"
if [ "$mode" = nobody ]; then
  drop="--reuid=65534 --regid=65534 --clear-groups"
else
  drop="--securebits=+noroot,+noroot_locked,+no_setuid_fixup,+no_setuid_fixup_locked,+keep_caps_locked"
fi
set +e
# Not exec: this shell stays pid 1 of the namespace, so the algorithm gets signals as any process does.
# The algorithm's stderr is the log, passed as fd 3; this shell's own is not, so its report of a
# child killed by a signal (sh prints "Terminated" when a stop reaches the algorithm) never lands
# in the algorithm's log.
exec 3>&2 2>/dev/null
chroot "$R" /usr/bin/setpriv $drop --no-new-privs --inh-caps=-all --bounding-set=-all -- \
  /bin/sh -c 'exec 2>&3 3>&-; cd "$0" || exit 126; exec /bin/sh -c "$1"' "$job" "$cmd"
exit $?
"""


@dataclass(frozen=True)
class Sandbox:
    """How the shim confines an algorithm: a backend, or ``none`` (runs as the plugin's user)."""

    backend: str
    as_root: bool = os.geteuid() == 0
    # Where the pod interpreter finds its own code (``pods``, ``c2d``, its prefix): bound read-only.
    pod_code: tuple[str, ...] = ()

    @property
    def confined(self) -> bool:
        return self.backend in BACKENDS

    def to_json(self) -> dict[str, object]:
        return {"backend": self.backend, "as_root": self.as_root, "pod_code": list(self.pod_code)}

    @classmethod
    def from_json(cls, data: object) -> Sandbox:
        if not isinstance(data, dict):
            return cls("none")
        return cls(
            str(data.get("backend", "none")),
            bool(data.get("as_root", os.geteuid() == 0)),
            tuple(str(p) for p in data.get("pod_code") or ()),
        )

    def argv(self, command: str, job: Path, network: bool) -> list[str]:
        """The argv that runs ``/bin/sh -c command`` (the algorithm) in ``job``, confined by this backend."""
        return self._confined(command, job, network, CONTRACT, ())

    def pod_argv(self, argv: list[str], job: Path) -> list[str]:
        """The argv that runs a pod (``argv``) in ``job``: the machine's network, the job's folders
        writable, the pod's own code read-only."""
        system = set(readonly_paths())
        code = tuple(p for p in self.pod_code if p not in system)
        return self._confined(shlex.join(argv), job, True, POD_FOLDERS, code)

    def _confined(
        self, command: str, job: Path, network: bool, folders: Folders, code: tuple[str, ...]
    ) -> list[str]:
        if self.backend == "bwrap":
            return self._bwrap(command, job, network, folders, code)
        if self.backend == "unshare":
            return self._unshare(command, job, network, folders, code)
        return ["/bin/sh", "-c", command]

    def prepare(self, job: Path, folders: Folders = CONTRACT) -> None:
        """The job's ``folders`` exist, and when root, those the unprivileged user must write are its own."""
        if not self.confined:
            return
        for name, _ in folders:
            (job / name).mkdir(exist_ok=True)
        if not self.as_root:
            return
        for name, writable in folders:
            if writable:
                for root, dirs, files in os.walk(job / name):
                    for entry in (root, *(os.path.join(root, d) for d in dirs)):
                        os.chown(entry, NOBODY, NOBODY)
                    for entry in files:
                        os.chown(os.path.join(root, entry), NOBODY, NOBODY)

    def prepare_pods(self, job: Path) -> None:
        self.prepare(job, POD_FOLDERS)

    def _bwrap(
        self, command: str, job: Path, network: bool, folders: Folders, code: tuple[str, ...]
    ) -> list[str]:
        argv = [f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups", "--"] if self.as_root else []
        argv = (["setpriv", *argv] if argv else []) + ["bwrap", "--unshare-user", "--unshare-pid"]
        argv += ["--unshare-ipc", "--unshare-uts", "--unshare-cgroup-try", "--die-with-parent"]
        if not network:
            argv.append("--unshare-net")
        argv += ["--tmpfs", "/tmp"]  # first: what is bound below may lie under /tmp
        for path in (*readonly_paths(), *code):
            if not self.as_root or world_reachable(
                path
            ):  # bwrap runs as nobody: it binds what nobody reaches
                argv += ["--ro-bind", path, path]
        for name, target in symlinks():
            argv += ["--symlink", target, name]
        argv += ["--proc", "/proc", "--dev", "/dev"]
        for name, writable in folders:
            argv += ["--bind" if writable else "--ro-bind", str(job / name), str(job / name)]
        argv += ["--remount-ro", "/", "--chdir", str(job), "/bin/sh", "-c", command]
        return argv

    def _unshare(
        self, command: str, job: Path, network: bool, folders: Folders, code: tuple[str, ...]
    ) -> list[str]:
        argv = ["unshare"] + ([] if self.as_root else ["--user", "--map-root-user"])
        argv += ["--mount", "--pid", "--ipc", "--uts", "--fork", "--kill-child", "--propagation", "private"]
        if not network:
            argv.append("--net")
        mode = "nobody" if self.as_root else "caps"
        links = [f"{name}={target}" for name, target in symlinks()]
        readonly = [*readonly_paths(), *code]
        points = mount_points(readonly, [str(job / name) for name, _ in folders])
        argv += ["--", "/bin/sh", "-c", UNSHARE_SCRIPT, "c2d-sandbox", str(job), mode, command, points]
        binds = [f"{name}={'rw' if writable else 'ro'}" for name, writable in folders]
        return [*argv, "--", *readonly, "--", *links, "--", *binds]


def mount_points(readonly: list[str], folders: list[str]) -> str:
    """The folders the unshare script creates in the new root before it binds anything, relative to it
    and one a line (one ``mkdir`` for them all): a read-only directory, a read-only file's parent, the
    job's folders, ``/dev`` and ``/proc``. The paths are the node's own (system paths, its state dir),
    never a consumer's; one holding a newline could not be split, so it is refused."""
    wanted = [p if os.path.isdir(p) else os.path.dirname(p) for p in readonly]
    wanted += [*folders, "/dev", "/proc"]
    if any("\n" in p for p in wanted):
        raise ValueError("a path bound into the sandbox holds a newline")
    return "\n".join(dict.fromkeys("." + p for p in wanted))


def symlinks() -> list[tuple[str, str]]:
    """The top-level system paths that are symlinks here (``/bin -> usr/bin``), as (name, target)."""
    return [(p, os.readlink(p)) for p in SYSTEM_PATHS if os.path.islink(p)]


def readonly_paths() -> list[str]:
    """Every path bound read-only into the sandbox: system directories, part of /etc, Python's install."""
    paths = [p for p in SYSTEM_PATHS if os.path.isdir(p) and not os.path.islink(p)]
    for entry in ETC_ENTRIES:
        paths += sorted(glob.glob(os.path.join("/etc", entry)))
    prefix = python_prefix()
    if prefix is not None:
        paths.append(prefix)
    return paths


def python_prefix() -> str | None:
    """The Python install the plugin runs on when it lies outside /usr (pyenv, /opt): its own files only."""
    prefix = os.path.realpath(sys.base_prefix)
    if prefix == "/usr" or prefix.startswith("/usr/") or not os.path.isdir(prefix):
        return None
    return prefix


def world_reachable(path: str) -> bool:
    """Whether any user may reach ``path`` (every folder above it searchable by others): nobody can
    bind only those, and a folder inside a private home stays out rather than exposing its parent."""
    current = Path(path)
    if not current.is_dir():
        return False
    for folder in (current, *current.parents):
        try:
            if not os.stat(folder).st_mode & 0o001:
                return False
        except OSError:
            return False
    return True


def detect(choice: str, scratch: Path) -> tuple[Sandbox, list[str]]:
    """The first backend of ``choice`` that confines ``true`` here, and why the others did not.

    ``auto`` tries bwrap, then unshare; a named backend is tried alone; ``none``
    tries nothing. Without a working backend the sandbox is ``none``.
    """
    if choice == "none":
        return Sandbox("none"), ['sandbox = "none" in the config']
    reasons: list[str] = []
    # As root, unshare's route is the stronger one (root builds the mounts, then the real uid becomes
    # nobody) and bwrap's is narrower (bwrap itself runs as nobody, so it can only bind what nobody
    # reaches: not a job dir under a private data dir, nor a Python under /root): unshare first.
    order = ("unshare", "bwrap") if os.geteuid() == 0 else BACKENDS
    for backend in order if choice == "auto" else (choice,):
        candidate = Sandbox(backend)
        why = probe(candidate, scratch)
        if why is None:
            return candidate, reasons
        reasons.append(f"{backend}: {why}")
    return Sandbox("none"), reasons


def probe(sandbox: Sandbox, scratch: Path) -> str | None:
    """Runs a check through ``sandbox`` in a throwaway job directory; None when it works, else why not."""
    tool = "bwrap" if sandbox.backend == "bwrap" else "unshare"
    if shutil.which(tool) is None:
        return f"{tool} is not installed" + (" (apt-get install bubblewrap)" if tool == "bwrap" else "")
    scratch.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=scratch, prefix="probe-") as folder:
        job = Path(folder)
        os.chmod(job, 0o755)
        for name, _ in CONTRACT:
            (job / name).mkdir()
        sandbox.prepare(job)
        # It must write its outputs and must not see the job's own files (the spec, with the pod key).
        (job / "secret").write_text("")
        check = f'echo ok > outputs/probe && ! test -e "{job}/secret"'
        try:
            result = subprocess.run(
                sandbox.argv(check, job, network=False),
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=PROBE_TIMEOUT_SECONDS,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as exc:
            return f"could not run: {exc}"
        if result.returncode != 0 or not (job / "outputs" / "probe").exists():
            detail = (result.stderr or result.stdout).decode(errors="replace").strip().splitlines()
            return f"exit {result.returncode}" + (f": {detail[-1][:200]}" if detail else "")
        shutil.rmtree(job, ignore_errors=True)
        job.mkdir()  # TemporaryDirectory removes it again
    return None
