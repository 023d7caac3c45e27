"""The dashboard (host/web) faces strangers as the gRPC API does: nothing without a signed-in key,
nothing of others' jobs, no sign-in replayed or forced on another browser, no script of a
consumer's run in the page, bounded memory and requests, defensive headers on every answer."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import requests

from c2d import auth
from c2d.client import Client
from c2d.common.v1 import common_pb2
from dashboard_client import ENV, STUB_ENVIRONMENTS, challenge_of, endless, sign, signed_in
from host.store.jobs import EventView, JobView
from host.web import sessions as sessions_module
from host.web.dashboard import CHALLENGE_COOKIE, SESSION_COOKIE, page_templates
from host.web.graph import layout
from host.web.server import SECURITY_HEADERS
from nodeproc import NodeProcess, running_node

pytestmark = pytest.mark.timeout(240)
S = common_pb2.JobStatus
ROUTES = ["/", "/workflows/x", "/jobs/x/log"]


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[NodeProcess]:
    env = {"C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": STUB_ENVIRONMENTS}
    with running_node(tmp_path_factory.mktemp("node"), env=env) as node:
        node.wait_environment(ENV)
        yield node


@pytest.fixture(scope="module")
def base(node: NodeProcess) -> str:
    return f"http://{node.http_address()}/dashboard"


def test_nothing_is_shown_without_signing_in(base: str) -> None:
    for path in ROUTES:
        reply = requests.get(f"{base}{path}", allow_redirects=False, timeout=10)
        assert reply.status_code == 303 and reply.headers["Location"] == "/dashboard/login", path
    assert requests.get(f"{base}/api/jobs/x/log", timeout=10).status_code == 401


def test_a_made_up_session_cookie_is_no_session(base: str) -> None:
    for token in ("x", "A" * 43, "", "\x00", "a" * 4000):
        cookies = {SESSION_COOKIE: token}
        reply = requests.get(f"{base}/", cookies=cookies, allow_redirects=False, timeout=10)
        assert reply.status_code in (303, 400), token  # 400: not a cookie HTTP allows


def test_every_answer_carries_the_defensive_headers(base: str, node: NodeProcess) -> None:
    session = signed_in(base, auth.new_private_key())
    answers = [
        requests.get(f"{base}/login", timeout=10),
        requests.get(f"{base}/", allow_redirects=False, timeout=10),
        requests.get(f"{base}/no/such/page", timeout=10),
        session.get(f"{base}/", timeout=10),
        session.get(f"{base}/workflows/none", timeout=10),
        session.get(f"{base}/api/jobs/none/log", params={"offset": "x"}, timeout=10),
        requests.post(f"{base}/login", data={"signature": "0x00"}, timeout=10),
    ]
    for reply in answers:
        for name, value in SECURITY_HEADERS.items():
            assert reply.headers.get(name) == value, (reply.url, reply.status_code, name)
        assert "Traceback" not in reply.text


def test_the_cookies_are_http_only_and_same_site_strict(base: str) -> None:
    page = requests.get(f"{base}/login", timeout=10)
    assert "HttpOnly" in page.headers["Set-Cookie"] and "SameSite=Strict" in page.headers["Set-Cookie"]
    session = requests.Session()
    text = challenge_of(session.get(f"{base}/login", timeout=10).text)
    reply = session.post(
        f"{base}/login",
        data={"signature": sign(text, auth.new_private_key())},
        allow_redirects=False,
        timeout=10,
    )
    assert reply.status_code == 303
    cookie = next(c for c in reply.raw.headers.getlist("Set-Cookie") if c.startswith(SESSION_COOKIE))
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/dashboard" in cookie


def test_a_signature_signs_in_once_and_only_the_browser_given_the_challenge(base: str) -> None:
    key = auth.new_private_key()
    victim = requests.Session()
    text = challenge_of(victim.get(f"{base}/login", timeout=10).text)
    signature = sign(text, key)
    # Someone else's browser (without the challenge's cookie) cannot use it: no forced sign-in.
    forced = requests.post(f"{base}/login", data={"signature": signature}, allow_redirects=False, timeout=10)
    assert forced.status_code == 401 and "load it again" in forced.text
    challenge_id = str(victim.cookies.get(CHALLENGE_COOKIE, path="/dashboard/login"))
    assert victim.post(f"{base}/login", data={"signature": signature}, timeout=10).url == f"{base}/"
    # Replayed, with the same cookie: the challenge is used up.
    replayed = requests.post(
        f"{base}/login",
        data={"signature": signature},
        cookies={CHALLENGE_COOKIE: challenge_id},
        allow_redirects=False,
        timeout=10,
    )
    assert replayed.status_code == 401 and SESSION_COOKIE not in replayed.cookies


def test_the_challenge_names_the_origin_the_browser_used(base: str) -> None:
    """A page on another name (DNS rebinding) gets a challenge that says so, for the signer to see."""
    page = requests.get(f"{base}/login", headers={"Host": "evil.example:8000"}, timeout=10)
    assert "at http://evil.example:8000" in challenge_of(page.text)


def test_oversized_and_malformed_requests_are_refused_and_the_node_answers_on(base: str) -> None:
    big = requests.post(f"{base}/login", data={"signature": "0" * 100_000}, timeout=10)
    assert big.status_code == 413
    odd = requests.post(
        f"{base}/login",
        data=b"\xff\xfe%%%",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    assert odd.status_code == 401 and "Traceback" not in odd.text
    for path in ("/static/..%2Fsessions.py", "/static/../sessions.py", "/static/dashboard.py", "/static/%00"):
        assert requests.get(f"{base}{path}", timeout=10).status_code == 404, path
    assert requests.get(f"{base}/login", timeout=10).status_code == 200


def test_a_consumers_log_is_shown_as_text_never_as_markup(base: str, node: NodeProcess) -> None:
    key = auth.new_private_key()
    hostile = '<script>alert(1)</script><img src=x onerror="alert(2)">'
    workflow = endless()
    workflow["stages"][0]["algorithm"]["rawcode"] = f"echo '{hostile}'"
    with Client(node.address, key) as client:
        started = client.start(workflow, free=True)
        client.wait(started, timeout=60)
    session = signed_in(base, key)
    reply = session.get(f"{base}/api/jobs/{started.job_ids[0]}/log", timeout=10)
    assert reply.headers["Content-Type"].startswith("application/json")
    assert reply.json()["data"] == hostile + "\n"  # data for the script's textContent, never HTML
    page = session.get(f"{base}/jobs/{started.job_ids[0]}/log", timeout=10).text
    assert "<script>alert" not in page and "onerror" not in page


def test_what_consumers_and_engines_wrote_is_escaped_in_the_pages() -> None:
    """Messages and images come from consumers' runs and engines: the templates escape all of them."""
    hostile = '"><script>alert(1)</script>'
    view = JobView(
        job_id="j1", workflow_id="w1", stage_index=0, owner="0x" + "1" * 40, environment_id=hostile,
        status=S.JOB_STATUS_ALGORITHM_FAILED, status_text=hostile, terminal=True, run_after=[], resources=[],
        max_duration_seconds=60, algorithm_image=hostile, created_at=0.0, started_at=None, finished_at=None,
        results_expire_at=None, exit_code=1, queue_limit_seconds=60, history=[EventView(S.JOB_STATUS_ALGORITHM_FAILED, hostile, 0.0)],
    )  # fmt: skip

    class Row:
        id, environment_id, free, created_at, finished_at = "w1", hostile, True, 0.0, None

    html = (
        page_templates()
        .get_template("workflow.html")
        .render(session=None, workflow=Row, stages=[view], layout=layout([]), payment=None)
    )
    assert "<script>alert" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html


def test_challenges_and_sessions_held_in_memory_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sessions_module, "MAX_CHALLENGES", 5)
    sessions = sessions_module.Sessions("0x" + "ab" * 20, (), 60)
    first = sessions.challenge("http://x")
    for _ in range(5):
        sessions.challenge("http://x")
    with pytest.raises(sessions_module.SignInError, match="used or unknown"):
        sessions.sign_in(first.id, sign(first.text, auth.new_private_key()))
