"""The one exception an engine's RPC code raises for a failed call: a gRPC status and a message.

The servicer turns it into ``context.abort`` (see :mod:`c2d.plugin.kit.rpc`);
anything else is a bug, logged and answered with a short INTERNAL, never a
traceback on the wire. Every message is escaped and capped (:func:`c2d.quoting.capped`), and one that
names what the node sent quotes it with :func:`c2d.quoting.quoted`, so a refusal never echoes a long
or hostile value whole.
"""

from __future__ import annotations

import grpc

from c2d import errorinfo
from c2d.quoting import capped, quoted

# The ErrorInfo domain of the engine protocol's reasons, and its one reason so far: Configure
# refused because the engine's backend (a daemon, a cluster's credentials) is not there at all.
# The host logs that at info and does not restart the plugin: nothing to run on is not a failure.
ERROR_DOMAIN = "c2d.engine"
UNDETECTED = "ENGINE_UNDETECTED"


class EngineError(Exception):
    """A call that fails with ``code`` and a message meant for the node's operator; ``reason``,
    when set, travels as a google.rpc.ErrorInfo so the host need not parse the message."""

    def __init__(self, code: grpc.StatusCode, message: str, *, reason: str = "") -> None:
        message = capped(message)
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason

    def trailing_metadata(self) -> tuple[tuple[str, bytes], ...]:
        if not self.reason:
            return ()
        return errorinfo.trailer(self.code, self.message, self.reason, ERROR_DOMAIN)


def invalid(message: str) -> EngineError:
    return EngineError(grpc.StatusCode.INVALID_ARGUMENT, message)


def not_found(job_id: str) -> EngineError:
    return EngineError(grpc.StatusCode.NOT_FOUND, f"no job {quoted(job_id)} on this engine for this node")


def precondition(message: str) -> EngineError:
    return EngineError(grpc.StatusCode.FAILED_PRECONDITION, message)


def undetected(message: str) -> EngineError:
    """Configure's answer when the engine has nothing to drive here (see :data:`UNDETECTED`)."""
    return EngineError(grpc.StatusCode.FAILED_PRECONDITION, message, reason=UNDETECTED)


def unavailable(message: str) -> EngineError:
    return EngineError(grpc.StatusCode.UNAVAILABLE, message)
