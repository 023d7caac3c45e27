"""``python -m pods.image``: the pod image's tag, whether it is built, and building it.

python -m pods.image tag       the expected tag (a content hash of pods/, sdk/c2d and the lock)
python -m pods.image name      c2d-pod:<tag>
python -m pods.image check     exit 0 when c2d-pod:<tag> is in the Docker engine, else 1
python -m pods.image build [--tag TAG] [--auto|--offline|--dockerfile] [--force] [--refresh]
python -m pods.image lock      requirements.in -> requirements.txt (every version pinned)
python -m pods.image prune     remove c2d-pod and c2d-pod-base images other than the current ones
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from pods.image import builder, content, dockerio, lock, offline
from pods.image.errors import ImageError


def _client() -> Any:
    try:
        import docker
    except ImportError:
        raise ImageError("the docker Python package is needed: pip install docker") from None
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:
        raise ImageError(f"no Docker engine answers ({type(exc).__name__}: {exc})") from None
    return client


def _check() -> int:
    name = builder.image_name()
    client = _client()
    if dockerio.image_exists(client, name):
        print(f"{name}: present, up to date")
        return 0
    print(
        f"{name}: missing (pods/, sdk/c2d or pods/image/requirements.txt changed since the last build, "
        "or it was never built)"
    )
    others = [t for t in dockerio.tags_of(client, builder.REPOSITORY) if t != name]
    if others:
        print(f"  other pod images here (stale): {', '.join(others)}")
    print(f"  {builder.how_to_build()}")
    return 1


def _build(args: argparse.Namespace) -> int:
    started = time.monotonic()
    name = builder.build_image(_client(), args.tag, args.route, force=args.force, refresh=args.refresh)
    print(name)
    builder.stderr_log(f"done in {time.monotonic() - started:.1f} s")
    return 0


def _prune() -> int:
    client = _client()
    keep = {builder.image_name(), offline.base_image_name()}
    for repository in (builder.REPOSITORY, offline.BASE_REPOSITORY):
        for name in dockerio.tags_of(client, repository):
            if name not in keep:
                print(f"{'removed' if dockerio.remove_image(client, name) else 'kept (in use)'} {name}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pods.image", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("tag", help="print the expected tag")
    commands.add_parser("name", help="print c2d-pod:<tag>")
    commands.add_parser("check", help="exit 0 when the image is built, else say how to build it")
    build = commands.add_parser("build", help="build the image (reused when up to date)")
    build.add_argument("--tag", help="tag to build (default: the content tag)")
    routes = build.add_mutually_exclusive_group()
    routes.add_argument(
        "--auto",
        dest="route",
        action="store_const",
        const="auto",
        help="pods/Dockerfile, and the offline recipe when that fails (default)",
    )
    routes.add_argument(
        "--offline",
        dest="route",
        action="store_const",
        const="offline",
        help="debootstrap + PyPI wheels + docker import; no registry (needs root)",
    )
    routes.add_argument(
        "--dockerfile",
        dest="route",
        action="store_const",
        const="dockerfile",
        help="docker build -f pods/Dockerfile (pulls python:3.11-slim)",
    )
    build.add_argument("--force", action="store_true", help="rebuild even when the image is present")
    build.add_argument(
        "--refresh",
        action="store_true",
        help="also redo the cached rootfs, wheels and base image (implies --force)",
    )
    build.set_defaults(route="auto")
    commands.add_parser("lock", help="resolve requirements.in into requirements.txt")
    commands.add_parser("prune", help="remove stale c2d-pod and c2d-pod-base images")
    args = parser.parse_args(argv)
    try:
        if args.command == "tag":
            print(content.expected_tag())
        elif args.command == "name":
            print(builder.image_name())
        elif args.command == "check":
            return _check()
        elif args.command == "build":
            return _build(args)
        elif args.command == "lock":
            sys.stdout.write(lock.write_lock())
            print(f"written to {content.REQUIREMENTS}; new tag {content.expected_tag()}", file=sys.stderr)
        elif args.command == "prune":
            return _prune()
    except (ImageError, content.ContentError) as exc:
        print(f"pod-image: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
