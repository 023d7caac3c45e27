"""Registry credentials an engine pulls a job's algorithm image with: the operator's, the job's own.

The operator configures one entry per registry (``registries = [{server,
username, password}, ...]`` in the engine's section); a consumer's job may
bring its own (``JobSpec.registry_auth``, decrypted by the host), which win
for that job's image and go to the image's own registry only.

A job's own credentials live in the plugin's memory only (:class:`JobCredentials`),
never in its record, handle, events or log lines. A plugin that restarts
before the job's image is pulled has lost them; the host hands them over
again with RecoverJob (``RecoverJobRequest.registry_auth``, decrypted once more
from what it stores encrypted), and the job's driver waits for that (bounded)
before it pulls. The record only says that the job came with credentials
(:data:`RECORD_KEY`), so the driver knows to wait.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from c2d import registry_auth
from c2d.engine.v1 import engine_pb2
from c2d.plugin.kit.errors import invalid

RECORD_KEY = "job_registry_auth"  # in the job's record: true when it came with credentials (never them)
REGISTRY_KEYS = frozenset({"server", "username", "password"})
LOST_ON_RESTART = (
    " (the job's own registry credentials are kept in memory only and were lost when the engine "
    "plugin restarted; the node did not hand them over again: start the job again)"
)
WAKE_SECONDS = 0.5


@dataclass(frozen=True)
class Credentials:
    """A username and password for one registry (its ``host[:port]``, Docker Hub as ``docker.io``)."""

    username: str
    password: str
    server: str

    def __repr__(self) -> str:
        """Never the password: a repr ends up in logs and tracebacks."""
        return f"Credentials(username={self.username!r}, server={self.server!r})"


def parse_registries(raw: object, where: str) -> tuple[Credentials, ...]:
    """``registries = [{server, username, password}, ...]``: each registry host once; INVALID_ARGUMENT
    naming the entry (never its password) otherwise."""
    where = f"{where} registries"
    if raw is None:
        return ()
    if not isinstance(raw, list):
        raise invalid(f"{where} must be a list of tables with server, username and password")
    entries: dict[str, Credentials] = {}
    for index, entry in enumerate(raw):
        at = f"{where}[{index}]"
        if not isinstance(entry, dict):
            raise invalid(f"{at} must be a table with server, username and password")
        unknown = sorted(str(key) for key in set(entry) - REGISTRY_KEYS)
        if unknown:
            raise invalid(f"{at} has unknown keys {unknown} (allowed: {sorted(REGISTRY_KEYS)})")
        values = {key: entry.get(key, "") for key in REGISTRY_KEYS}
        if not all(isinstance(v, str) and v for v in values.values()):
            raise invalid(f"{at} needs a server, a username and a password (non-empty strings)")
        server = registry_auth.normalize_server(values["server"])
        if server in entries:
            raise invalid(f"{at} names registry {server!r} a second time")
        entries[server] = Credentials(username=values["username"], password=values["password"], server=server)
    return tuple(entries.values())


def entry_for(entries: tuple[Credentials, ...], image: str) -> Credentials | None:
    """The operator's entry for the registry ``image`` is on, if there is one."""
    server = registry_auth.registry_of(image)
    return next((entry for entry in entries if entry.server == server), None)


@dataclass
class _Slot:
    credentials: Credentials | None = None
    declined: bool = False  # RecoverJob came without credentials: none are coming


class JobCredentials:
    """The consumers' credentials of this plugin's jobs, by job id, in memory only."""

    def __init__(self) -> None:
        self._changed = threading.Condition()
        self._by_job: dict[str, _Slot] = {}

    def keep(self, job_id: str, auth: engine_pb2.RegistryAuth, image: str) -> None:
        """Holds ``auth`` for the job's pull of ``image``, addressed to the image's own registry
        (whatever server it names: the host checked they match)."""
        server = registry_auth.registry_of(image)
        with self._changed:
            self._by_job[job_id] = _Slot(Credentials(auth.username, auth.password, server))
            self._changed.notify_all()

    def decline(self, job_id: str) -> None:
        """RecoverJob brought no credentials for a job that had some: a waiting driver goes on without."""
        with self._changed:
            slot = self._by_job.setdefault(job_id, _Slot())
            if slot.credentials is None:
                slot.declined = True
            self._changed.notify_all()

    def get(self, job_id: str) -> Credentials | None:
        with self._changed:
            slot = self._by_job.get(job_id)
            return None if slot is None else slot.credentials

    def wait(self, job_id: str, timeout: float, give_up: Callable[[], bool]) -> Credentials | None:
        """The job's credentials once they are here (a restarted plugin gets them from RecoverJob);
        None when RecoverJob declined, ``give_up()`` turned true (a stop) or ``timeout`` passed."""
        deadline = time.monotonic() + timeout
        with self._changed:
            while True:
                slot = self._by_job.get(job_id)
                if slot is not None and (slot.credentials is not None or slot.declined):
                    return slot.credentials
                left = deadline - time.monotonic()
                if left <= 0 or give_up():
                    return None
                self._changed.wait(min(left, WAKE_SECONDS))

    def forget(self, job_id: str) -> None:
        """The job's image is pulled, or the job is gone: its credentials are no longer needed."""
        with self._changed:
            self._by_job.pop(job_id, None)
            self._changed.notify_all()
