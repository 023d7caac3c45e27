"""AMD and Intel GPUs, found in sysfs' DRM class, and the device nodes a container needs for each.

The kernel lists every DRM device as ``/sys/class/drm/cardN``: its
``device`` folder is the PCI function (``vendor``, ``device``, ``uevent``
with ``PCI_SLOT_NAME``), and ``device/drm`` holds that card's own nodes,
``cardN`` and its render node ``renderD*``. A container granted one of these
GPUs gets exactly those two nodes (AMD: and ``/dev/kfd``, ROCm's compute
interface), never the whole of ``/dev/dri``, so stages granted different
GPUs cannot open each other's. A GPU is named by its PCI address, which
stays the same across reboots (card numbers need not). NVIDIA cards are left
to NVML (:mod:`c2d_docker_engine.gpus`). A card with something missing or
unreadable is skipped with a log line saying what: nothing is guessed.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace
from pathlib import Path

import structlog

from c2d_docker_engine.gpus import GIB, Gpu

AMD = "amd"
INTEL = "intel"
VENDORS = {0x1002: AMD, 0x8086: INTEL}
NVIDIA_PCI_VENDOR = 0x10DE
DEFAULT_VENDORS = (AMD, INTEL)
DEFAULT_GROUPS = ("video", "render")
KFD = "/dev/kfd"
CARD = re.compile(r"card(\d+)")
RENDER = re.compile(r"renderD(\d+)")
PCI_ADDRESS = re.compile(r"[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]", re.IGNORECASE)
MAX_READ = 4096  # sysfs attributes are a page at most

log = structlog.get_logger("c2d_docker_engine.drm")


@dataclass(frozen=True)
class SysfsSettings:
    """Which vendors to look for (none: no sysfs detection), the groups to add, where the host's files are."""

    vendors: tuple[str, ...] = DEFAULT_VENDORS
    groups: tuple[str, ...] = DEFAULT_GROUPS
    host_root: str = "/"


class CardSkipped(Exception):
    """This card cannot be offered; the message says why."""


def detect(settings: SysfsSettings) -> tuple[Gpu, ...]:
    """The AMD and Intel GPUs of this machine (those of ``settings.vendors``); never raises."""
    if not settings.vendors:
        return ()
    root = Path(settings.host_root)
    found = find(root / "sys", settings.vendors, root / "dev")
    if not found:
        return ()
    groups = group_ids(settings.groups, root / "etc" / "group")
    return tuple(replace(gpu, groups=groups) for gpu in found)


def find(
    sys_root: Path = Path("/sys"),
    vendors: Iterable[str] = DEFAULT_VENDORS,
    dev_root: Path = Path("/dev"),
) -> tuple[Gpu, ...]:
    """Every card under ``sys_root``/class/drm of one of ``vendors``, by PCI address, in card order.

    Device nodes are checked under ``dev_root`` but named as Docker's host
    sees them (``/dev/...``); their groups are filled in by :func:`detect`.
    """
    drm_class = sys_root / "class" / "drm"
    try:
        cards = sorted(
            (entry for entry in drm_class.iterdir() if CARD.fullmatch(entry.name)),
            key=lambda entry: int(entry.name[len("card") :]),
        )
    except OSError as exc:
        log.info("no DRM devices in sysfs", path=str(drm_class), reason=str(exc))
        return ()
    wanted = frozenset(vendors)
    found: dict[str, Gpu] = {}
    for card in cards:
        try:
            gpu = read_card(card, wanted, dev_root)
        except CardSkipped as exc:
            log.warning("GPU skipped", card=str(card), reason=str(exc))
            continue
        if gpu is not None and gpu.id not in found:
            found[gpu.id] = gpu
    return tuple(found.values())


def read_card(card: Path, vendors: frozenset[str], dev_root: Path) -> Gpu | None:
    """One card as a GPU; None when it is not one of ``vendors`` (NVIDIA's, another vendor's)."""
    device = card / "device"
    vendor_id = _hex(device / "vendor")
    vendor = VENDORS.get(vendor_id)
    if vendor is None:
        if vendor_id != NVIDIA_PCI_VENDOR:
            log.info("DRM card of another vendor ignored", card=str(card), pci_vendor=f"{vendor_id:#06x}")
        return None
    if vendor not in vendors:
        log.info("GPU left out by sysfs_gpu_vendors", card=str(card), vendor=vendor)
        return None
    device_id = _hex(device / "device")
    address = _uevent(device / "uevent").get("PCI_SLOT_NAME", "").lower()
    if not PCI_ADDRESS.fullmatch(address):
        raise CardSkipped(f"{device / 'uevent'} has no PCI_SLOT_NAME (PCI address)")
    nodes = [f"/dev/dri/{card.name}", f"/dev/dri/{_render_node(device / 'drm')}"]
    if vendor == AMD:
        nodes.append(KFD)
    for node in nodes:
        if not (dev_root / node.removeprefix("/dev/")).exists():
            raise CardSkipped(f"its device node {node} does not exist")
    return Gpu(
        id=address,
        vendor=vendor,
        model=_optional(device / "product_name") or f"PCI {vendor_id:04x}:{device_id:04x}",
        memory_gib=_vram_gib(device / "mem_info_vram_total"),
        nodes=tuple(nodes),
    )


def group_ids(names: Iterable[str], group_file: Path = Path("/etc/group")) -> tuple[str, ...]:
    """Each group as the gid ``group_file`` gives it (a number stays as is).

    The device nodes carry the host's gids, which the container's own
    /etc/group need not know. A name the host's file lacks is left out (no
    node can belong to it); when the file cannot be read, names are passed as
    they are and Docker looks them up in the image.
    """
    try:
        text = group_file.read_text(errors="replace")
    except OSError as exc:
        log.warning(
            "cannot read the group file; GPU groups passed by name", path=str(group_file), reason=str(exc)
        )
        return tuple(names)
    gids: dict[str, str] = {}
    for line in text.splitlines():
        fields = line.split(":")
        if len(fields) >= 3 and fields[2].isdigit():
            gids.setdefault(fields[0], fields[2])
    chosen = []
    for name in names:
        if name.isdigit() or name in gids:
            chosen.append(name if name.isdigit() else gids[name])
        else:
            log.warning("GPU group not on this host, not added", group=name, path=str(group_file))
    return tuple(dict.fromkeys(chosen))


def _render_node(nodes: Path) -> str:
    """The card's render node (``renderD128``...) in its ``device/drm``; a card without one cannot run compute."""
    try:
        names = sorted(entry.name for entry in nodes.iterdir() if RENDER.fullmatch(entry.name))
    except OSError as exc:
        raise CardSkipped(f"cannot list {nodes}: {exc.strerror or exc}") from None
    if not names:
        raise CardSkipped(f"no render node (renderD*) in {nodes}")
    return names[0]


def _read(path: Path) -> str:
    try:
        with path.open("rb") as file:
            return file.read(MAX_READ).decode(errors="replace").strip()
    except OSError as exc:
        raise CardSkipped(f"cannot read {path}: {exc.strerror or exc}") from None


def _hex(path: Path) -> int:
    """A PCI id file: ``0x1002``."""
    text = _read(path)
    try:
        return int(text, 16)
    except ValueError:
        raise CardSkipped(f"{path} holds {text[:40]!r}, not a PCI id") from None


def _uevent(path: Path) -> dict[str, str]:
    return dict(line.split("=", 1) for line in _read(path).splitlines() if "=" in line)


def _optional(path: Path) -> str:
    """An attribute some drivers have: '' when absent or unreadable."""
    try:
        return _read(path)
    except CardSkipped:
        return ""


def _vram_gib(path: Path) -> float:
    """amdgpu's VRAM size in bytes; 0 when the driver does not say (Intel, integrated)."""
    text = _optional(path)
    return round(int(text) / GIB, 2) if text.isdigit() else 0.0
