"""Class 1 of issue 10: consumers' URLs never reach the node's own network (server-side request forgery).

Three layers, each tested for real:

- the address rules (:mod:`c2d.netpolicy`) over every special range, IPv4 and IPv6 forms;
- the node refusing literal hosts at once (INVALID_ARGUMENT on InitializeCompute,
  FreeStartCompute and a paid StartCompute), nothing stored;
- real pods (external_stub, a real node) refusing a host name that only
  resolution shows to be loopback, and a redirect from an allowed server to a
  forbidden one: the stage ends in DATA_PROVISIONING_FAILED (or
  ALGORITHM_PROVISIONING_FAILED) with a message naming the rule, and the
  forbidden server's body appears in nothing the consumer can read.
"""

from __future__ import annotations

import http.server
import ipaddress
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.netpolicy import Reach, refusal
from c2d.pod.v1 import pod_pb2
from host.errors import RequestError
from host.files import parse_files
from nodeproc import NodeProcess, running_node
from podservice import FakePodService, Stage, pod_environment, run_pod

S = common_pb2.JobStatus
ENV = "stub-local"
STUB_ENV = f'[{{id = "{ENV}", cpu = 2, ram_gib = 4, disk_gib = 2}}]'
SECRET = "internal-only-answer-7f3a"  # what a forbidden server answers: must reach no consumer
PUBLIC_RULE = "consumer URLs may only reach public addresses"

pytestmark = pytest.mark.timeout(180)


# The address rules ----------------------------------------------------------------------------

REFUSED = [
    ("127.0.0.1", "loopback"),
    ("127.255.255.254", "loopback"),
    ("10.1.2.3", "private (RFC 1918)"),
    ("172.16.0.1", "private (RFC 1918)"),
    ("172.17.0.1", "private (RFC 1918)"),  # the Docker bridge gateway
    ("172.31.255.255", "private (RFC 1918)"),
    ("192.168.1.1", "private (RFC 1918)"),
    ("169.254.169.254", "link-local (cloud metadata included)"),
    ("169.254.0.1", "link-local (cloud metadata included)"),
    ("100.64.0.1", "shared (CGNAT, RFC 6598)"),
    ("100.127.255.254", "shared (CGNAT, RFC 6598)"),
    ("224.0.0.1", "multicast"),
    ("239.255.255.250", "multicast"),
    ("0.0.0.0", "unspecified ('this network')"),
    ("0.1.2.3", "unspecified ('this network')"),
    ("255.255.255.255", "broadcast"),
    ("240.0.0.1", "reserved"),
    ("192.0.0.8", "reserved (IETF protocol assignments)"),
    ("192.0.2.1", "reserved for documentation"),
    ("198.51.100.7", "reserved for documentation"),
    ("203.0.113.9", "reserved for documentation"),
    ("198.18.0.1", "reserved for benchmarking"),
    ("192.88.99.1", "reserved (6to4 relay anycast)"),
    ("::1", "loopback"),
    ("::", "unspecified"),
    ("fc00::1", "unique local (private)"),
    ("fd12:3456::1", "unique local (private)"),
    ("fe80::1", "link-local"),
    ("fe80::1%eth0", "link-local"),
    ("fec0::1", "site-local (reserved)"),
    ("ff02::1", "multicast"),
    ("2001:db8::1", "reserved for documentation"),
    ("100::1", "reserved (discard-only)"),
    ("2001::1", "reserved (IETF protocol assignments)"),  # Teredo
    ("::ffff:127.0.0.1", "loopback (IPv4 inside IPv6)"),  # IPv4-mapped
    ("::ffff:169.254.169.254", "link-local (cloud metadata included) (IPv4 inside IPv6)"),
    ("::ffff:10.0.0.1", "private (RFC 1918) (IPv4 inside IPv6)"),
    ("::127.0.0.1", "loopback (IPv4 inside IPv6)"),  # IPv4-compatible (is_global says True)
    ("::10.0.0.1", "private (RFC 1918) (IPv4 inside IPv6)"),
    ("::ffff:0:127.0.0.1", "loopback (IPv4 inside IPv6)"),  # IPv4-translated
    ("64:ff9b::7f00:1", "loopback (IPv4 inside IPv6)"),  # NAT64 (is_global says True)
    ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata included) (IPv4 inside IPv6)"),
    ("64:ff9b:1::1", "reserved (local-use NAT64)"),
    ("2002:7f00:1::", "loopback (IPv4 inside IPv6)"),  # 6to4 (is_global says True)
    ("2002:c0a8:101::1", "private (RFC 1918) (IPv4 inside IPv6)"),
]
PUBLIC = ["8.8.8.8", "1.1.1.1", "93.184.216.34", "2606:4700:4700::1111", "::ffff:8.8.8.8", "2002:808:808::1"]


@pytest.mark.parametrize(("address", "rule"), REFUSED)
def test_every_special_range_is_refused_with_its_rule(address: str, rule: str) -> None:
    assert refusal(address) == rule
    assert Reach().address_refusal("example.org", ipaddress.ip_address(address)) == rule


@pytest.mark.parametrize("address", PUBLIC)
def test_public_addresses_pass(address: str) -> None:
    assert refusal(address) is None


def test_allowances_and_the_nodes_own_addresses() -> None:
    reach = Reach.from_lists(["Data.Lan.", "127.0.0.1"], ["10.1.0.0/16"], [ipaddress.ip_address("8.8.4.4")])
    loopback = ipaddress.ip_address("127.0.0.1")
    assert reach.address_refusal("data.lan", loopback) is None  # the operator named the host
    assert reach.address_refusal("other.lan", loopback) == "loopback"
    assert reach.address_refusal("x", ipaddress.ip_address("10.1.200.3")) is None  # allowed network
    assert reach.address_refusal("x", ipaddress.ip_address("10.2.0.3")) == "private (RFC 1918)"
    assert reach.address_refusal("x", ipaddress.ip_address("8.8.4.4")) == "the node's own"
    assert reach.address_refusal("x", ipaddress.ip_address("::ffff:8.8.4.4")) == "the node's own"
    with pytest.raises(ValueError, match="not a network"):
        Reach.from_lists([], ["10.1.0.0/33"])


LITERAL = [
    "http://127.0.0.1/x",
    "http://127.1/x",  # inet_aton forms the resolver accepts
    "http://2130706433/x",
    "http://0x7f000001/x",
    "http://0177.0.0.1/x",
    "http://localhost:8080/x",
    "http://LOCALHOST./x",
    "http://metadata.localhost/x",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]:8000/x",
    "http://[::ffff:127.0.0.1]/x",
    "https://[fe80::1%25eth0]/x",
    "http://10.0.0.5/x",
    "http://172.17.0.1:8471/x",
    "http://user:pw@192.168.0.1/x",
]


@pytest.mark.parametrize("url", LITERAL)
def test_literal_forbidden_hosts_are_refused_when_parsed(url: str) -> None:
    with pytest.raises(RequestError) as raised:
        parse_files({"type": "url", "url": url}, allow_local=False)
    assert "refused" in raised.value.message and PUBLIC_RULE in raised.value.message
    assert url.split("//", 1)[1].split("/", 1)[0] not in raised.value.message  # the rule, not the content
    parse_files({"type": "url", "url": url}, allow_local=True)  # an operator's asset may name it


# Servers --------------------------------------------------------------------------------------


class Server:
    """A real HTTP server on ``address``: ``/secret.txt`` answers SECRET, ``/go`` redirects to ``location``."""

    def __init__(self, address: str, location: str = "", port: int = 0) -> None:
        outer = self
        self.requests: list[str] = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                outer.requests.append(self.path)
                if self.path == "/go":
                    self.send_response(302)
                    self.send_header("Location", outer.location)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                body = f"{SECRET} {self.path}\n".encode()
                self.send_response(200)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_: object) -> None:
                pass

        self.location = location
        self.server = http.server.ThreadingHTTPServer((address, port), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def hidden() -> Iterator[Server]:
    """The internal service a consumer wants to read: on 127.0.0.2, which no config allows."""
    server = Server("127.0.0.2")
    yield server
    server.close()


@pytest.fixture(scope="module")
def origin(hidden: Server) -> Iterator[Server]:
    """Plays the consumer's public server (allowed by the operator): /go redirects to ``hidden``."""
    server = Server("127.0.0.1", f"http://127.0.0.2:{hidden.port}/secret.txt")
    yield server
    server.close()


def own_name_resolving_to_loopback() -> tuple[str, str]:
    """This machine's host name and its address, when that is non-public: the literal check cannot know."""
    name = socket.gethostname()
    try:
        address = socket.gethostbyname(name)
    except OSError:
        pytest.skip("this machine's host name does not resolve")
    if refusal(address) is None or Reach().literal_refusal(name) is not None:
        pytest.skip("this machine's host name resolves to a public address")
    return name, address


@pytest.fixture(scope="module")
def named() -> Iterator[tuple[str, Server]]:
    name, address = own_name_resolving_to_loopback()
    server = Server(address)
    yield name, server
    server.close()


# Nodes ----------------------------------------------------------------------------------------


def stub_node_env(**extra: str) -> dict[str, str]:
    return {"C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": STUB_ENV, **extra}


@pytest.fixture(scope="module")
def strict(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node as shipped: no exceptions to public-only."""
    with running_node(tmp_path_factory.mktemp("strict"), env=stub_node_env()) as node:
        node.wait_environment(ENV)
        yield node


@pytest.fixture(scope="module")
def allowing(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    """A node whose operator allows 127.0.0.1 (standing in for a public server) and nothing else."""
    env = stub_node_env(C2D_SECURITY__ALLOW_HOSTS='["127.0.0.1"]')
    with running_node(tmp_path_factory.mktemp("allowing"), env=env) as node:
        node.wait_environment(ENV)
        yield node


def workflow(url: str, *, algorithm_url: str = "") -> dict:
    algorithm: dict = {"container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"}}
    if algorithm_url:
        algorithm["files"] = {"type": "url", "url": algorithm_url}
    else:
        algorithm["rawcode"] = (
            'cat "$C2D_DATA"/inputs/0/* > "$C2D_DATA/outputs/copy.txt"; cat "$C2D_DATA"/inputs/0/*'
        )
    return {
        "environment": ENV,
        "stages": [
            {
                "index": 0,
                "input": [{"index": 0, "files": {"type": "url", "url": url}}],
                "algorithm": algorithm,
            }
        ],
    }


def consumer_visible(client: Client, job_id: str, out: Path) -> list[str]:
    """Everything a consumer can read about a job: status with history, every result file, the log."""
    (job,) = client.status(job_id=job_id)
    texts = [str(job)]
    texts += [p.read_text(errors="replace") for p in client.results(job_id, out)]
    texts.append(b"".join(client.logs(job_id)).decode(errors="replace"))
    return texts


def run_to_end(node: NodeProcess, wf: dict, out: Path) -> tuple[object, list[str]]:
    with Client(node.address, auth.new_private_key()) as client:
        started = client.start(wf, free=True)
        (job,) = client.wait(started.workflow_id, timeout=120)
        return job, consumer_visible(client, job.job_id, out)


# Through a real node --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:9/secret.txt",
        "http://localhost/secret.txt",
        "http://[::ffff:127.0.0.1]/secret.txt",
        "http://169.254.169.254/latest/meta-data/",
        "http://172.17.0.1:8471/",
    ],
)
def test_literal_urls_are_refused_at_initialize_and_free_start(strict: NodeProcess, url: str) -> None:
    key = auth.new_private_key()
    with Client(strict.address, key) as client:
        for call in (
            lambda: client.initialize(workflow(url)),
            lambda: client.start(workflow(url), free=True),
        ):
            with pytest.raises(C2DError) as raised:
                call()
            assert raised.value.code == "INVALID_ARGUMENT"
            assert "stage 0 input 0: file 0 has a url that is refused" in raised.value.message
            assert PUBLIC_RULE in raised.value.message and "127.0.0" not in raised.value.message
        with pytest.raises(C2DError) as raised:
            client.initialize(workflow("https://example.org/ok.txt", algorithm_url=url))
        assert raised.value.code == "INVALID_ARGUMENT" and "algorithm" in raised.value.message
        assert client.status(all=True) == []  # nothing stored


def test_literal_urls_are_refused_at_paid_start(tmp_path: Path) -> None:
    """StartCompute (paid) plans the workflow before it quotes or locks anything: refused first."""
    from paidnode import ENV as PAID_ENV
    from paidnode import payment, stub_env

    from host.chain.devchain import find_anvil, start_dev_chain

    if find_anvil() is None:
        if os.environ.get("CI"):
            pytest.fail("anvil is missing: scripts/setup-dev installs it with npm ci")
        pytest.skip("anvil is not installed (npm ci)")
    with start_dev_chain("anvil") as chain, running_node(tmp_path / "paid", env=stub_env(chain)) as node:
        node.wait_environment(PAID_ENV)
        wf = {**workflow("http://[::1]:8080/secret.txt"), "environment": PAID_ENV}
        with Client(node.address, auth.new_private_key()) as client:
            with pytest.raises(C2DError) as raised:
                client.start(wf, payment=payment(chain))
            assert raised.value.code == "INVALID_ARGUMENT", raised.value
            assert "refused" in raised.value.message and PUBLIC_RULE in raised.value.message
            assert client.status(all=True) == []


def test_a_name_that_resolves_to_loopback_fails_provisioning_without_reaching_it(
    strict: NodeProcess, named: tuple[str, Server], tmp_path: Path
) -> None:
    name, server = named
    job, visible = run_to_end(strict, workflow(f"http://{name}:{server.port}/secret.txt"), tmp_path)
    assert job.status == S.JOB_STATUS_DATA_PROVISIONING_FAILED, job
    assert "refused: the destination address is" in str(job)
    assert server.requests == []  # never connected
    for text in visible:
        assert SECRET not in text
        assert f":{server.port}" not in text  # the message names the rule, not the URL


def test_an_algorithm_url_that_resolves_to_loopback_fails_algorithm_provisioning(
    strict: NodeProcess, named: tuple[str, Server], tmp_path: Path
) -> None:
    name, server = named
    wf = workflow("https://example.invalid/x", algorithm_url=f"http://{name}:{server.port}/algo.sh")
    wf["stages"][0]["input"] = []
    job, visible = run_to_end(strict, wf, tmp_path)
    assert job.status == S.JOB_STATUS_ALGORITHM_PROVISIONING_FAILED, job
    assert "algorithm: refused: the destination address is" in str(job)
    assert server.requests == []
    assert all(SECRET not in text for text in visible)


def test_an_allowed_host_is_fetched_but_its_redirect_to_a_private_address_is_refused(
    allowing: NodeProcess, origin: Server, hidden: Server, tmp_path: Path
) -> None:
    # The allowed host itself works (and the file is named after the consumer's own URL).
    job, visible = run_to_end(
        allowing, workflow(f"http://127.0.0.1:{origin.port}/public.txt"), tmp_path / "ok"
    )
    assert job.status == S.JOB_STATUS_FINISHED, job
    assert any(f"{SECRET} /public.txt" in text for text in visible)

    # Its redirect to 127.0.0.2 is checked again, and refused: the hidden server is never asked.
    job, visible = run_to_end(allowing, workflow(f"http://127.0.0.1:{origin.port}/go"), tmp_path / "redirect")
    assert job.status == S.JOB_STATUS_DATA_PROVISIONING_FAILED, job
    assert "refused: the destination address is loopback" in str(job)
    assert "/go" in origin.requests and hidden.requests == []
    for text in visible:
        assert SECRET not in text and "127.0.0.2" not in text and str(hidden.port) not in text


# The pod alone: no proxy for consumer URLs ------------------------------------------------------


def test_consumer_urls_ignore_the_pods_proxy_settings(tmp_path: Path) -> None:
    """A proxy would connect for us to what the check refuses: consumer URLs never go through one."""
    direct = Server("127.0.0.1")
    proxy = Server("127.0.0.1")  # answers anything it is asked, like an open proxy would
    stage = Stage(job_id="job-no-proxy")
    service = FakePodService(stage.job_id, stage.pod_address).start()
    try:
        source = pod_pb2.FileSource(
            type="url",
            url=f"http://127.0.0.1:{direct.port}/direct.txt",
            origin=pod_pb2.SOURCE_ORIGIN_CONSUMER,
            allow_hosts=["127.0.0.1"],
        )
        service.provisioning.inputs.add(folder="0", files=[source])
        service.provisioning.algorithm.CopyFrom(pod_pb2.FileSource(type="data", data=b"true"))
        data = tmp_path / "data"
        data.mkdir()
        env = pod_environment(stage, service, data)
        env["http_proxy"] = env["HTTP_PROXY"] = f"http://127.0.0.1:{proxy.port}"
        env["no_grpc_proxy"] = "127.0.0.1"  # gRPC reads http_proxy too: the PodService is reached directly
        result = run_pod("pods.configuration", env)
        assert result.returncode == 0, result.stderr
        assert (data / "inputs" / "0" / "direct.txt").read_text() == f"{SECRET} /direct.txt\n"
        assert proxy.requests == [] and direct.requests == ["/direct.txt"]
    finally:
        service.stop()
        direct.close()
        proxy.close()


# DNS rebinding ---------------------------------------------------------------------------------


class RebindingResolver:
    """A name server that answers ``rebind.test`` with ``first`` once and ``then`` ever after.

    It stands in for a hostile DNS zone with a zero TTL: the classic rebinding
    attack, where a check and the connection each resolve the name and get
    different answers. Other names resolve as usual.
    """

    def __init__(self, first: list[str], then: list[str]) -> None:
        self.answers = [first, then]
        self.asked = 0
        self.real = socket.getaddrinfo

    def __call__(self, host: object, port: object, *args: object, **kwargs: object) -> list[tuple]:
        if host != "rebind.test":
            return self.real(host, port, *args, **kwargs)  # type: ignore[arg-type]
        answer = self.answers[min(self.asked, 1)]
        self.asked += 1
        return [
            (socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP, "", (address, int(port)))  # type: ignore[call-overload]
            for address in answer
        ]


@pytest.fixture
def twin_servers() -> Iterator[tuple[Server, Server]]:
    """An allowed server on 127.0.0.1 and a forbidden one on 127.0.0.2, on the same port number."""
    allowed = Server("127.0.0.1")
    try:
        forbidden = Server("127.0.0.2", port=allowed.port)
    except OSError:
        allowed.close()
        pytest.skip("the same port is taken on 127.0.0.2")
    yield allowed, forbidden
    allowed.close()
    forbidden.close()


def test_a_name_is_resolved_once_and_the_checked_address_is_the_one_connected(
    twin_servers: tuple[Server, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The pod resolves once per connection and connects to what it checked: a second answer
    (the rebinding) is never asked for, so it can never be used."""
    from pods import sources

    allowed, forbidden = twin_servers
    resolver = RebindingResolver(first=["127.0.0.1"], then=["127.0.0.2"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    source = pod_pb2.FileSource(type="url", url=f"http://rebind.test:{allowed.port}/data.csv")
    part = tmp_path / "data.csv"
    sources.fetch_url(source, part, "0/data.csv", Reach.from_lists(networks=["127.0.0.1/32"]))
    assert resolver.asked == 1
    assert allowed.requests == ["/data.csv"] and forbidden.requests == []
    assert part.read_text().endswith("/data.csv\n")


def test_a_name_with_any_forbidden_answer_is_refused_before_connecting(
    twin_servers: tuple[Server, Server], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A name that resolves to an allowed and a forbidden address at once (another rebinding
    shape) is refused whole: neither server hears a request."""
    from pods import sources
    from pods.failures import SourceFailure

    allowed, forbidden = twin_servers
    resolver = RebindingResolver(first=["127.0.0.1", "127.0.0.2"], then=["127.0.0.2"])
    monkeypatch.setattr(socket, "getaddrinfo", resolver)
    source = pod_pb2.FileSource(type="url", url=f"http://rebind.test:{allowed.port}/data.csv")
    with pytest.raises(SourceFailure) as caught:
        sources.fetch_url(
            source, tmp_path / "data.csv", "0/data.csv", Reach.from_lists(networks=["127.0.0.1/32"])
        )
    assert "loopback" in caught.value.public and "127.0.0.2" not in caught.value.public
    assert allowed.requests == [] and forbidden.requests == []


# The node's own addresses ----------------------------------------------------------------------


def machine_address() -> str:
    """An address of this machine's interfaces that is not loopback (eth0's, docker0's)."""
    from host.netaddr import own_addresses

    found = sorted(str(a) for a in own_addresses() if a.version == 4 and not a.is_loopback)
    if not found:
        pytest.fail("this machine has no interface address but loopback")
    return found[0]


def test_the_nodes_own_addresses_are_refused_even_inside_an_allowed_network(tmp_path: Path) -> None:
    """An operator who allows every network still does not open the node's own interfaces: a URL
    there would reach the node's listeners from the inside, past whatever guards them outside."""
    everything = stub_node_env(C2D_SECURITY__ALLOW_NETWORKS='["0.0.0.0/0", "::/0"]')
    own = machine_address()
    with (
        running_node(tmp_path / "node", env=everything) as node,
        Client(node.address, auth.new_private_key()) as client,
    ):
        node.wait_environment(ENV)
        client.initialize(workflow("http://192.0.2.77/data.csv"))  # allowed: not the node's
        with pytest.raises(C2DError) as raised:
            client.initialize(workflow(f"http://{own}:{node.port}/"))
        assert raised.value.code == "INVALID_ARGUMENT"
        assert "the node's own" in raised.value.message and own not in raised.value.message


def test_the_pod_refuses_the_addresses_the_node_lists_as_its_own() -> None:
    """What the node lists in a consumer's FileSource is denied by the pod, whatever it allows."""
    from pods.sources import reach_of

    own = machine_address()
    source = pod_pb2.FileSource(
        type="url",
        url=f"http://{own}/",
        origin=pod_pb2.SOURCE_ORIGIN_CONSUMER,
        allow_networks=["0.0.0.0/0"],
        deny_addresses=[own, "not an address"],
    )
    reach = reach_of(source, frozenset())
    assert reach is not None
    assert reach.address_refusal("data.example", ipaddress.ip_address(own)) == "the node's own"
    assert reach.address_refusal("data.example", ipaddress.ip_address("192.0.2.77")) is None
