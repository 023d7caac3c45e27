"""Which registry credentials a pull sends: the consumer's for their job, else the operator's.

A consumer's credentials arrive in StartJob (``JobSpec.registry_auth``, decrypted by the
host) and serve the algorithm image's pull only. They are kept in this process's memory
(:class:`c2d.plugin.kit.pullcreds.JobCredentials`), never in the job's ``spec.json``, its
handle, its events or a log line, and dropped once the image is on the daemon or the job
ends. After a plugin restart the host hands them over again with RecoverJob; a job whose
credentials did not come back pulls with the operator's, and when that fails the message
says why.
"""

from __future__ import annotations

from c2d import registry_auth
from c2d.plugin.kit.jobspec import ImageRef
from c2d.plugin.kit.pullcreds import LOST_ON_RESTART, RECORD_KEY, Credentials, JobCredentials
from c2d_docker_engine.config import DockerSettings, RegistryAuth

__all__ = ["LOST_ON_RESTART", "RECORD_KEY", "Credentials", "JobCredentials", "as_docker", "for_pull"]


def as_docker(credentials: Credentials | None) -> RegistryAuth | None:
    """A job's credentials as the docker package's ``auth_config`` is made from."""
    if credentials is None:
        return None
    return RegistryAuth(
        username=credentials.username, password=credentials.password, serveraddress=credentials.server
    )


def for_pull(settings: DockerSettings, ref: ImageRef, job_auth: RegistryAuth | None) -> RegistryAuth | None:
    """The job's own credentials when it has them, else the operator's for the image's registry:
    its ``registries`` entry, else ``registry_auth`` when that names the same registry or none
    (then it goes to every registry without an entry, as it did before there were several)."""
    if job_auth is not None:
        return job_auth
    server = registry_auth.registry_of(ref.repository)
    for entry in settings.registries:
        if entry.serveraddress == server:
            return entry
    single = settings.registry_auth
    if (
        single is not None
        and single.serveraddress
        and registry_auth.normalize_server(single.serveraddress) != server
    ):
        return None
    return single
