"""Print the GPUs the docker engine finds here (NVML or nvidia-smi; AMD and Intel in sysfs), and why cards were skipped.

python plugins/docker_engine/scripts/gpu_probe.py [--host-root /] [--vendors amd,intel] [--groups video,render]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import structlog

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # this checkout's engine, installed or not

from c2d_docker_engine import drm, gpus


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host-root", default="/", help="where this machine's sys/, dev/ and etc/group are")
    parser.add_argument("--vendors", default=",".join(drm.DEFAULT_VENDORS), help="sysfs vendors ('' = none)")
    parser.add_argument("--groups", default=",".join(drm.DEFAULT_GROUPS))
    args = parser.parse_args()
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stderr))  # skip reasons on stderr
    settings = drm.SysfsSettings(
        vendors=tuple(v for v in args.vendors.split(",") if v),
        groups=tuple(g for g in args.groups.split(",") if g),
        host_root=args.host_root,
    )
    found = gpus.detect() + drm.detect(settings)
    for gpu in found:
        access = f" nodes={','.join(gpu.nodes)} groups={','.join(gpu.groups)}" if gpu.nodes else ""
        print(f"{gpu.vendor} {gpu.id} index={gpu.index or '-'} {gpu.model!r} {gpu.memory_gib:g} GiB{access}")
    if not found:
        print("no GPU found")


if __name__ == "__main__":
    main()
