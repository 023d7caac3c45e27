"""Class 4 of issue 10: the development engine (external_stub) is not a way into the node.

A consumer's algorithm (rawcode, Python) runs through a real node with real pods
on a plain ``python -m host`` and tries everything a local process could: read
the node key, the database, the private data root, its own stage's pod key (in
its environment, in the job directory's ``spec.json``, in ``/proc/*/environ``
of a process holding it), write outside its job directory, and reach the node's
gRPC port when its environment allows no network. It writes what it saw into
its outputs; the test downloads them as the consumer would and asserts that
every attempt failed. Both sandboxes run: bubblewrap (when installed) and the
util-linux fallback (``sandbox = "unshare"``). Where no sandbox works, only the
operator's own jobs run, unless the operator sets ``unsafe_unconfined``.
"""

from __future__ import annotations

import http.server
import json
import os
import shutil
import subprocess
import threading
import uuid
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from nodeproc import NodeProcess, running_node, wait_for

S = common_pb2.JobStatus
ENV = "stub-local"
DATA_SECRET = "operator-private-rows-7f3a"
pytestmark = pytest.mark.timeout(300)

# The consumer's algorithm. PATHS is filled in by the test: the attacker is assumed to know them.
ATTACK = r"""
import json, os, socket, time
P = json.loads(PATHS)
out = os.path.join(os.environ["C2D_DATA"], "outputs")
deadline = time.time() + 120
while not os.path.exists(os.path.join(out, "go")) and time.time() < deadline:
    time.sleep(0.1)
seen = {"uid": os.getuid(), "env": dict(os.environ)}

def read(path):
    try:
        with open(path, "rb") as f:
            return "read:" + f.read(4096).decode("latin-1")
    except OSError as exc:
        return "failed:" + type(exc).__name__

for name in ("node_key", "database", "data_file", "spec"):
    seen[name] = read(P[name])
seen["job_dir"] = sorted(os.listdir(os.environ["C2D_DATA"]))
job_files = {}
for entry in seen["job_dir"]:
    path = os.path.join(os.environ["C2D_DATA"], entry)
    if os.path.isfile(path):
        job_files[entry] = read(path)
seen["job_files"] = job_files
environs = {}
for pid in os.listdir("/proc"):
    if pid.isdigit():
        text = read("/proc/%s/environ" % pid)
        if text.startswith("read:"):
            environs[pid] = text
seen["environs"] = environs
writes = {}
for name in ("outside_job", "data_dir", "host_tmp"):
    try:
        with open(P[name], "w") as f:
            f.write("pwned")
        writes[name] = "written"
    except OSError as exc:
        writes[name] = "failed:" + type(exc).__name__
seen["writes"] = writes
try:
    socket.create_connection(("127.0.0.1", P["port"]), timeout=5).close()
    seen["node_port"] = "connected"
except OSError as exc:
    seen["node_port"] = "failed:" + type(exc).__name__
with open(os.path.join(out, "seen.json"), "w") as f:
    json.dump(seen, f)
"""


def backends() -> list[object]:
    bwrap = pytest.mark.skipif(shutil.which("bwrap") is None, reason="bubblewrap is not installed")
    # As root, bwrap runs as nobody and cannot bind a job dir under the node's private state dir;
    # root takes the unshare route (the default's order), which this module runs either way.
    as_root = pytest.mark.skipif(os.geteuid() == 0, reason="as root the stub confines with unshare")
    return [pytest.param("bwrap", marks=[bwrap, as_root]), "unshare"]


def stub_env(root: Path, **extra: str) -> dict[str, str]:
    env = {
        "C2D_ASSETS__DATA_ROOT": str(root),
        "C2D_SECURITY__ALLOW_HOSTS": '["127.0.0.1"]',  # the held input server below plays a public one
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": (
            f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2, allow_network = false}}]'
        ),
    }
    return {**env, **{f"C2D_ENGINES__EXTERNAL_STUB__{k.upper()}": v for k, v in extra.items()}}


@pytest.fixture(params=backends())
def node(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[NodeProcess]:
    root = tmp_path / "data-root"
    root.mkdir()
    (root / "rows.csv").write_text(DATA_SECRET)
    data_dir = tmp_path / "node"
    with running_node(data_dir, env=stub_env(root, sandbox=f'"{request.param}"')) as node:
        node.wait_environment(ENV)
        yield node
        node.settle()


def workflow(script: str) -> dict[str, object]:
    stage = {
        "index": 0,
        "algorithm": {
            "rawcode": script,
            "container": {"entrypoint": "python3 $ALGO", "image": "python", "tag": "3"},
        },
    }
    return {"environment": ENV, "stages": [stage]}


def test_a_consumer_algorithm_reaches_nothing_of_the_node(node: NodeProcess, tmp_path: Path) -> None:
    data_dir = node.data_dir.resolve()
    root = (tmp_path / "data-root").resolve()
    host_tmp = Path("/tmp") / f"c2d-confinement-{uuid.uuid4().hex}"
    jobs = data_dir / "engines" / "external_stub" / "jobs"
    paths = {
        "node_key": str(data_dir / "node_key"),
        "database": str(data_dir / "node.db"),
        "data_file": str(root / "rows.csv"),
        "spec": "",  # its own job's spec.json, found from $C2D_DATA (the job id is not known in advance)
        "outside_job": str(jobs / "pwned"),
        "data_dir": str(data_dir / "pwned"),
        "host_tmp": str(host_tmp),
        "port": node.port,
    }
    script = f"import json, os\nP0 = json.loads({json.dumps(json.dumps(paths))})\n"
    script += "P0['spec'] = os.path.join(os.environ['C2D_DATA'], 'spec.json')\nPATHS = json.dumps(P0)\n"
    script += ATTACK
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start(workflow(script), free=True)
        (job_id,) = started.job_ids
        job_dir = jobs / job_id

        def running() -> bool:
            (job,) = consumer.status(job_id=job_id)
            assert not job.terminal, (job, b"".join(consumer.logs(job_id)).decode(errors="replace"))
            return job.status == S.JOB_STATUS_RUNNING

        wait_for(running, 120, "the attacking algorithm to run", interval=0.2)
        pod_key = str(json.loads((job_dir / "spec.json").read_text())["pod"]["private_key"])
        # A process holding the pod key in its environment, as a pod does, while the algorithm looks.
        holder = subprocess.Popen(["sleep", "300"], env={"privateKey": pod_key, "PATH": "/usr/bin:/bin"})
        try:
            (job_dir / "outputs" / "go").write_text("")
            (job,) = consumer.wait(started.workflow_id, timeout=180)
        finally:
            holder.kill()
            holder.wait()
        log = b"".join(consumer.logs(job_id)).decode(errors="replace")
        assert job.status == S.JOB_STATUS_FINISHED, (job, log[-2000:])
        out = tmp_path / "out"
        for path in consumer.results(job_id, out):
            if zipfile.is_zipfile(path):  # several outputs come zipped
                with zipfile.ZipFile(path) as outputs:
                    outputs.extractall(out)
    seen = json.loads((out / "seen.json").read_text())
    text = json.dumps(seen)
    node_key = node.node_key()
    assert node_key.removeprefix("0x") not in text, "the node key"
    assert pod_key.removeprefix("0x") not in text, "the stage's pod key"
    assert "privateKey" not in text, "a pod key variable"
    assert "SQLite format" not in text, "the database"
    assert DATA_SECRET not in text, "the data root"
    for name in ("node_key", "database", "data_file", "spec"):
        assert seen[name].startswith("failed:"), (name, seen[name])
    assert "spec.json" not in seen["job_dir"] and "events.jsonl" not in seen["job_dir"], seen["job_dir"]
    assert seen["writes"]["outside_job"].startswith("failed:"), seen["writes"]
    assert seen["writes"]["data_dir"].startswith("failed:"), seen["writes"]
    assert not (jobs / "pwned").exists() and not (data_dir / "pwned").exists() and not host_tmp.exists()
    assert seen["node_port"].startswith("failed:"), "no network: the node's gRPC port is out of reach"
    assert seen["uid"] != 0, "the algorithm runs unprivileged"


class HeldInput:
    """A consumer's input server on 127.0.0.1 that answers only once released, so that
    pod-configuration can be looked at while it waits."""

    def __init__(self) -> None:
        self.asked, self.released = threading.Event(), threading.Event()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.asked.set()
                outer.released.wait(120)
                body = b"n\n1\n"
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/data.csv"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()


def pod_processes(job_id: str) -> list[int]:
    """The interpreters running this job's pod-configuration (``python -m pods.configuration``,
    not the sandbox's wrappers around it; its own variables name the job)."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            cmdline = (entry / "cmdline").read_bytes()
            environ = (entry / "environ").read_bytes()
        except OSError:
            continue
        if cmdline.split(b"\0")[1:3] == [b"-m", b"pods.configuration"] and (
            f"jobId={job_id}".encode() in environ.split(b"\0")
        ):
            found.append(int(entry.name))
    return found


def test_the_pods_run_confined_too(node: NodeProcess, tmp_path: Path) -> None:
    """pod-configuration handles what consumers send (downloads, archives): it runs in the same
    sandbox, unprivileged, with the job's folders but not its spec.json, nor the node's data dir.
    Looked at from outside while it waits on a consumer's input server."""
    held = HeldInput()
    data_dir = node.data_dir.resolve()
    try:
        wf = workflow("print(open(__import__('os').environ['C2D_DATA'] + '/inputs/0/data.csv').read())")
        wf["stages"][0]["input"] = [{"index": 0, "files": {"type": "url", "url": held.url}}]  # type: ignore[index]
        with Client(node.address, auth.new_private_key()) as consumer:
            started = consumer.start(wf, free=True)
            (job_id,) = started.job_ids
            job_dir = data_dir / "engines" / "external_stub" / "jobs" / job_id
            assert held.asked.wait(120), "pod-configuration never asked for the input"
            pods = wait_for(lambda: pod_processes(job_id), 30, "the pod's process")
            for pid in pods:
                root = Path(f"/proc/{pid}/root")
                uids = next(
                    line
                    for line in Path(f"/proc/{pid}/status").read_text().splitlines()
                    if line.startswith("Uid:")
                )
                if os.geteuid() == 0:
                    assert uids.split()[1:] == ["65534"] * 4, uids
                assert (root / str(job_dir).lstrip("/") / "inputs").is_dir()
                assert not (root / str(job_dir).lstrip("/") / "spec.json").exists()
                assert not (root / str(data_dir).lstrip("/") / "node_key").exists()
                assert not (root / str(data_dir).lstrip("/") / "node.db").exists()
            held.released.set()
            (job,) = consumer.wait(started.workflow_id, timeout=180)
            assert job.status == S.JOB_STATUS_FINISHED, [(e.status, e.message) for e in job.history]
            assert "n\n1" in b"".join(consumer.logs(job_id)).decode()
    finally:
        held.close()


def test_an_unconfined_stub_runs_only_the_operators_jobs(tmp_path: Path) -> None:
    root = tmp_path / "data-root"
    root.mkdir()
    with running_node(tmp_path / "node", env=stub_env(root, sandbox='"none"')) as node:
        node.wait_environment(ENV)
        script = "open(__import__('os').environ['C2D_DATA'] + '/outputs/ok.txt', 'w').write('ok')"
        with Client(node.address, auth.new_private_key()) as consumer:
            started = consumer.start(workflow(script), free=True)
            (job,) = consumer.wait(started.workflow_id, timeout=120)
        assert job.status == S.JOB_STATUS_CONTAINER_CREATION_FAILED, job
        assert "bubblewrap" in str(job) and "unsafe_unconfined" in str(job), job
        with Client(node.address, node.node_key()) as operator:
            started = operator.start(workflow(script), free=True)
            (job,) = operator.wait(started.workflow_id, timeout=120)
            assert job.status == S.JOB_STATUS_FINISHED, job
            (engine,) = [e for e in operator.engines() if e.name == "external_stub"]
            assert "WARNING" in engine.health_description and "operator" in engine.health_description, engine
        assert any("UNCONFINED" in line for line in node.raw_lines)
        node.settle()


def test_unsafe_unconfined_runs_anyones_jobs_with_a_warning(tmp_path: Path) -> None:
    root = tmp_path / "data-root"
    root.mkdir()
    env = stub_env(root, sandbox='"none"', unsafe_unconfined="true")
    with running_node(tmp_path / "node", env=env) as node:
        node.wait_environment(ENV)
        script = "open(__import__('os').environ['C2D_DATA'] + '/outputs/ok.txt', 'w').write('ok')"
        with Client(node.address, auth.new_private_key()) as consumer:
            started = consumer.start(workflow(script), free=True)
            (job,) = consumer.wait(started.workflow_id, timeout=120)
        assert job.status == S.JOB_STATUS_FINISHED, job
        with Client(node.address, node.node_key()) as operator:
            (engine,) = [e for e in operator.engines() if e.name == "external_stub"]
            assert (
                "UNCONFINED" in engine.health_description and "unsafe_unconfined" in engine.health_description
            ), engine
        assert any("UNCONFINED" in line for line in node.raw_lines)
        node.settle()


# Each backend on its own, as root too -------------------------------------------------------

SANDBOX_ATTACK = """
id -u > outputs/uid
cat "$SECRET" > outputs/secret 2>/dev/null && echo read > outputs/secret-read
echo pwned > "$OUTSIDE" 2>/dev/null
echo pwned > /usr/pwned 2>/dev/null && echo written > outputs/usr-written
echo mine > /tmp/mine && ls /tmp > outputs/tmp
python3 -c "import socket; socket.create_connection(('127.0.0.1', $PORT), timeout=5)" \
  2> outputs/port-error && echo connected > outputs/port
ls inputs > outputs/inputs
echo pwned > inputs/new 2>/dev/null && echo written > outputs/inputs-written
true
"""


@pytest.mark.parametrize("backend", ["bwrap", "unshare"])
def test_each_sandbox_backend_confines_an_algorithm(backend: str) -> None:
    """The sandbox alone, without a node, so that bwrap runs as root too (through the node, root
    takes the unshare route): a job folder in a place nobody may reach is bound, what lies beside
    it is not (a write there lands in the sandbox's own /tmp, never on the host), /usr and inputs
    stay read-only, /tmp is private, the network is empty, the user is not root. Run in a
    world-reachable scratch folder, as the probe at Configure does."""
    import socket
    import tempfile

    from c2d_external_stub.sandbox import Sandbox, probe
    from c2d_external_stub.shim import BASE_PATH

    if shutil.which(backend) is None:
        pytest.fail(f"{backend} is not installed (scripts/setup-dev installs bubblewrap)")
    scratch = Path(tempfile.mkdtemp(prefix="c2d-sandbox-", dir="/tmp"))
    host_marker = Path(tempfile.mkstemp(prefix="c2d-host-tmp-", dir="/tmp")[1])
    listener = socket.create_server(("127.0.0.1", 0))
    try:
        os.chmod(scratch, 0o755)
        sandbox = Sandbox(backend)
        assert probe(sandbox, scratch / "probe") is None
        job = scratch / "job"
        for name in ("inputs", "transformations", "outputs", "logs"):
            (job / name).mkdir(parents=True)
        (job / "inputs" / "data.csv").write_text("n\n1\n")
        secret = job / "spec.json"  # where a pod key lies, beside the contract folders
        secret.write_text("privateKey")
        secret.chmod(0o600)
        sandbox.prepare(job)
        env = {
            "PATH": BASE_PATH,
            "SECRET": str(secret),
            "OUTSIDE": str(scratch / "outside"),
            "PORT": str(listener.getsockname()[1]),
        }
        run = subprocess.run(
            sandbox.argv(SANDBOX_ATTACK, job, network=False),
            cwd=job,
            env=env,
            capture_output=True,
            timeout=60,
        )
        assert run.returncode == 0, run.stderr.decode(errors="replace")
        outputs = {p.name: p.read_text().strip() for p in (job / "outputs").iterdir()}
        assert outputs["uid"] != "0" or not sandbox.as_root, outputs
        assert "secret" not in outputs or outputs["secret"] == "", outputs
        assert "secret-read" not in outputs, outputs
        assert "usr-written" not in outputs and "inputs-written" not in outputs, outputs
        # A private /tmp: what the algorithm writes there stays there, and the host's is not seen.
        assert "mine" in outputs["tmp"].split() and host_marker.name not in outputs["tmp"], outputs
        assert "port" not in outputs and "Error" in outputs["port-error"], outputs  # tried, and failed
        assert outputs["inputs"] == "data.csv", outputs
        assert not (scratch / "outside").exists() and not Path("/usr/pwned").exists()
    finally:
        listener.close()
        host_marker.unlink()
        shutil.rmtree(scratch, ignore_errors=True)
