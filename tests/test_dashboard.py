"""The dashboard (host/web): signing in with a key, what the operator and consumers see, logs, and the
pages' escaping; over real HTTP against a real node with the stub engine. The browser's view is in
test_dashboard_browser.py, the attacks in security/test_dashboard_attacks.py."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import requests

from c2d import auth
from c2d.cli.main import main as cli_main
from c2d.client import Client
from dashboard_client import ENV, STUB_ENVIRONMENTS, challenge_of, endless, sign, signed_in
from host.web import graph
from host.web.sessions import CHALLENGE_SECONDS, Sessions, SignInError
from nodeproc import NodeProcess, free_port, running_node, wait_for


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": STUB_ENVIRONMENTS}
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


@pytest.fixture(scope="module")
def base(node: NodeProcess) -> str:
    return f"http://{node.http_address()}/dashboard"


def test_the_dashboard_is_its_own_listener_on_loopback(node: NodeProcess, base: str) -> None:
    host, port = node.http_address().rsplit(":", 1)
    assert host == "127.0.0.1"
    assert int(port) not in (node.port, node.pod_port)
    assert requests.get(f"{base}/", timeout=10).url == f"{base}/login"  # not signed in: to the sign-in page
    assert requests.get(f"{base}", timeout=10).url == f"{base}/login"
    # The listener's root is the Ocean-compatible API's (its node description), not the dashboard's.
    assert "serviceEndpoints" in requests.get(f"http://{node.http_address()}/", timeout=10).json()


def test_the_node_key_signs_in_as_the_operator_and_sees_engines_and_capacity(
    node: NodeProcess, base: str
) -> None:
    session = signed_in(base, node.node_key())
    page = showing(session, f"{base}/", "cpu 0/2", "the environment's capacity on the overview")
    assert "operator" in page
    assert node.node_key() not in page
    assert "external_stub" in page and "healthy" in page
    assert f"<td>{ENV}</td>" in page


def test_a_consumer_sees_their_own_workflow_and_nothing_of_anothers(node: NodeProcess, base: str) -> None:
    mine, theirs = auth.new_private_key(), auth.new_private_key()
    with Client(node.address, mine) as me, Client(node.address, theirs) as them:
        started = me.start(endless(), free=True)
        other = them.start(endless(), free=True)
        try:
            session = signed_in(base, mine)
            overview = session.get(f"{base}/", timeout=10).text
            assert started.workflow_id in overview
            assert other.workflow_id not in overview
            assert "operator" not in overview and "<h2>Engines</h2>" not in overview
            workflow = session.get(f"{base}/workflows/{started.workflow_id}", timeout=10)
            assert workflow.status_code == 200 and started.job_ids[0] in workflow.text
            # Another's workflow, job log and log API are "not found", as over gRPC: existence never leaks.
            for path in (
                f"/workflows/{other.workflow_id}",
                f"/jobs/{other.job_ids[0]}/log",
                f"/api/jobs/{other.job_ids[0]}/log",
            ):
                assert session.get(f"{base}{path}", timeout=10).status_code == 404, path
            # The operator sees both.
            operator = signed_in(base, node.node_key())
            listed = operator.get(f"{base}/", timeout=10).text
            assert started.workflow_id in listed and other.workflow_id in listed
        finally:
            me.stop(workflow_id=started.workflow_id)
            them.stop(workflow_id=other.workflow_id)


def test_a_stages_log_is_read_from_any_offset_in_whole_lines(node: NodeProcess, base: str) -> None:
    key = auth.new_private_key()
    with Client(node.address, key) as client:
        started = client.start(endless(lines_every=0.05), free=True)
        job = started.job_ids[0]
        session = signed_in(base, key)
        url = f"{base}/api/jobs/{job}/log"
        try:
            part = wait_for(
                lambda: _with(session.get(url, timeout=10).json(), "line 2\n"), 60, "three log lines"
            )
            assert part["data"].startswith("line 0\n") and part["data"].endswith("\n")
            assert part["ended"] is False
            rest = session.get(url, params={"offset": part["offset"]}, timeout=10).json()
            assert rest["offset"] >= part["offset"]
            assert not rest["data"] or rest["data"].startswith(f"line {part['data'].count(chr(10))}\n")
        finally:
            client.stop(workflow_id=started.workflow_id)
        client.wait(started, timeout=60)
        # A stopped stage's log is read from its engine until the node has kept it; only then has
        # it ended (a page that follows it keeps polling until then).
        whole = wait_for(lambda: _ended(session.get(url, timeout=10).json()), 60, "the kept log")
        assert whole["data"].startswith("line 0\nline 1\n")
        past = session.get(url, params={"offset": whole["offset"] + 1}, timeout=10)
        assert past.status_code == 400 and "past the end of the log" in past.text
        for bad in ("-1", "x", "1e3"):
            reply = session.get(url, params={"offset": bad}, timeout=10)
            assert reply.status_code == 400 and "offset" in reply.text and "Traceback" not in reply.text


def test_the_workflow_page_draws_its_stages_as_a_graph_with_their_history(
    node: NodeProcess, base: str
) -> None:
    key = auth.new_private_key()
    with Client(node.address, key) as client:
        started = client.start(endless(extra_stages=2), free=True, metadata={"run": "<b>7</b>"})
        client.stop(workflow_id=started.workflow_id)
        client.wait(started, timeout=60)
    page = signed_in(base, key).get(f"{base}/workflows/{started.workflow_id}", timeout=10).text
    assert (
        '<code id="metadata">{"run": "\\u003cb\\u003e7\\u003c/b\\u003e"}</code>' in page
    )  # as JSON, escaped
    assert page.count('<g class="box') == 3
    assert page.count('class="arrow"') == 2  # 0 -> 1 -> 2
    assert 'class="box stopped"' in page and 'class="box stopped" data-job="' + started.job_ids[0] in page
    assert "<td>queued</td><td>accepted</td>" in page  # the status history, with its messages
    assert "<td>skipped</td><td>stage 1 did not finish</td>" in page
    assert page.count('<section class="stage"') == 3


def test_signing_out_ends_the_session(node: NodeProcess, base: str) -> None:
    session = signed_in(base, auth.new_private_key())
    assert session.post(f"{base}/logout", timeout=10).url == f"{base}/login"
    assert session.get(f"{base}/", timeout=10).url == f"{base}/login"
    assert session.get(f"{base}/api/jobs/x/log", timeout=10).status_code == 401


def test_c2d_dashboard_prints_a_link_that_signs_a_browser_in_once(
    node: NodeProcess, base: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "me.key"
    key_file.write_text(node.node_key())
    assert cli_main(["--key-file", str(key_file), "--json", "dashboard", "--url", base]) == 0
    link = json.loads(capsys.readouterr().out)
    assert link["operator"] is True and link["address"] == auth.address_of(node.node_key())
    browser = requests.Session()
    landed = browser.get(link["url"], timeout=10)
    assert landed.url == f"{base}/" and link["address"] in landed.text and "operator" in landed.text
    again = requests.get(link["url"], timeout=10)  # another browser, or the same link replayed
    assert again.status_code == 401 and "used or expired" in again.text


def test_c2d_dashboard_says_why_when_no_dashboard_answers(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    key_file = tmp_path / "me.key"
    key_file.write_text(auth.new_private_key())
    url = f"http://127.0.0.1:{free_port()}"
    assert cli_main(["--key-file", str(key_file), "dashboard", "--url", url]) == 3
    assert f"no dashboard answers at {url}" in capsys.readouterr().err
    assert cli_main(["--key-file", str(key_file), "dashboard", "--url", "ftp://x"]) == 2


def test_the_link_api_refuses_what_is_not_a_signed_challenge(base: str) -> None:
    for body in (b"not json", b"[]", b'{"challenge": 1, "signature": "x"}'):
        reply = requests.post(f"{base}/api/links", data=body, timeout=10)
        assert reply.status_code == 400 and "send JSON" in reply.text
    challenge = requests.get(f"{base}/api/challenge", timeout=10).json()
    bad = requests.post(
        f"{base}/api/links", json={"challenge": challenge["id"], "signature": "0x00"}, timeout=10
    )
    assert bad.status_code == 401 and "signature" in bad.json()["error"]
    # The refused attempt used the challenge up: a good signature of it now signs in nobody.
    late = {"challenge": challenge["id"], "signature": sign(challenge["text"], auth.new_private_key())}
    assert requests.post(f"{base}/api/links", json=late, timeout=10).status_code == 401


def showing(session: requests.Session, url: str, text: str, what: str) -> str:
    """The page at ``url`` once it shows ``text``."""
    return str(
        wait_for(lambda: page if text in (page := session.get(url, timeout=10).text) else None, 60, what)
    )


def _with(part: dict[str, Any], text: str) -> dict[str, Any] | None:
    return part if text in part["data"] else None


def _ended(part: dict[str, Any]) -> dict[str, Any] | None:
    return part if part["ended"] else None


# -- sign-in rules, without a node --------------------------------------------------------------

NODE = "0x" + "ab" * 20


def test_a_challenge_signs_in_once_and_names_the_node_and_the_origin() -> None:
    sessions = Sessions(NODE, (), 3600)
    key = auth.new_private_key()
    found = sessions.challenge("http://127.0.0.1:8000")
    assert NODE in found.text and "at http://127.0.0.1:8000" in found.text
    token, session = sessions.sign_in(found.id, sign(found.text, key))
    assert session.address == auth.address_of(key) and not session.operator
    assert sessions.session(token) == session
    with pytest.raises(SignInError, match="used or unknown"):
        sessions.sign_in(found.id, sign(found.text, key))


def test_an_operator_address_signs_in_as_operator() -> None:
    key = auth.new_private_key()
    sessions = Sessions(NODE, (auth.address_of(key),), 3600)
    found = sessions.challenge("http://x")
    assert sessions.sign_in(found.id, sign(found.text, key))[1].operator


def test_expired_challenges_and_sessions_sign_nobody_in() -> None:
    now = [1000.0]
    sessions = Sessions(NODE, (), 60, clock=lambda: now[0])
    key = auth.new_private_key()
    old = sessions.challenge("http://x")
    now[0] += CHALLENGE_SECONDS + 1
    with pytest.raises(SignInError, match="expired"):
        sessions.sign_in(old.id, sign(old.text, key))
    fresh = sessions.challenge("http://x")
    token, _ = sessions.sign_in(fresh.id, sign(fresh.text, key))
    now[0] += 61
    assert sessions.session(token) is None


def test_a_signature_of_another_text_or_garbage_is_refused_in_words() -> None:
    sessions = Sessions(NODE, (), 3600)
    key = auth.new_private_key()
    for signature in ("", "0x1234", "zz" * 65, "0x" + "00" * 65, "f" * 500):
        found = sessions.challenge("http://x")
        with pytest.raises(SignInError, match="signature"):
            sessions.sign_in(found.id, signature)
    found = sessions.challenge("http://x")
    other = sessions.challenge("http://x")
    # A signature of another challenge recovers another address: it signs in nobody it names.
    _, session = sessions.sign_in(found.id, sign(other.text, key))
    assert session.address != auth.address_of(key)


def test_the_challenge_on_the_page_is_the_text_to_sign() -> None:
    page = '<pre id="challenge">Sign in &amp; more\nNonce: 1</pre>'
    assert challenge_of(page) == "Sign in & more\nNonce: 1"


# -- the graph's geometry ------------------------------------------------------------------------


def test_stages_are_drawn_in_columns_by_depth() -> None:
    S = graph.S
    nodes = [
        graph.StageNode("a", 0, [], S.JOB_STATUS_FINISHED, True),
        graph.StageNode("b", 1, ["a"], S.JOB_STATUS_RUNNING, False),
        graph.StageNode("c", 2, ["a"], S.JOB_STATUS_ALGORITHM_FAILED, True),
        graph.StageNode("d", 3, ["b", "c", "elsewhere"], S.JOB_STATUS_WAITING_FOR_PREVIOUS_STAGE, False),
    ]
    layout = graph.layout(nodes)
    boxes = {box.job_id: box for box in layout.boxes}
    assert boxes["b"].x == boxes["c"].x > boxes["a"].x and boxes["d"].x > boxes["b"].x
    assert boxes["b"].y < boxes["c"].y
    assert [boxes[j].tone for j in "abcd"] == ["done", "active", "failed", "waiting"]
    assert len(layout.arrows) == 4  # the dependency on a job outside the workflow is not drawn
    assert layout.width == 2 * graph.MARGIN + 3 * graph.BOX_WIDTH + 2 * graph.GAP_X
    assert graph.layout([]).boxes == []
