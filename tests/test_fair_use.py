"""Fair use of an environment, as an operator configures it: per-job minima and maxima and
constraints across resources (``[environments."<id>".resources.<resource>]``).

A real node with the stub engine, over real gRPC: what ``GetEnvironments`` shows is what
InitializeCompute (the quote) and FreeStartCompute refuse or accept, with a message that names
the resource, the amount and the bound. A malformed table stops the node at start; terms that
name a resource the environment lacks keep that environment off the list rather than leave
the resource unlimited.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from refusals import refused_quote_and_start

from c2d import auth
from c2d.cli.main import main
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.config import ConfigError, load_config
from host.errors import RequestError
from host.orchestrator.validation import grant_request
from nodeproc import NodeProcess, running_node, wait_for

ENV = "stub-fair"
TYPO_ENV = "stub-typo"  # its terms name a resource it does not have
TOO_BIG_ENV = "stub-too-big"  # its terms ask a job for more than the engine offers one
TOKEN = "0x" + "cd" * 20
PAYMENT = compute_pb2.Payment(chain_id=31337, token_address=TOKEN)
NOT_OFFERED = "environment not offered: its terms do not fit it"
ENGINE = f"""
[engines.external_stub]
enabled = true

[[engines.external_stub.environments]]
id = "{ENV}"
cpu = 4
ram_gib = 8
disk_gib = 2

[[engines.external_stub.environments]]
id = "{TYPO_ENV}"
cpu = 1
ram_gib = 1
disk_gib = 1

[[engines.external_stub.environments]]
id = "{TOO_BIG_ENV}"
cpu = 1
ram_gib = 1
disk_gib = 1
"""
TERMS = f"""
[environments."{ENV}".resources.cpu]
max = 2
[environments."{ENV}".resources.ram]
max = 6
constraints = [{{ id = "cpu", min = 1, max = 2 }}]
[environments."{ENV}".resources.disk]
min = 2

[environments."{ENV}".free]
max_job_duration_seconds = 60
resources = {{ ram = 4 }}

[[environments."{ENV}".fees]]
chain_id = 31337
token_address = "{TOKEN}"
token_symbol = "TST"
prices = [
  {{ resource_id = "cpu", price_per_unit_minute = "1000" }},
  {{ resource_id = "ram", price_per_unit_minute = "100" }},
]

[environments."{TYPO_ENV}".resources.memory]
max = 1

[environments."{TOO_BIG_ENV}".resources.cpu]
min = 2
"""


def workflow(script: str = "true", **resources: float) -> dict[str, Any]:
    return {
        "environment": ENV,
        "maxJobDuration": 60,
        "resources": [{"id": rid, "amount": amount} for rid, amount in resources.items()],
        "stages": [
            {
                "algorithm": {
                    "rawcode": script,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                }
            }
        ],
    }


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    root = tmp_path_factory.mktemp("fair-use")
    config = root / "node.toml"
    config.write_text(ENGINE + TERMS)
    with running_node(root / "data", config=config) as node:
        node.wait_environment(ENV)
        yield node
        node.settle()


@pytest.fixture
def client(node: NodeProcess) -> Iterator[Client]:
    with Client(node.address, auth.new_private_key()) as client:
        yield client


def refused(client: Client, doc: dict[str, Any]) -> C2DError:
    """The refusal of both the quote (InitializeCompute) and the start, which must agree."""
    return refused_quote_and_start(client, doc, PAYMENT)


def resources_of(env: common_pb2.Environment) -> dict[str, common_pb2.Resource]:
    return {r.id: r for r in env.resources}


def test_get_environments_shows_the_per_job_terms(node: NodeProcess) -> None:
    env = next(e for e in node.environments() if e.id == ENV)
    cpu, ram, disk = (resources_of(env)[rid] for rid in ("cpu", "ram", "disk"))
    assert (cpu.total, cpu.min, cpu.max) == (4, 1, 2)
    assert (ram.total, ram.min, ram.max) == (8, 1, 6)
    assert (disk.min, disk.max) == (2, 2)
    assert [(c.id, c.min, c.max) for c in ram.constraints] == [("cpu", 1, 2)]
    assert not cpu.constraints
    (free_ram,) = env.free.resources  # the free tier's cap keeps the constraints
    assert (free_ram.id, free_ram.max) == ("ram", 4)
    assert [(c.id, c.min, c.max) for c in free_ram.constraints] == [("cpu", 1, 2)]


def test_the_cli_lists_the_per_job_terms(node: NodeProcess, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--node", node.address, "envs"]) == 0
    (row,) = [line for line in capsys.readouterr().out.splitlines() if line.startswith(ENV)]
    assert "cores [1..2/job]" in row  # available/total before it changes as jobs run
    assert "[1..6/job; 1..2/cpu]" in row
    assert "[2..2/job]" in row
    assert main(["--node", node.address, "--json", "envs"]) == 0
    (listed,) = [env for env in json.loads(capsys.readouterr().out) if env["id"] == ENV]
    ram = next(r for r in listed["resources"] if r["id"] == "ram")
    assert (ram["max"], ram["constraints"]) == (6, [{"id": "cpu", "min": 1, "max": 2}])


def test_more_than_the_per_job_maximum_is_refused(client: Client) -> None:
    error = refused(client, workflow(cpu=3))
    assert error.code == "INVALID_ARGUMENT", error
    assert "stage 0: cpu 3 cores is above the maximum of 2 cores per job" in error.message


def test_less_than_the_per_job_minimum_is_refused(client: Client) -> None:
    error = refused(client, workflow(disk=1))
    assert error.code == "INVALID_ARGUMENT", error
    assert "stage 0: disk 1 GiB is below the minimum of 2 GiB per job" in error.message


def test_more_than_a_constraint_allows_is_refused(client: Client) -> None:
    error = refused(client, workflow(cpu=1, ram=3))
    assert error.code == "INVALID_ARGUMENT", error
    assert "stage 0: ram 3 GiB is more than 2 GiB per cpu for 1 cpu (2 GiB)" in error.message


def test_less_than_a_constraint_needs_is_refused(client: Client) -> None:
    error = refused(client, workflow(cpu=2, ram=1))
    assert error.code == "INVALID_ARGUMENT", error
    assert "stage 0: ram 1 GiB is less than 1 GiB per cpu for 2 cpu (2 GiB)" in error.message


def test_a_request_within_the_constraints_is_quoted(client: Client) -> None:
    quote = client.initialize(workflow(cpu=2, ram=3), PAYMENT).quote
    assert quote.amount == str(2 * 1000 + 3 * 100)  # one minute


def test_an_unnamed_resource_defaults_to_what_its_constraints_need(client: Client) -> None:
    """cpu 2 without ram: ram's per-job minimum (1 GiB) is raised to 1 GiB per cpu, not refused."""
    quote = client.initialize(workflow(cpu=2), PAYMENT).quote
    assert quote.amount == str(2 * 1000 + 2 * 100)


def test_exactly_the_maxima_are_granted_and_run(client: Client) -> None:
    started = client.start(workflow(cpu=2, ram=4), free=True)
    (job,) = client.wait(started, timeout=60)
    assert job.status == common_pb2.JOB_STATUS_FINISHED, job.status_text
    assert {r.id: r.amount for r in job.resources} == {"cpu": 2, "ram": 4, "disk": 2}


def test_environments_whose_terms_do_not_fit_are_not_offered(node: NodeProcess) -> None:
    def reported() -> dict[str, str]:
        return {r["environment"]: r["problem"] for r in node.log_events(NOT_OFFERED)}

    problems = wait_for(lambda: len(reported()) == 2 and reported(), 30, "both environments reported")
    assert (
        "resources.memory names resource 'memory', which environment 'stub-typo' lacks" in problems[TYPO_ENV]
    )
    assert "a job would need at least 2 but may have at most 1" in problems[TOO_BIG_ENV]
    offered = {env.id for env in node.environments()}
    assert ENV in offered and not offered & {TYPO_ENV, TOO_BIG_ENV}


MALFORMED = {
    "min above max": (f"[environments.{ENV}.resources.ram]\nmin = 4\nmax = 2\n", "min 4 is more than max 2"),
    "max zero": (f"[environments.{ENV}.resources.ram]\nmax = 0\n", "resources.ram.max must be more than 0"),
    "amount not a number": (f'[environments.{ENV}.resources.ram]\nmax = "8G"\n', "resources.ram.max: want"),
    "unknown setting": (f"[environments.{ENV}.resources.ram]\nmaximum = 4\n", "unknown settings: maximum"),
    "resource not a table": (
        f"[environments.{ENV}.resources]\nram = 4\n",
        f"[environments.{ENV}.resources.ram]",
    ),
    "constraint min above max": (
        f'[environments.{ENV}.resources.ram]\nconstraints = [{{ id = "cpu", min = 4, max = 1 }}]\n',
        "min 4 per cpu is more than max 1 per cpu",
    ),
    "constraint without id": (
        f"[environments.{ENV}.resources.ram]\nconstraints = [{{ min = 1 }}]\n",
        "constraints[0].id must name the other resource",
    ),
    "constraint on itself": (
        f'[environments.{ENV}.resources.ram]\nconstraints = [{{ id = "ram", max = 1 }}]\n',
        "cannot be constrained by itself",
    ),
    "constraint max zero": (
        f'[environments.{ENV}.resources.ram]\nconstraints = [{{ id = "cpu", min = 1, max = 0 }}]\n',
        "constraints[0].max must be more than 0",
    ),
    "constraint without bounds": (
        f'[environments.{ENV}.resources.ram]\nconstraints = [{{ id = "cpu" }}]\n',
        "needs a min or a max",
    ),
    "constraint twice": (
        f'[environments.{ENV}.resources.ram]\nconstraints = [{{ id = "cpu", max = 1 }}, {{ id = "cpu", min = 1 }}]\n',
        "names a resource twice",
    ),
    "unknown constraint setting": (
        f'[environments.{ENV}.resources.ram]\nconstraints = [{{ id = "cpu", per = 1 }}]\n',
        "unknown settings: per",
    ),
    "free cap below the per-job minimum": (
        f"[environments.{ENV}.resources.ram]\nmin = 2\n[environments.{ENV}.free]\nresources = {{ ram = 1 }}\n",
        "free.resources.ram = 1 is below",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_fair_use_terms_are_refused_when_the_config_loads(tmp_path: Path, case: str) -> None:
    table, named = MALFORMED[case]
    path = tmp_path / "node.toml"
    path.write_text(ENGINE + table)
    with pytest.raises(ConfigError) as caught:
        load_config(path, environ={})
    assert named in str(caught.value)


def test_the_node_does_not_start_with_min_above_max(tmp_path: Path) -> None:
    path = tmp_path / "node.toml"
    path.write_text(ENGINE + MALFORMED["min above max"][0])
    done = subprocess.run(
        [sys.executable, "-m", "host", "--config", str(path), "--data-dir", str(tmp_path / "data")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert f"environments.{ENV}.resources.ram: min 4 is more than max 2" in done.stderr
    assert "Traceback" not in done.stderr


# -- the checks alone, on environments built here: cases the stub engine has no resources for


def constrained_env() -> common_pb2.Environment:
    """cpu; ram 1..4 GiB per cpu; disk at least 2 GiB per GiB of ram; gpus at least 0.3 per GiB of
    ram (whole devices); gpuram at most 8 per gpu."""

    def resource(
        rid: str,
        kind: common_pb2.ResourceType,
        total: float,
        minimum: float = 0,
        **per: tuple[float, float],
    ) -> common_pb2.Resource:
        constraints = [common_pb2.ResourceConstraint(id=o, min=lo, max=hi) for o, (lo, hi) in per.items()]
        return common_pb2.Resource(
            id=rid, type=kind, unit="GiB", total=total, min=minimum, constraints=constraints
        )

    return common_pb2.Environment(
        id="built",
        resources=[
            resource("disk", common_pb2.RESOURCE_TYPE_DISK, 100, 1, ram=(2, 0)),
            resource("ram", common_pb2.RESOURCE_TYPE_RAM, 64, 1, cpu=(1, 4)),
            resource("cpu", common_pb2.RESOURCE_TYPE_CPU, 16, 1),
            resource("gpu", common_pb2.RESOURCE_TYPE_GPU, 4, 0, ram=(0.3, 0)),
            resource("gpuram", common_pb2.RESOURCE_TYPE_OTHER, 64, 0, gpu=(0, 8)),
        ],
    )


def granted(env: common_pb2.Environment | None = None, **asked: float) -> dict[str, float]:
    requests = [common_pb2.ResourceRequest(id=rid, amount=amount) for rid, amount in asked.items()]
    return {g["id"]: g["amount"] for g in grant_request(env or constrained_env(), requests, "stage 0")}


def test_defaults_follow_constraints_through_other_defaults() -> None:
    """cpu 4 raises ram to 4 GiB, which raises disk to 8 GiB (listed before both) and the GPUs
    to 2 (0.3 per GiB of ram, whole devices)."""
    assert granted(cpu=4) == {"cpu": 4, "ram": 4, "disk": 8, "gpu": 2}


def test_a_constraint_on_a_resource_the_job_has_none_of_does_not_apply() -> None:
    env = constrained_env()
    del env.resources[3].constraints[:]  # no GPU is needed for ram: the job may have none
    assert granted(env, cpu=1, gpuram=3) == {"cpu": 1, "ram": 1, "disk": 2, "gpuram": 3}
    with pytest.raises(RequestError, match=r"gpuram 17 GiB is more than 8 GiB per gpu for 2 gpu \(16 GiB\)"):
        granted(env, cpu=1, gpu=2, gpuram=17)


def test_a_default_that_breaks_a_constraint_says_it_was_not_asked() -> None:
    env = constrained_env()
    env.resources[1].min = 8  # ram's per-job minimum, above 4 GiB per cpu for 1 cpu
    with pytest.raises(RequestError) as caught:
        granted(env, cpu=1)
    assert "ram 8 GiB (not in the request: its default) is more than 4 GiB per cpu for 1 cpu" in str(
        caught.value
    )


@pytest.mark.parametrize("amount", [float("nan"), float("inf"), 1e308])
def test_hostile_amounts_are_refused_before_defaults_use_them(amount: float) -> None:
    with pytest.raises(RequestError, match=r"stage 0: cpu"):
        granted(cpu=amount)
