"""Registry credentials for algorithm images: the encryption, the operator's per-registry config,
a consumer's per-job credentials, and real pulls from a registry with htpasswd auth.

The registry is Debian's ``docker-registry`` on loopback (tests/image_registry.py); its image is
the offline busybox image pushed there under a fresh name, so every stage must pull it. Each
password is unique, so grepping the node's log, its database and the engine's state for it
finds leaks and nothing else.
"""

from __future__ import annotations

import base64
import http.server
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from image_registry import Registry

from c2d import auth, registry_auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from c2d.conformance.harness import EngineFactory, EventLoopThread, describe
from c2d.engine.v1 import engine_pb2
from c2d.workflow import WorkflowFormatError, parse_workflow, workflow_to_json
from c2d_docker_engine import pullauth
from c2d_docker_engine.config import RegistryAuth, parse_settings
from c2d_docker_engine.errors import EngineError
from c2d_docker_engine.jobspec import ImageRef
from nodeproc import NodeProcess, free_port, running_node, wait_for

S = common_pb2.JobStatus
DOCKER_ENV = "docker-local"
STUB_ENV = "stub-local"

# ecies-rs's known-answer test (the same scheme as eciesjs and eciespy in their default
# configuration): this key opens this blob to "hello world🌍".
KNOWN_SECRET = "e520872701d9ec44dbac2eab85512ad14ad0c42e01de56d7b528abd8524fcb47"
KNOWN_BLOB = bytes.fromhex(
    "047be1885aeb48d4d4db0c992996725d3264784fef88c5b60782f8d0f940c213227fc3f904f846d5ec3d0fba66537545"
    "01e8ebadc421aa3892a20fef33cff0206047058a4cfb4efbeae96b2d019b4ab2edce33328748a0d008a69c8f5816b72d"
    "45bd9b5a41bb6ea0127ab23057ec6fcd"
)


# The encryption -------------------------------------------------------------------------------


def test_the_scheme_opens_the_ecies_libraries_known_blob() -> None:
    assert registry_auth.unseal(KNOWN_SECRET, KNOWN_BLOB) == "hello world🌍".encode()


def test_credentials_encrypted_to_a_key_open_with_it_only() -> None:
    key, other = auth.new_private_key(), auth.new_private_key()
    blob = registry_auth.encrypt(
        registry_auth.public_key_of(key), "alice", "s3cret", "https://Registry.Example.com/v2/"
    )
    assert b"s3cret" not in blob and b"alice" not in blob
    opened = registry_auth.decrypt(key, blob)
    assert (opened.username, opened.password, opened.server) == ("alice", "s3cret", "registry.example.com")
    assert "s3cret" not in repr(opened)
    with pytest.raises(registry_auth.RegistryAuthError, match="not encrypted to this node's public key"):
        registry_auth.decrypt(other, blob)
    tampered = blob[:-1] + bytes([blob[-1] ^ 1])
    with pytest.raises(registry_auth.RegistryAuthError, match="or was altered"):
        registry_auth.decrypt(key, tampered)


@pytest.mark.parametrize(
    ("plaintext", "problem"),
    [
        (b"not json", "does not hold JSON"),
        (b'["u", "p"]', "must hold a JSON object"),
        (b'{"username": "u"}', "needs a username and a password"),
        (b'{"username": "u", "password": "p", "auth": "x"}', "unknown keys ['auth']"),
        (b'{"username": "u", "password": 7}', "password must be a string"),
    ],
)
def test_a_blob_that_holds_no_credentials_is_refused(plaintext: bytes, problem: str) -> None:
    key = auth.new_private_key()
    blob = registry_auth.seal(_point(key), plaintext)
    with pytest.raises(
        registry_auth.RegistryAuthError, match=problem.replace("[", r"\[").replace("]", r"\]")
    ):
        registry_auth.decrypt(key, blob)


def test_blobs_too_short_or_too_long_are_refused_before_decrypting() -> None:
    key = auth.new_private_key()
    with pytest.raises(registry_auth.RegistryAuthError, match="too short"):
        registry_auth.decrypt(key, b"\x04" * 97)
    with pytest.raises(registry_auth.RegistryAuthError, match="more than 4096"):
        registry_auth.decrypt(key, b"\x04" * 5000)
    with pytest.raises(registry_auth.RegistryAuthError, match="secp256k1 public key"):
        registry_auth.decrypt(key, b"\x04" + b"\x00" * 200)


def test_the_registry_of_an_image_follows_dockers_rule() -> None:
    assert registry_auth.registry_of("python") == "docker.io"
    assert registry_auth.registry_of("library/python") == "docker.io"
    assert registry_auth.registry_of("ghcr.io/org/algo") == "ghcr.io"
    assert registry_auth.registry_of("localhost/algo") == "localhost"
    assert registry_auth.registry_of("127.0.0.1:5000/team/algo") == "127.0.0.1:5000"
    assert registry_auth.normalize_server("https://index.docker.io/v1/") == "docker.io"


def _point(private_key: str) -> Any:
    import coincurve

    return coincurve.PublicKey(registry_auth.public_key_of(private_key))


# The operator's config -------------------------------------------------------------------------


def test_each_registry_gets_its_own_credentials_and_no_other() -> None:
    settings = parse_settings(
        {
            "registries": [
                {"server": "https://ghcr.io", "username": "g", "password": "gp"},
                {"server": "registry.example.com:5000", "username": "r", "password": "rp"},
            ]
        }
    )
    chosen = {
        image: pullauth.for_pull(settings, ImageRef.parse(image), None)
        for image in ("ghcr.io/org/a:1", "registry.example.com:5000/a:1", "python:3.11", "quay.io/a:1")
    }
    assert chosen["ghcr.io/org/a:1"] == RegistryAuth("g", "gp", "ghcr.io")
    assert chosen["registry.example.com:5000/a:1"] == RegistryAuth("r", "rp", "registry.example.com:5000")
    assert chosen["python:3.11"] is None and chosen["quay.io/a:1"] is None
    job = RegistryAuth("consumer", "cp", "ghcr.io")
    assert pullauth.for_pull(settings, ImageRef.parse("ghcr.io/org/a:1"), job) is job  # the job's win


def test_the_single_registry_auth_works_as_before() -> None:
    anywhere = parse_settings({"registry_auth": {"username": "u", "password": "p"}})
    assert pullauth.for_pull(anywhere, ImageRef.parse("quay.io/a:1"), None) == RegistryAuth("u", "p")
    named = parse_settings(
        {"registry_auth": {"username": "u", "password": "p", "serveraddress": "https://index.docker.io/v1/"}}
    )
    assert pullauth.for_pull(named, ImageRef.parse("python:3.11"), None) == named.registry_auth
    assert pullauth.for_pull(named, ImageRef.parse("ghcr.io/a:1"), None) is None  # never to another registry
    both = parse_settings(
        {
            "registry_auth": {"username": "u", "password": "p"},
            "registries": [{"server": "ghcr.io", "username": "g", "password": "gp"}],
        }
    )
    assert pullauth.for_pull(both, ImageRef.parse("ghcr.io/a:1"), None) == RegistryAuth("g", "gp", "ghcr.io")
    assert pullauth.for_pull(both, ImageRef.parse("quay.io/a:1"), None) == RegistryAuth("u", "p")


@pytest.mark.parametrize(
    ("registries", "problem"),
    [
        ({"server": "ghcr.io"}, "must be a list of tables"),
        (["ghcr.io"], r"registries\[0\] must be a table"),
        ([{"server": "ghcr.io", "username": "u"}], "needs a server, a username and a password"),
        ([{"server": "ghcr.io", "username": "u", "password": "p", "token": "t"}], "unknown keys"),
        (
            [
                {"server": "ghcr.io", "username": "u", "password": "p"},
                {"server": "https://GHCR.io/", "username": "v", "password": "q"},
            ],
            "names registry 'ghcr.io' a second time",
        ),
    ],
)
def test_a_bad_registries_table_is_refused_naming_it_without_its_password(
    registries: Any, problem: str
) -> None:
    with pytest.raises(EngineError, match=problem) as caught:
        parse_settings({"registries": registries})
    assert "secret-pw" not in str(caught.value)


def test_config_errors_never_quote_a_password() -> None:
    with pytest.raises(EngineError) as caught:
        parse_settings({"registries": [{"server": "", "username": "u", "password": "secret-pw"}]})
    assert "secret-pw" not in str(caught.value)


# The SDK's workflow format ---------------------------------------------------------------------


def test_a_workflows_registry_auth_is_encrypted_to_the_node_key() -> None:
    key = auth.new_private_key()
    asked: list[int] = []

    def node_key() -> bytes:
        asked.append(1)
        return registry_auth.public_key_of(key)

    container = {"entrypoint": "sh $ALGO", "image": "ghcr.io/me/algo", "tag": "1"}
    clear = [
        {
            "algorithm": {
                "rawcode": "true",
                "container": {**container, "registryAuth": {"username": "me", "password": "pw1"}},
            }
        }
    ]
    workflow = parse_workflow(clear, node_key=node_key)
    blob = workflow.stages[0].algorithm.container.encrypted_registry_auth
    assert asked == [1] and b"pw1" not in blob
    assert registry_auth.decrypt(key, blob).password == "pw1"
    written = workflow_to_json(workflow)
    assert "pw1" not in json.dumps(written)
    assert parse_workflow(written) == workflow  # encryptedRegistryAuth travels as hex
    assert parse_workflow([{"algorithm": {"rawcode": "true", "container": container}}], node_key=node_key)
    assert asked == [1]  # a workflow without credentials never asks for the key
    with pytest.raises(WorkflowFormatError, match="needs the node's public key"):
        parse_workflow(clear)
    with pytest.raises(WorkflowFormatError, match="registryAuth: needs a username and a password"):
        parse_workflow(
            [{"algorithm": {"rawcode": "t", "container": {**container, "registryAuth": {"username": "me"}}}}],
            node_key=node_key,
        )
    with pytest.raises(WorkflowFormatError, match="not both"):
        parse_workflow(
            [
                {
                    "algorithm": {
                        "rawcode": "t",
                        "container": {**container, "registryAuth": {}, "encryptedRegistryAuth": "0x00"},
                    }
                }
            ]
        )


# The node, on the stub engine: what start refuses, what the CLI sends -----------------------------


@pytest.fixture
def stub_node(tmp_path: Path) -> Iterator[NodeProcess]:
    with running_node(tmp_path / "node") as node:
        node.wait_environment(STUB_ENV, timeout=60)
        yield node


def stage_with(
    image: str, blob: bytes = b"", script: str = "echo pulled > /data/outputs/out.txt"
) -> dict[str, Any]:
    repository, _, tag = image.rpartition(":")
    container: dict[str, Any] = {"entrypoint": "sh $ALGO", "image": repository, "tag": tag}
    if blob:
        container["encryptedRegistryAuth"] = "0x" + blob.hex()
    return {"algorithm": {"rawcode": script, "container": container}}


def test_the_node_publishes_its_public_key(stub_node: NodeProcess) -> None:
    with Client(stub_node.address) as client:
        published = client.node_public_key()
    assert published == registry_auth.public_key_of(stub_node.node_key())
    assert auth.address_of(stub_node.node_key()) == _address_of_public_key(published)


def _address_of_public_key(public_key: bytes) -> str:
    import coincurve
    from eth_hash.auto import keccak

    raw = coincurve.PublicKey(public_key).format(compressed=False)[1:]
    return "0x" + keccak(raw)[-20:].hex()


@pytest.mark.parametrize(
    ("make_blob", "problem"),
    [
        (
            lambda node_key: registry_auth.encrypt(
                registry_auth.public_key_of(auth.new_private_key()), "u", "pw-x"
            ),
            "not encrypted to this node's public key",
        ),
        (lambda node_key: b"\x01\x02\x03", "too short for ECIES"),
        (lambda node_key: registry_auth.seal(_point(node_key), b'{"user": "u"}'), "unknown keys"),
        (
            lambda node_key: registry_auth.encrypt(
                registry_auth.public_key_of(node_key), "u", "pw-x", "ghcr.io"
            ),
            "is for registry 'ghcr.io', but the image 'quay.io/me/algo' is on 'quay.io'",
        ),
    ],
    ids=["another-key", "garbage", "not-credentials", "other-registry"],
)
def test_credentials_the_node_cannot_use_are_refused_at_start_and_nothing_is_stored(
    stub_node: NodeProcess, make_blob: Any, problem: str
) -> None:
    blob = make_blob(stub_node.node_key())
    workflow = {"environment": STUB_ENV, "stages": [stage_with("quay.io/me/algo:1", blob)]}
    with Client(stub_node.address, auth.new_private_key()) as consumer:
        with pytest.raises(C2DError) as caught:
            consumer.start(workflow, free=True)
        assert caught.value.code == grpc.StatusCode.INVALID_ARGUMENT.name
        assert caught.value.message.startswith("stage 0: algorithm.container.encrypted_registry_auth ")
        assert problem in caught.value.message
        assert "pw-x" not in caught.value.message
        assert list(consumer.status(all=True)) == []  # nothing stored


def test_the_cli_encrypts_a_workflows_registry_auth_before_sending_it(
    stub_node: NodeProcess, tmp_path: Path
) -> None:
    """``registryAuth`` in the clear in the file; the node's database holds only the blob, which
    opens with the node's key to what the file said."""
    password = "pw-cli-" + auth.new_private_key()[-12:]
    workflow = {
        "environment": STUB_ENV,
        "stages": [
            {
                "algorithm": {
                    "rawcode": "true",
                    "container": {
                        "entrypoint": "sh $ALGO",
                        "image": "registry.example.com/me/algo",
                        "tag": "1",
                        "registryAuth": {"username": "me", "password": password},
                    },
                }
            }
        ],
    }
    (tmp_path / "wf.json").write_text(json.dumps(workflow))
    key_file = tmp_path / "me.key"
    key_file.write_text(auth.new_private_key() + "\n")
    key_file.chmod(0o600)
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "c2d.cli",
            "--node",
            stub_node.address,
            "--key-file",
            str(key_file),
            "--json",
            "start",
            str(tmp_path / "wf.json"),
            "--free",
            "--wait",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert password not in done.stdout + done.stderr
    database = stub_node.data_dir / "node.db"
    assert _files_holding(stub_node.data_dir, password) == []
    stored = _stored_blobs(database)
    assert len(stored) == 1
    opened = registry_auth.decrypt(stub_node.node_key(), stored[0])
    assert (opened.username, opened.password) == ("me", password)
    assert not any(password in line for line in stub_node.raw_lines)


def _stored_blobs(database: Path) -> list[bytes]:
    import base64
    import sqlite3

    with sqlite3.connect(database) as conn:
        specs = [json.loads(row[0]) for row in conn.execute("SELECT spec FROM stage")]
    return [base64.b64decode(s["algorithm"]["container"]["encryptedRegistryAuth"]) for s in specs]


def _files_holding(folder: Path, secret: str) -> list[Path]:
    """Every file under ``folder`` whose bytes contain ``secret`` (as text or as JSON would write it)."""
    needle = secret.encode()
    return [
        p
        for p in sorted(folder.rglob("*"))
        if p.is_file() and not p.is_symlink() and needle in p.read_bytes()
    ]


# Real pulls on the Docker engine -----------------------------------------------------------------


def docker_node(
    tmp_path: Path, pod_image: str, registries: list[dict[str, str]] | None = None
) -> NodeProcess:
    config = tmp_path / "node.toml"  # outside the data dir: the operator's file, not the node's state
    lines = ["[engines.docker]", f'pod_image = "{pod_image}"']
    if registries:
        entries = ", ".join(
            "{ " + ", ".join(f"{k} = {json.dumps(v)}" for k, v in entry.items()) + " }"
            for entry in registries
        )
        lines.append(f"registries = [{entries}]")
    lines += [f'[environments."{DOCKER_ENV}".free]', "enabled = true", "max_job_duration_seconds = 300"]
    config.write_text("\n".join(lines) + "\n")
    node = NodeProcess(
        tmp_path / "node",
        config=config,
        env={"C2D_LOAD_PLUGINS": "docker", "C2D_PODS__LISTEN": f"auto:{free_port()}"},
    )
    node.wait_environment(DOCKER_ENV, timeout=90)
    return node


def run_stage(node: NodeProcess, stage: dict[str, Any]) -> compute_pb2.JobInfo:
    with Client(node.address, auth.new_private_key()) as consumer:
        started = consumer.start({"environment": DOCKER_ENV, "stages": [stage]}, free=True)
        (job,) = consumer.wait(started.workflow_id, timeout=180)
    return job


def assert_nowhere(node: NodeProcess, secret: str) -> None:
    """The secret is in no line the node (and its engine) logged and no file of its data dir: the
    database, the engine's state dir (job specs, events, handles), results and logs."""
    assert (node.data_dir / "node.db").is_file() and (node.data_dir / "engines" / "docker").is_dir()
    assert _files_holding(node.data_dir, secret) == []
    assert [line for line in node.raw_lines if secret in line] == []


@pytest.mark.docker
def test_a_stage_pulls_from_a_private_registry_with_the_nodes_credentials(
    tmp_path: Path,
    docker_client: Any,
    busybox_image: str,
    pod_image: str,
    image_registry: Registry,
    registry_images: Any,
) -> None:
    image = registry_images(busybox_image)
    entry = {
        "server": image_registry.server,
        "username": image_registry.username,
        "password": image_registry.password,
    }
    node = docker_node(tmp_path, pod_image, [entry])
    try:
        job = run_stage(node, stage_with(image))
        history = [(S.Name(e.status), e.message) for e in job.history]
        assert job.status == S.JOB_STATUS_FINISHED, history
        assert S.JOB_STATUS_PULLING_IMAGE in [e.status for e in job.history]  # pulled, not found
        docker_client.images.get(image)  # and the daemon has it now
        assert_nowhere(node, image_registry.password)
    finally:
        node.kill()


@pytest.mark.docker
def test_a_stage_pulls_with_the_consumers_encrypted_credentials_alone(
    tmp_path: Path,
    docker_client: Any,
    busybox_image: str,
    pod_image: str,
    image_registry: Registry,
    registry_images: Any,
) -> None:
    image = registry_images(busybox_image)
    node = docker_node(tmp_path, pod_image)  # no credentials of its own
    try:
        with Client(node.address) as anyone:
            node_key = anyone.node_public_key()
        anonymous = run_stage(node, stage_with(registry_images(busybox_image)))
        assert anonymous.status == S.JOB_STATUS_PULL_IMAGE_FAILED  # the registry wants credentials
        blob = registry_auth.encrypt(
            node_key, image_registry.username, image_registry.password, image_registry.server
        )
        job = run_stage(node, stage_with(image, blob))
        history = [(S.Name(e.status), e.message) for e in job.history]
        assert job.status == S.JOB_STATUS_FINISHED, history
        docker_client.images.get(image)
        assert_nowhere(node, image_registry.password)
        # Again while a stage runs, so that the engine's record of it (spec.json) is there to search.
        running = registry_images(busybox_image)
        with Client(node.address, auth.new_private_key()) as consumer:
            started = consumer.start(
                {"environment": DOCKER_ENV, "stages": [stage_with(running, blob, script="sleep 600")]},
                free=True,
            )
            job_id = started.stages[0].job_id
            try:
                wait_for(
                    lambda: consumer.status(job_id=job_id)[0].status == S.JOB_STATUS_RUNNING,
                    120,
                    "the stage to run",
                )
                assert (node.data_dir / "engines" / "docker" / "jobs" / job_id / "spec.json").is_file()
                assert_nowhere(node, image_registry.password)
            finally:  # an ended stage's container and disk are removed by the node
                consumer.stop(job_id=job_id)
                consumer.wait(started.workflow_id, timeout=120)
        assert_nowhere(node, image_registry.password)
    finally:
        node.kill()


@pytest.mark.docker
def test_wrong_credentials_fail_the_pull_without_showing_the_password(
    tmp_path: Path,
    docker_client: Any,
    busybox_image: str,
    pod_image: str,
    image_registry: Registry,
    registry_images: Any,
) -> None:
    image = registry_images(busybox_image)
    wrong = "pw-wrong-" + auth.new_private_key()[-16:]
    node = docker_node(
        tmp_path,
        pod_image,
        [{"server": image_registry.server, "username": image_registry.username, "password": wrong}],
    )
    try:
        with Client(node.address) as anyone:
            node_key = anyone.node_public_key()
        by_node = run_stage(node, stage_with(image))
        by_job = run_stage(
            node, stage_with(image, registry_auth.encrypt(node_key, image_registry.username, wrong + "-job"))
        )
        for job in (by_node, by_job):
            assert job.status == S.JOB_STATUS_PULL_IMAGE_FAILED, [
                (S.Name(e.status), e.message) for e in job.history
            ]
            reason = job.history[-1].message
            assert "could not be pulled" in reason and "unauthorized" in reason, reason
            texts = [job.status_text, *(e.message for e in job.history)]
            assert not any(wrong in text for text in texts)
        assert_nowhere(node, wrong)
        assert "pw-" not in image_registry.log.read_text()  # the registry logs no password either
    finally:
        node.kill()


def test_the_engine_keeps_a_jobs_credentials_out_of_its_record() -> None:
    """StartJob's credentials go to memory, addressed to the image's own registry; a driver's wait
    for them ends at once when they are there, when RecoverJob declined, or when it gives up."""
    credentials = pullauth.JobCredentials()
    ref = ImageRef.parse("127.0.0.1:5000/me/algo:1")  # the server named is the image's, whatever is sent
    assert credentials.wait("job-1", 0, lambda: False) is None  # none yet, no time to wait
    assert credentials.wait("job-1", 60, lambda: True) is None  # a stop: no wait
    credentials.keep(
        "job-1", engine_pb2.RegistryAuth(username="u", password="pw-mem", server="ignored"), ref.repository
    )
    assert pullauth.as_docker(credentials.get("job-1")) == RegistryAuth("u", "pw-mem", "127.0.0.1:5000")
    assert credentials.wait("job-1", 60, lambda: False) == credentials.get("job-1")
    assert "pw-mem" not in repr(credentials.get("job-1"))
    credentials.forget("job-1")
    assert credentials.get("job-1") is None
    credentials.decline("job-2")  # RecoverJob came without them
    assert credentials.wait("job-2", 60, lambda: False) is None


def test_console_tracebacks_show_no_local_variables() -> None:
    """A password in a local variable of a failing frame stays out of the node's console log
    (Rich's traceback formatter prints every frame's locals unless told not to)."""
    script = (
        "import structlog\n"
        "from host.logs import configure_logging\n"
        "configure_logging('console')\n"
        "def pull(password):\n"
        "    raise RuntimeError('unauthorized')\n"
        "try:\n"
        "    pull('pw-in-a-frame')\n"
        "except RuntimeError:\n"
        "    structlog.get_logger().exception('pull failed')\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert "pull failed" in done.stderr and "RuntimeError: unauthorized" in done.stderr
    assert "pw-in-a-frame" not in done.stderr


# A plugin restart during the pull ---------------------------------------------------------------


class HeldRegistry:
    """A registry that takes Basic credentials and then holds every authenticated manifest request
    until released: a pull that is certainly under way, and will not finish, while the test acts.
    Requests without credentials get 401, as a private registry answers them."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.held = threading.Event()  # an authenticated manifest request is being held
        self.anonymous = threading.Event()  # a request came without credentials
        self.passwords: list[str] = []  # of the authenticated manifest requests, in order
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: Any) -> None:
                pass

            def _answer(self) -> None:
                if not self.headers.get("Authorization"):
                    outer.anonymous.set()
                    self.send_response(401)
                    self.send_header("WWW-Authenticate", 'Basic realm="held"')
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                if "/manifests/" in self.path:
                    scheme, _, token = self.headers["Authorization"].partition(" ")
                    if scheme.lower() == "basic":
                        outer.passwords.append(base64.b64decode(token).decode().partition(":")[2])
                    outer.held.set()
                    outer.release.wait()
                self.send_response(200 if self.path.rstrip("/") == "/v2" else 404)
                self.send_header("Content-Length", "0")
                self.end_headers()

            do_GET = do_HEAD = _answer

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def _held_pull(
    factory: EngineFactory, registry: HeldRegistry, password: str
) -> tuple[Any, engine_pb2.JobSpec, engine_pb2.JobHandle]:
    """A job whose authenticated pull is held at the registry, its plugin then SIGKILLed; its
    spec.json says it came with credentials and holds none."""
    from test_docker_engine import job_spec

    first = factory.start()
    spec = job_spec(first, "true", image=f"{registry.address}/me/algo", tag="1")
    spec.registry_auth.CopyFrom(
        engine_pb2.RegistryAuth(username="me", password=password, server=registry.address)
    )
    handle = first.start_job(spec)
    first.watch(spec.job_id, until=lambda e: e.status == S.JOB_STATUS_PULLING_IMAGE)
    wait_for(registry.held.is_set, 60, "the authenticated pull to reach the registry")
    spec_file = Path(first.state_dir) / "jobs" / spec.job_id / "spec.json"
    record = json.loads(spec_file.read_text())
    assert record[pullauth.RECORD_KEY] is True and password not in spec_file.read_text()
    first.kill()
    registry.held.clear()
    return first, spec, handle


@dataclass
class Restarted:
    """A held authenticated pull whose plugin was SIGKILLed, and the plugin started again on its
    state (the job known to the harness, not recovered yet)."""

    registry: HeldRegistry
    second: Any
    spec: engine_pb2.JobSpec
    handle: engine_pb2.JobHandle


@contextmanager
def restarted_mid_pull(tmp_path: Path, password: str) -> Iterator[Restarted]:
    from test_docker_engine import docker_target

    registry = HeldRegistry()
    loop = EventLoopThread()
    factory = EngineFactory(docker_target(), loop, tmp_path)
    try:
        first, spec, handle = _held_pull(factory, registry, password)
        second = factory.start(state_dir=first.state_dir, host_id=first.host_id)
        second.jobs.add(spec.job_id)
        yield Restarted(registry, second, spec, handle)
    finally:
        registry.close()
        factory.close()
        loop.close()


@pytest.mark.docker
def test_a_recovered_job_pulls_with_the_credentials_recover_job_hands_over(
    tmp_path: Path, docker_client: Any, busybox_image: str
) -> None:
    """SIGKILL while the job's authenticated pull is held: the restarted plugin's driver waits for
    RecoverJob, which brings the credentials again, and pulls with them; nothing stored them."""
    with restarted_mid_pull(tmp_path, "pw-handed-over") as r:
        r.second.recover_job(r.handle, r.spec.registry_auth)
        wait_for(r.registry.held.is_set, 60, "the recovered job's pull to reach the registry")
        assert r.registry.passwords == ["pw-handed-over", "pw-handed-over"]  # both pulls, with them
        r.registry.release.set()  # the held registry then has no such image
        events = r.second.watch(r.spec.job_id, timeout=60).events
        assert events[-1].status == S.JOB_STATUS_PULL_IMAGE_FAILED, describe(events)
        assert "lost when the engine plugin restarted" not in events[-1].message, events[-1].message
        assert _files_holding(Path(r.second.state_dir), "pw-handed-over") == []


@pytest.mark.docker
def test_a_job_recovered_without_its_credentials_pulls_without_them_and_says_so(
    tmp_path: Path, docker_client: Any, busybox_image: str
) -> None:
    """RecoverJob without the credentials (a node that no longer has them): the restarted plugin
    pulls with the operator's (none here), fails, and says why."""
    with restarted_mid_pull(tmp_path, "pw-held-in-memory") as r:
        r.second.recover_job(r.handle)
        events = r.second.watch(r.spec.job_id, timeout=60).events
        assert events[-1].status == S.JOB_STATUS_PULL_IMAGE_FAILED, describe(events)
        assert "lost when the engine plugin restarted" in events[-1].message, events[-1].message
        assert r.registry.passwords == ["pw-held-in-memory"]  # the second pull came without them
        assert not any("pw-held-in-memory" in e.message for e in events)


@pytest.mark.docker
def test_a_job_waiting_for_its_credentials_after_a_restart_stops_at_once(
    tmp_path: Path, docker_client: Any, busybox_image: str
) -> None:
    """The restarted plugin's driver waits for RecoverJob's credentials; a StopJob meanwhile ends
    the job STOPPED, without a pull."""
    with restarted_mid_pull(tmp_path, "pw-never-sent-again") as r:
        r.second.stop_job(r.spec.job_id, grace_seconds=1)
        events = r.second.watch(r.spec.job_id, timeout=60).events
        assert events[-1].status == S.JOB_STATUS_STOPPED, describe(events)
        assert "before its image was pulled" in events[-1].message, events[-1].message
        assert r.registry.passwords == ["pw-never-sent-again"]  # no second pull


@pytest.mark.docker
def test_the_node_hands_a_restarted_plugin_the_stages_credentials_again(
    tmp_path: Path, docker_client: Any, pod_image: str
) -> None:
    """The whole node: its Docker plugin is SIGKILLed during the stage's authenticated pull; the
    node restarts it, recovers the stage with the credentials decrypted again from its database,
    and the new pull sends them. No file of the node and no log line holds the password."""
    registry = HeldRegistry()
    node = docker_node(tmp_path, pod_image)
    try:
        with Client(node.address, auth.new_private_key()) as consumer:
            blob = registry_auth.encrypt(
                consumer.node_public_key(), "me", "pw-node-restart", registry.address
            )
            image = f"{registry.address}/me/algo:1"
            started = consumer.start(
                {"environment": DOCKER_ENV, "stages": [stage_with(image, blob)]}, free=True
            )
            wait_for(registry.held.is_set, 90, "the stage's authenticated pull to reach the registry")
            (plugin,) = node.plugin_pids()
            registry.held.clear()
            os.kill(plugin, signal.SIGKILL)
            wait_for(registry.held.is_set, 90, "the recovered stage's pull to reach the registry")
            assert registry.passwords == ["pw-node-restart", "pw-node-restart"]
            registry.release.set()
            (job,) = consumer.wait(started.workflow_id, timeout=120)
        assert job.status == S.JOB_STATUS_PULL_IMAGE_FAILED, [
            (S.Name(e.status), e.message) for e in job.history
        ]
        assert "lost when the engine plugin restarted" not in job.history[-1].message
        assert_nowhere(node, "pw-node-restart")
    finally:
        registry.close()
        node.kill()
