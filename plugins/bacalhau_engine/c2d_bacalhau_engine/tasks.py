"""The Bacalhau job of each step of a stage, as the JSON ``PUT /api/v1/orchestrator/jobs`` takes.

Every job is ``batch`` with ``Count`` 1 and one docker task; its constraints
are the pool's node labels, its labels and ``Meta`` name the node and the
job. They differ in what they run and mount:

- the algorithm: its image and ``/bin/sh -c <command>``, exactly the grant as
  ``Resources``, the time limit as ``Timeouts.ExecutionTimeout``, network
  ``None`` unless the stage may use it, and the four contract folders of
  the job's folder (``inputs/`` and ``transformations/`` read-only);
- pod-configuration and pod-publishing: the pod image and ``python3 -m
  pods.<step>``, the pods' own resources and time limit, the pods' network,
  and the whole job folder read-write at ``/data`` (the pod key at
  ``/data/.pod/key``, read into ``privateKey`` by the pod's shell: it is in
  no job spec).

Memory and disk are sent as byte counts ("268435456"), CPU as cores
("0.5"), GPUs as a count ("1").
"""

from __future__ import annotations

from typing import Any

from c2d.plugin.kit.grant import Grant
from c2d.plugin.kit.jobdir import Record
from c2d.plugin.kit.jobspec import DATA_ROOT
from c2d.plugin.kit.podenv import POD_MODULES, pod_environment
from c2d_bacalhau_engine import names
from c2d_bacalhau_engine.workdir import CONTRACT_FOLDERS, KEY_FILE, POD_FOLDER

Obj = dict[str, Any]
READ_ONLY = frozenset({"inputs", "transformations"})
POD_KEY_PATH = f"{DATA_ROOT}/{POD_FOLDER}/{KEY_FILE}"


def job_body(record: Record, step: str) -> Obj:
    """The Bacalhau job that runs ``step`` of the job ``record`` describes."""
    task = algorithm_task(record) if step == names.ALGORITHM else pod_task(record, step)
    host_id, job_id = str(record["host_id"]), str(record["job_id"])
    return {
        "Name": names.job_name(job_id, step, submission_key(record, step)),
        "Type": "batch",
        "Count": 1,
        "Labels": names.job_labels(host_id, job_id, step),
        "Meta": names.job_meta(host_id, job_id, str(record.get("workflow_id", ""))),
        "Constraints": constraints(record["limits"].get("node_labels") or {}),
        "Tasks": [task],
    }


def submission_key(record: Record, step: str) -> str:
    return names.submission_key(
        str(record["host_id"]), str(record["job_id"]), step, str(record.get("created", ""))
    )


def idempotency_token(record: Record, step: str) -> str:
    return names.idempotency_token(submission_key(record, step), step)


def constraints(labels: dict[str, str]) -> list[Obj]:
    return [{"Key": key, "Operator": "=", "Values": [value]} for key, value in sorted(labels.items())]


def _mount(source: str, target: str, read_write: bool) -> Obj:
    return {
        "Source": {"Type": "localDirectory", "Params": {"SourcePath": source, "ReadWrite": read_write}},
        "Target": target,
    }


def _env_list(env: dict[str, str]) -> list[str]:
    return [f"{name}={value}" for name, value in env.items()]


def _timeouts(execution_seconds: int, record: Record) -> Obj:
    return {
        "ExecutionTimeout": int(execution_seconds),
        "QueueTimeout": int(record["limits"].get("queue_timeout_seconds", 600)),
    }


def resources(cpu: float, ram_bytes: int, disk_bytes: int, gpus: int) -> Obj:
    return {"CPU": f"{cpu:g}", "Memory": str(int(ram_bytes)), "Disk": str(int(disk_bytes)), "GPU": str(gpus)}


def algorithm_task(record: Record) -> Obj:
    grant = Grant.from_json(record["grant"])
    folder = str(record["limits"]["node_folder"])
    env = {**dict(record.get("env") or {}), "C2D_DATA": DATA_ROOT, "HOME": "/tmp"}
    return {
        "Name": names.ALGORITHM,
        "Engine": {
            "Type": "docker",
            "Params": {
                "Image": record["image"]["reference"],
                "Entrypoint": ["/bin/sh", "-c"],
                "Parameters": [str(record["command"])],
                "EnvironmentVariables": _env_list(env),
                "WorkingDirectory": DATA_ROOT,
            },
        },
        "Resources": resources(grant.cpu, grant.ram_bytes, grant.disk_bytes, len(grant.gpus)),
        "Network": {"Type": "Full" if record.get("network") else "None"},
        "Timeouts": _timeouts(int(record["time_limit_seconds"]), record),
        "InputSources": [
            _mount(f"{folder}/{name}", f"{DATA_ROOT}/{name}", name not in READ_ONLY)
            for name in CONTRACT_FOLDERS
        ],
    }


def pod_task(record: Record, step: str) -> Obj:
    pod: Record = record["pod"]
    # The key is read from the job's folder by the pod's own shell, so no job spec holds it.
    script = f'privateKey="$(cat {POD_KEY_PATH})" && export privateKey && exec python3 -m {POD_MODULES[step]}'
    return {
        "Name": step,
        "Engine": {
            "Type": "docker",
            "Params": {
                "Image": pod["image"]["reference"],
                "Entrypoint": ["/bin/sh", "-c"],
                "Parameters": [script],
                "EnvironmentVariables": _env_list(pod_environment(record, with_key=False)),
                "WorkingDirectory": DATA_ROOT,
            },
        },
        "Resources": resources(float(pod["cpu"]), int(pod["ram_bytes"]), int(pod["disk_bytes"]), 0),
        "Network": {"Type": str(pod.get("network") or "Full")},
        "Timeouts": _timeouts(int(pod["timeout_seconds"]), record),
        "InputSources": [_mount(str(record["limits"]["node_folder"]), DATA_ROOT, True)],
    }
