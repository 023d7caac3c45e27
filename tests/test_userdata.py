"""A consumer's ``userdata`` for a dataset reaches the dataset's server as query parameters.

A real node on the stub engine fetches a registered dataset from an HTTP server on loopback (an
operator's file may name internal hosts); the server answers with what it was asked, so the
algorithm's output shows what reached it. A registered dataset takes only the parameters its
operator declared, of their types; a consumer's own URL takes any.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlsplit

import pytest
from google.protobuf import struct_pb2

from c2d import auth
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from host import userdata
from host.errors import RequestError
from nodeproc import NodeProcess, running_node
from oceanhttp import Ocean

ENV = "stub-local"
DID = "did:op:weather"
PARAMETERS = [
    {"name": "station", "type": "select", "options": ["north", "south"], "required": True},
    {"name": "days", "type": "number", "default": 7},
    {"name": "hourly", "type": "boolean"},
    {"name": "note", "type": "text", "label": "A note", "description": "free text"},
]
COPY = "cat $C2D_DATA/inputs/0/* > $C2D_DATA/outputs/seen"


class Recorder(http.server.BaseHTTPRequestHandler):
    """Answers every GET with the query it was asked, one ``name=value`` per line."""

    seen: list[str] = []

    def do_GET(self) -> None:
        self.seen.append(self.path)
        body = "".join(f"{k}={v}\n" for k, v in parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body.encode())

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Recorder)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory, server: str) -> Iterator[NodeProcess]:
    env = {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f'[{{id = "{ENV}", cpu = 2, ram_gib = 2, disk_gib = 2}}]',
        "C2D_SECURITY__ALLOW_HOSTS": '["127.0.0.1"]',  # the consumer's own URL below is on loopback
    }
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        with Client(node.address, node.node_key()) as operator:
            operator.register_asset(dataset(f"{server}/private/weather?token=op-secret"), replace=True)
        yield node


def dataset(url: str, parameters: list[dict[str, Any]] | None = None, **service: Any) -> dict[str, Any]:
    return {
        "did": DID,
        "services": [
            {
                "serviceId": "compute",
                "kind": "dataset",
                "files": {"files": [{"type": "url", "url": url, "name": "weather"}]},
                "policy": {"allowRawCode": True},
                "consumerParameters": PARAMETERS if parameters is None else parameters,
                **service,
            }
        ],
    }


def workflow(item: dict[str, Any]) -> dict[str, Any]:
    return {
        "environment": ENV,
        "stages": [
            {
                "input": [{"index": 0, **item}],
                "algorithm": {
                    "rawcode": COPY,
                    "container": {"entrypoint": "sh $ALGO", "image": "busybox", "tag": "1"},
                },
            }
        ],
    }


def run(client: Client, item: dict[str, Any], tmp_path: Path) -> str:
    started = client.start(workflow(item), free=True)
    (job,) = client.wait(started, timeout=120)
    assert job.status == common_pb2.JOB_STATUS_FINISHED, job.status_text
    client.results(job.job_id, tmp_path)
    return (tmp_path / "seen").read_text()


def test_declared_parameters_reach_the_datasets_server_after_its_own_query(
    node: NodeProcess, tmp_path: Path
) -> None:
    Recorder.seen.clear()
    with Client(node.address, auth.new_private_key()) as client:
        seen = run(
            client,
            {
                "did": DID,
                "serviceId": "compute",
                "userdata": {"station": "south", "hourly": True, "note": "a&b=c"},
            },
            tmp_path,
        )
    # The operator's own query first, then the consumer's values in declared order, the default
    # of the one not given filled in; a value with & and = arrives whole.
    assert seen == "token=op-secret\nstation=south\ndays=7\nhourly=true\nnote=a&b=c\n"
    assert Recorder.seen[-1].startswith("/private/weather?token=op-secret&station=south&days=7")


@pytest.mark.parametrize(
    ("given", "message"),
    [
        ({"station": "south", "path": "../admin"}, "'path' is not a parameter of this dataset (it takes: "),
        ({"days": 3}, "userdata 'station' is required"),
        ({"station": "east"}, "userdata 'station' must be one of north, south"),
        ({"station": "north", "days": "3"}, "userdata 'days' must be a number"),
        ({"station": "north", "hourly": "yes"}, "userdata 'hourly' must be true or false"),
        ({"station": "north", "note": {"nested": 1}}, "userdata 'note' must be text"),
    ],
)
def test_userdata_the_dataset_does_not_take_is_refused_before_anything_is_stored(
    node: NodeProcess, given: dict[str, Any], message: str
) -> None:
    Recorder.seen.clear()
    with Client(node.address, auth.new_private_key()) as client:
        with pytest.raises(C2DError) as refused:
            client.start(workflow({"did": DID, "serviceId": "compute", "userdata": given}), free=True)
        assert refused.value.code == "INVALID_ARGUMENT" and message in refused.value.message
        assert "op-secret" not in refused.value.message and "/private/" not in refused.value.message
        assert client.status(all=True) == []
    assert Recorder.seen == []


def test_a_consumers_own_url_takes_any_scalar_userdata(
    node: NodeProcess, server: str, tmp_path: Path
) -> None:
    with Client(node.address, auth.new_private_key()) as client:
        files = {"files": [{"type": "url", "url": f"{server}/mine?a=1", "name": "mine"}]}
        seen = run(client, {"files": files, "userdata": {"b": 2.5, "c": "x y", "d": False}}, tmp_path / "own")
        assert seen == "a=1\nb=2.5\nc=x y\nd=false\n"
        with pytest.raises(C2DError) as refused:
            client.start(workflow({"files": files, "userdata": {"b": [1, 2]}}), free=True)
        assert (
            refused.value.code == "INVALID_ARGUMENT" and "userdata 'b' must be text" in refused.value.message
        )


@pytest.mark.parametrize(
    ("parameters", "service", "message"),
    [
        (
            [{"name": "x", "type": "date"}],
            {},
            "has type 'date'; expected one of text, number, boolean, select",
        ),
        ([{"name": "x", "type": "select"}], {}, "is a select without options"),
        ([{"name": "x", "type": "text", "options": ["a"]}], {}, "has options but is not a select"),
        ([{"name": "x", "type": "text"}, {"name": "x", "type": "number"}], {}, "is declared twice"),
        ([{"name": "a b", "type": "text"}], {}, "consumer parameter names are 1-64 letters"),
        ([{"name": "x", "type": "number", "default": "seven"}], {}, "default must be a number"),
        ([{"name": "x", "type": "select", "options": ["a"], "default": "b"}], {}, "default must be one of a"),
    ],
)
def test_malformed_parameters_are_refused_at_registration(
    node: NodeProcess, parameters: list[dict[str, Any]], service: dict[str, Any], message: str
) -> None:
    with Client(node.address, node.node_key()) as operator:
        with pytest.raises(C2DError) as refused:
            operator.register_asset(
                {**dataset("https://example.org/d", parameters, **service), "did": "did:op:bad"}
            )
        assert refused.value.code == "INVALID_ARGUMENT" and message in refused.value.message
        assert "did:op:bad" not in [asset.did for asset in operator.list_assets()]


def test_an_algorithm_service_declares_no_parameters(node: NodeProcess) -> None:
    algorithm = {
        "did": "did:op:algo-with-parameters",
        "services": [
            {
                "serviceId": "run",
                "kind": "algorithm",
                "container": {"entrypoint": "sh", "image": "busybox", "tag": "1"},
                "consumerParameters": [{"name": "x", "type": "text"}],
            }
        ],
    }
    with Client(node.address, node.node_key()) as operator:
        with pytest.raises(C2DError) as refused:
            operator.register_asset(algorithm)
        assert refused.value.code == "INVALID_ARGUMENT"
        assert "consumer parameters are for dataset services" in refused.value.message


def test_with_query_appends_after_the_urls_own_query_and_keeps_its_fragment() -> None:
    assert userdata.with_query("https://h/p", {}) == "https://h/p"
    assert userdata.with_query("https://h/p?x=1#f", {"y": "a b&c"}) == "https://h/p?x=1&y=a+b%26c#f"


def test_numbers_are_written_as_people_write_them() -> None:
    declared = [userdata.Parameter(name="n", type="number")]
    written = {
        value: userdata.resolve(declared, _struct({"n": value}), "input 0")["n"] for value in (3, 2.5, -0.0)
    }
    assert written == {3: "3", 2.5: "2.5", -0.0: "0"}
    with pytest.raises(RequestError):
        userdata.resolve(declared, _struct({"n": True}), "input 0")


def _struct(values: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(values)
    return struct


def test_userdata_reaches_the_dataset_through_the_ocean_face_too(node: NodeProcess) -> None:
    """ocean.js sends it as ``datasets[].userdata``; the same rules apply, and a refusal is a 400."""
    Recorder.seen.clear()
    ocean = Ocean(f"http://{node.http_address()}")
    dataset_ref = {"documentId": DID, "serviceId": "compute"}
    started = ocean.free_start(COPY, datasets=[{**dataset_ref, "userdata": {"station": "north", "days": 2}}])
    assert started.status_code == 200, started.text
    job = ocean.ended(started.json()[0]["jobId"], timeout=120)
    assert job["statusText"] == "Job finished"
    assert Recorder.seen[-1] == "/private/weather?token=op-secret&station=north&days=2"
    refused = ocean.free_start(COPY, datasets=[{**dataset_ref, "userdata": {"days": 2}}])
    assert refused.status_code == 400 and "userdata 'station' is required" in refused.json()["error"]
