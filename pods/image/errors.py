"""Errors of the pod image build."""

from __future__ import annotations


class ImageError(RuntimeError):
    """The pod image is missing, or cannot be built; the message says what to do."""


class ImageMissing(ImageError):
    """``c2d-pod:<tag>`` is not in the Docker engine and building it was not allowed."""


class ImageBuildError(ImageError):
    """A build step failed; ``output`` holds the last lines of what it printed."""

    def __init__(self, message: str, output: list[str] | None = None) -> None:
        super().__init__(message)
        self.output = list(output or [])

    def __str__(self) -> str:
        message = super().__str__()
        if not self.output:
            return message
        return message + "\n  last output:\n" + "\n".join(f"    {line}" for line in self.output)
