"""The README's quick start, run for real: ``python -m host`` on the stub engine and the ``c2d`` command.

The commands come from README.md itself: every fenced block that follows a
``<!-- tested:KIND -->`` marker is run as written, so the README cannot drift
from what works. Kinds:

- ``node``: the line that starts the node (its ``VAR=value`` prefixes are
  applied, with paths taken relative to the checkout);
- ``shell``: ``c2d ...`` and ``cat FILE  # expected content`` lines, run in
  order from a copy of the checkout's ``examples/`` (``<JOB>`` is the job id of
  the last stage of the latest ``start``);
- ``python``: snippets run as they are, against this node.

Each ``c2d`` command gets ``--node`` (the README's node listens on the default
address; this one on a free port); ``start`` also gets ``--json`` so that the
job ids are read from JSON rather than scraped from text.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import stat
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import requests

from c2d import auth
from c2d.cli.keys import read_key
from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import NodeProcess, free_port, running_node

REPO_ROOT = Path(__file__).resolve().parent.parent
README = REPO_ROOT / "README.md"
DEFAULT_ADDRESS = "127.0.0.1:8470"
S = common_pb2.JobStatus
MARKER = re.compile(
    r"^[ \t]*<!-- tested:(\w+) -->[ \t]*\n(?:[ \t]*\n)*([ \t]*)```\w*\n(.*?)^[ \t]*```", re.M | re.S
)
ASSIGNMENT = re.compile(r"^([A-Z_][A-Z0-9_]*)=(.*)$")
# Commands the quick start must keep showing (a README that lost its blocks would otherwise pass).
REQUIRED = [
    "c2d key new -o me.key",
    "c2d --key-file me.key envs",
    "c2d --key-file me.key start examples/hello.json --env stub-local --free --wait",
    "c2d --key-file me.key result <JOB> -o out/",
    "c2d --key-file me.key logs <JOB>",
    "c2d --key-file .c2d/node_key admin assets register examples/dataset.json",
    "c2d --key-file .c2d/dev-consumer.key escrow deposit 10",
    "c2d --key-file .c2d/dev-consumer.key start examples/hello.json --env stub-local --wait",
    "c2d --key-file .c2d/dev-consumer.key proof <WORKFLOW>",
    "c2d --key-file me.key dashboard",
]


@dataclass
class Block:
    kind: str
    lines: list[str]


def readme_blocks(text: str) -> list[Block]:
    blocks = []
    for match in MARKER.finditer(text):
        kind, indent, body = match.groups()
        lines = [line.removeprefix(indent) for line in body.splitlines()]
        blocks.append(Block(kind, lines))
    return blocks


BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def blocks(kind: str) -> list[Block]:
    return [block for block in BLOCKS if block.kind == kind]


def c2d_executable() -> str:
    """The ``c2d`` console script of this interpreter's environment (the one the README installs)."""
    beside = Path(sys.executable).with_name("c2d")
    found = str(beside) if beside.is_file() else shutil.which("c2d")
    assert found, "the c2d console script is not installed (pip install -r requirements-dev.txt)"
    return found


@dataclass
class Run:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str
    doc: Any = None


@dataclass
class Terminal:
    """Terminal 2 of the quick start: runs README lines in ``cwd`` against ``node``."""

    cwd: Path
    node: str
    dashboard: str  # the node's dashboard, http://HOST:PORT (the README's is the default one)
    c2d: str = field(default_factory=c2d_executable)
    job: str | None = None
    workflow: str | None = None
    runs: list[Run] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        env = {
            k: v
            for k, v in os.environ.items()
            if k not in ("C2D_NODE", "C2D_KEY_FILE", "C2D_RPC_URL", "C2D_DASHBOARD")
        }
        dev_chain = self.cwd / ".c2d" / "devchain.json"
        if dev_chain.exists():  # the README's `export C2D_RPC_URL=...`, with this node's dev chain
            env["C2D_RPC_URL"] = json.loads(dev_chain.read_text())["rpc_url"]
        return {**env, "NO_COLOR": "1", "COLUMNS": "200", "C2D_DASHBOARD": self.dashboard}

    def c2d_run(self, args: list[str]) -> Run:
        argv = [self.c2d, "--node", self.node, *args]
        done = subprocess.run(
            argv, cwd=self.cwd, env=self.env, capture_output=True, text=True, timeout=60, check=False
        )
        run = Run(argv, done.returncode, done.stdout, done.stderr)
        self.runs.append(run)
        return run

    def line(self, line: str) -> None:
        command, _, expected = line.partition("  #")
        words = shlex.split(command, comments=True)
        if not words:
            return
        if words[0] == "cat":
            (path,) = words[1:]
            assert expected.strip(), f"{line!r}: say what the file holds in a comment after two spaces"
            assert (self.cwd / path).read_text().strip() == expected.strip(), line
            return
        assert words[0] == "c2d", f"the quick start may only use c2d and cat; this test cannot run {line!r}"
        placeholders = {"<JOB>": self.job, "<WORKFLOW>": self.workflow}
        args = [placeholders.get(word, word) for word in words[1:]]
        assert None not in args, f"{line!r} uses <JOB> or <WORKFLOW> before any start"
        is_start = "start" in args
        assert not is_start or "--wait" in args, f"{line!r}: the next commands need the stages ended"
        run = self.c2d_run([*args, "--json"] if is_start else args)
        assert run.returncode == 0, f"{line!r} exited {run.returncode}:\n{run.stdout}{run.stderr}"
        if is_start:
            run.doc = json.loads(run.stdout)
            stages = run.doc["stages"]
            assert [s["status"] for s in stages] == ["finished"] * len(stages), run.doc
            self.job = stages[-1]["job_id"]
            self.workflow = run.doc["workflow_id"]

    def find(self, *words: str) -> list[Run]:
        return [run for run in self.runs if all(w in run.argv for w in words)]


def node_env(block: Block, checkout: Path) -> dict[str, str]:
    """The ``VAR=value`` prefixes of the README's node command, paths made absolute in ``checkout``."""
    (line,) = [line for line in block.lines if line.strip() and not line.startswith("#")]
    words = shlex.split(line)
    env = {}
    while words and (assignment := ASSIGNMENT.match(words[0])):
        words.pop(0)
        name, value = assignment.groups()
        env[name] = str(checkout / value) if value and (checkout / value).exists() else value
    assert words == ["python", "-m", "host"], f"the README starts the node some other way: {line!r}"
    return env


@pytest.fixture
def checkout(tmp_path: Path) -> Path:
    """What the README's commands need of a fresh clone: examples/ (copied: the commands write beside it)."""
    shutil.copytree(REPO_ROOT / "examples", tmp_path / "examples")
    return tmp_path


def test_the_readme_shows_the_quick_start() -> None:
    shown = [line.partition("  #")[0].strip() for block in blocks("shell") for line in block.lines]
    for command in REQUIRED:
        assert command in shown, f"README.md's tested blocks no longer show {command!r}"
    assert len(blocks("node")) == 1 and blocks("python")


def test_the_readme_quick_start_works_as_written(checkout: Path) -> None:
    """One test, one node: the steps depend on each other, and pytest -n 2 must not start two nodes."""
    (block,) = blocks("node")
    # The node's data dir is ./.c2d of the checkout, as with a bare `python -m host` run there.
    # As a bare `python -m host`: with its dev chain (on a free port: tests run side by side).
    dev_chain = {"C2D_CHAIN__DEV": "auto", "C2D_CHAIN__DEV_PORT": str(free_port())}
    with running_node(checkout / ".c2d", env={**node_env(block, checkout), **dev_chain}) as node:
        node.wait_listening()
        node.wait_environment("stub-local")
        terminal = Terminal(checkout, node.address, f"http://{node.http_address()}/dashboard")
        for block in blocks("shell"):
            for line in block.lines:
                terminal.line(line)
        check_key_file(terminal)
        check_envs(terminal)
        check_hello_workflow(terminal)
        check_private_dataset(terminal)
        check_python_examples(terminal, node)
        check_dashboard_link(terminal)
        check_paid_workflow(terminal)
        node.settle()


def check_paid_workflow(terminal: Terminal) -> None:
    """The paid hello workflow: locked, claimed for what ran, and its proof checks out on chain."""
    (start,) = terminal.find("start", "examples/hello.json", ".c2d/dev-consumer.key")
    assert start.doc["payment"]["status"] == "PAYMENT_STATUS_LOCKED", start.doc
    (status,) = terminal.find("status", start.doc["workflow_id"])
    assert re.search(r"^payment: claimed, locked [\d.]+ C2DT, claimed [\d.]+ C2DT", status.stdout, re.M), (
        status.stdout
    )
    (proof,) = terminal.find("proof")
    assert "on chain: Claimed in transaction 0x" in proof.stdout and "proof OK" in proof.stdout, proof.stdout
    (balance,) = terminal.find("escrow", "balance")
    assert "wallet: 990 C2DT" in balance.stdout, balance.stdout  # 10 of the 1000 deposited
    (withdraw,) = terminal.find("escrow", "withdraw")
    assert "withdrew" in withdraw.stdout.lower(), withdraw.stdout
    # The payer's dashboard lists the payment, claimed, in token units.
    link = terminal.c2d_run(["--key-file", ".c2d/dev-consumer.key", "dashboard"])
    assert link.returncode == 0, link.stderr
    page = requests.get(link.stdout.split()[0], timeout=10).text
    row = re.search(
        r"<tr><td><a href=\"/dashboard/workflows/([^\"]+)\">[^<]*</a></td><td>claimed</td><td>([^<]+)</td><td>([^<]+)</td>",
        page,
    )
    assert row and row.group(1) == start.doc["workflow_id"], page
    assert row.group(2).endswith(" C2DT") and row.group(3).endswith(" C2DT"), row.groups()


def check_dashboard_link(terminal: Terminal) -> None:
    """`c2d dashboard` printed a link that signs a browser in as me.key, showing its workflows."""
    (run,) = terminal.find("dashboard")
    link = run.stdout.split()[0]
    assert link.startswith(f"{terminal.dashboard}/login/"), run.stdout
    page = requests.get(link, timeout=10)
    assert page.url == f"{terminal.dashboard}/", page.url
    assert auth.address_of(read_key(terminal.cwd / "me.key")) in page.text
    (start,) = terminal.find("start", "examples/hello.json", "--free")
    assert start.doc["workflow_id"] in page.text


def check_key_file(terminal: Terminal) -> None:
    (run,) = terminal.find("key", "new")
    key_file = terminal.cwd / "me.key"
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert run.stdout.split() == [auth.address_of(read_key(key_file)), "me.key"]


def check_envs(terminal: Terminal) -> None:
    (run,) = terminal.find("envs")
    assert re.search(r"^stub-local\s+external_stub\s+healthy\s.*\byes\b", run.stdout, re.M), run.stdout


def check_hello_workflow(terminal: Terminal) -> None:
    (start,) = terminal.find("start", "examples/hello.json", "--free")
    first, second = start.doc["stages"]
    assert (first["index"], second["index"]) == (0, 1)
    # Stage 1 found stage 0's output under inputs/<stage 0's job id>/ ...
    (logs,) = terminal.find("logs", second["job_id"])
    assert logs.stdout.strip() == f"stage 1: read inputs/{first['job_id']}/hello.txt"
    (result,) = terminal.find("result", second["job_id"])
    assert "saved out/shout.txt (24 bytes)" in result.stdout
    out = terminal.cwd / "out"
    assert (out / "shout.txt").read_text() == "HELLO, COMPUTE-TO-DATA!\n"
    assert {"shout.txt", "algorithm.log"} <= {p.name for p in out.iterdir()}
    assert not list(out.glob("*.part"))
    # ... and started only once stage 0 had finished.
    with Client(terminal.node, read_key(terminal.cwd / "me.key")) as client:
        jobs = {job.job_id: job for job in client.status(workflow_id=start.doc["workflow_id"])}

    def first_time(job_id: str, status: int) -> int:
        return next(e.time.ToNanoseconds() for e in jobs[job_id].history if e.status == status)

    finished = first_time(first["job_id"], S.JOB_STATUS_FINISHED)
    assert first_time(second["job_id"], S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE) < finished
    assert finished <= first_time(second["job_id"], S.JOB_STATUS_PROVISIONING)


def check_private_dataset(terminal: Terminal) -> None:
    (register,) = terminal.find("register")
    assert register.stdout.strip() == "registered did:op:example-numbers"
    (listing,) = terminal.find("admin", "list")
    assert "did:op:example-numbers" in listing.stdout
    stats = terminal.cwd / "out" / "stats"
    assert (stats / "algorithm.log").read_text().strip() == "rows=10 sum=385 mean=38.50"
    # Nothing the consumer got names where the operator keeps the dataset.
    data_root = str((terminal.cwd / "examples" / "data").resolve())
    seen = [run.stdout + run.stderr for run in terminal.runs if "me.key" in run.argv]
    seen += [path.read_text(errors="replace") for path in stats.iterdir()]
    assert not [text for text in seen if data_root in text]
    # Operator commands need the node's key.
    refused = terminal.c2d_run(["--key-file", "me.key", "admin", "assets", "list"])
    assert refused.returncode == 3
    assert "PERMISSION_DENIED" in refused.stderr and "Traceback" not in refused.stderr


def check_python_examples(terminal: Terminal, node: NodeProcess) -> None:
    for block in blocks("python"):
        code = "\n".join(block.lines)
        assert DEFAULT_ADDRESS in code, code
        done = subprocess.run(
            [sys.executable, "-c", code.replace(DEFAULT_ADDRESS, node.address)],
            cwd=terminal.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert done.returncode == 0, f"{code}\n{done.stderr}"
        assert "shout.txt" in done.stdout or "stub-local" in done.stdout, done.stdout
