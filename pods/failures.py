"""A pod's failure, with a message the consumer may read and a detail only the operator sees.

The node forwards a pod's status messages to the consumer, and the pod's log
is published to the consumer, while inputs may be private datasets whose
locations the consumer must never learn. So every failure carries two texts:
``public`` names the input by folder and file name and says what went wrong
in words the pod chose (never an exception's own text, which may quote a URL
or a path); ``detail`` is for stderr.
"""

from __future__ import annotations


class PodFailure(Exception):
    def __init__(self, public: str, detail: str = "") -> None:
        super().__init__(public)
        self.public = public
        self.detail = detail or public


class SourceFailure(PodFailure):
    """One file could not be fetched, checked or unpacked; ``public`` says why, without where."""


def describe_rpc_error(exc: BaseException) -> str:
    """A gRPC error's status code alone: its details may name the node's address."""
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            return f"node call failed ({code().name})"
        except Exception:
            pass
    return f"node call failed ({type(exc).__name__})"
