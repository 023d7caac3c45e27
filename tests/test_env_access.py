"""Who may use an environment's tiers: allow lists and ERC-721 access lists, on a real chain.

The access token is contracts/TestAccessToken.sol as committed, deployed on py-evm in process
(the checker itself, its clock driven by the test) or on anvil over JSON-RPC (a node process
whose RPC runs through a proxy the test can cut). Config errors are refused at load.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import refusals
from accesstoken import AccessToken, deploy_access_token, funded_key
from paidnode import fund_node, in_process_node, new_consumer, payment, stage
from tcpproxy import TcpProxy
from web3 import Web3

from c2d import auth
from c2d.cli.render import env_access
from c2d.client import C2DError, Client
from c2d.common.v1 import common_pb2
from c2d.compute.v1 import compute_pb2
from host.chain.devchain import DevChain, free_port, start_dev_chain
from host.config import ConfigError, load_config
from host.envaccess import EnvironmentAccess, Holds, chain_holds
from host.envterms import parse_terms
from host.errors import RequestError
from nodeproc import NodeProcess, running_node

HELD = "held"  # both tiers for holders of the access token
LISTED = "listed"  # both tiers for the allow list only
CACHE_SECONDS = 10.0


# -- the config, refused at load ------------------------------------------------------------


def load(tmp_path: Path, text: str) -> None:
    path = tmp_path / "node.toml"
    path.write_text(text)
    load_config(path, environ={})


ACCESS_LIST = '{ chain_id = 8996, address = "0x5FbDB2315678afecb367f032d93F642f64180aa3" }'


@pytest.mark.parametrize(
    ("table", "words"),
    [
        ('[environments.e.free]\nallow = ["0x1234"]', "environments.e.free.allow[0] must be an address"),
        (
            '[environments.e.free]\nallow = ["0x5FbDB2315678afecb367f032d93F642f64180aa3\\n"]',
            "environments.e.free.allow[0] must be an address",
        ),
        ('[environments.e.paid]\nallow = "0x5FbDB2315678afecb367f032d93F642f64180aa3"', "must be an array"),
        (
            '[environments.e.paid]\naccess_lists = [{ chain_id = 8996, address = "me" }]',
            "environments.e.paid.access_lists[0].address must be an address",
        ),
        (
            '[environments.e.free]\naccess_lists = [{ address = "0x5FbDB2315678afecb367f032d93F642f64180aa3" }]',
            "environments.e.free.access_lists[0].chain_id must be the chain's id",
        ),
        (
            '[environments.e.free]\naccess_lists = [{ chain_id = 8996, address = "0x5FbDB2315678afecb367f032d93F642f64180aa3", kind = "erc721" }]',
            "access_lists[0] has unknown settings: kind",
        ),
        (f"[environments.e.paid]\naccess_lists = [{ACCESS_LIST}, {ACCESS_LIST}]", "names a contract twice"),
        ("[environments.e.paid]\nenabled = true", "environments.e.paid has unknown settings: enabled"),
    ],
    ids=[
        "short-address",
        "trailing-newline",
        "allow-not-a-list",
        "list-address",
        "no-chain-id",
        "unknown-key",
        "twice",
        "paid-key",
    ],
)
def test_malformed_access_settings_are_refused_at_load(tmp_path: Path, table: str, words: str) -> None:
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[chain]\nchain_id = 8996\n" + table)
    assert words in str(err.value), err.value


def test_an_access_list_needs_the_nodes_chain_at_load(tmp_path: Path) -> None:
    table = f"[environments.e.paid]\naccess_lists = [{ACCESS_LIST}]\n"
    with pytest.raises(ConfigError) as err:
        load(tmp_path, table)
    assert "on chain 8996 needs the node's chain: set chain.chain_id" in str(err.value), err.value
    with pytest.raises(ConfigError) as err:
        load(tmp_path, "[chain]\nchain_id = 31337\n" + table)
    assert "is not on the node's chain (31337)" in str(err.value), err.value
    load(tmp_path, "[chain]\nchain_id = 8996\n" + table)  # on the node's chain: fine


def test_a_node_that_opens_no_chain_will_not_start_with_an_access_list(tmp_path: Path) -> None:
    """chain_id set, but no RPC and no dev chain: nothing to read the list on, so no start."""
    env = {"C2D_CHAIN__CHAIN_ID": "8996", "C2D_ENVIRONMENTS__E__PAID": f"{{access_lists = [{ACCESS_LIST}]}}"}
    with running_node(tmp_path / "node", env=env) as node:
        assert node.process.wait(timeout=60) == 2
    assert any("the node opened no chain" in line for line in node.raw_lines), node.raw_lines[-5:]


def test_a_node_whose_chain_is_not_the_lists_will_not_start(
    tmp_path: Path, py_evm: DevChain, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The config says chain 8996 (as the list), the chain the node is given is another one."""
    monkeypatch.setenv("C2D_LOAD_PLUGINS", "external_stub")
    env = {
        "C2D_CHAIN__CHAIN_ID": "8996",
        "C2D_CHAIN__ESCROW_ADDRESS": py_evm.escrow_address,
        "C2D_ENVIRONMENTS__E__PAID": f"{{access_lists = [{ACCESS_LIST}]}}",
    }
    with pytest.raises(ConfigError) as err, in_process_node(tmp_path / "node", py_evm, env):
        pass
    assert f"is on chain 8996, but the node's chain is {py_evm.chain_id}" in str(err.value), err.value


# -- the checker, on py-evm with its clock driven -------------------------------------------


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountedReads:
    """The real chain read, counted: how many balance reads reached the chain."""

    def __init__(self, holds: Holds) -> None:
        self.holds = holds
        self.reads = 0

    def __call__(self, contract: str, consumer: str) -> bool:
        self.reads += 1
        return self.holds(contract, consumer)


@pytest.fixture(scope="module")
def py_evm() -> Iterator[DevChain]:
    with start_dev_chain("py-evm") as chain:
        yield chain


def checker(
    chain_id: int, contract: str, holds: Holds, clock: Clock, allow: tuple[str, ...] = ()
) -> EnvironmentAccess:
    listed = [{"chain_id": chain_id, "address": contract}]
    terms = parse_terms({HELD: {"free": {"access_lists": listed, "allow": list(allow)}}})
    return EnvironmentAccess(terms, holds, cache_seconds=CACHE_SECONDS, clock=clock)


def refusal(access: EnvironmentAccess, consumer: str, free: bool = True) -> RequestError | None:
    return asyncio.run(access.refusal(HELD, consumer, free=free))


def test_a_transferred_token_stops_granting_once_the_cache_expires(py_evm: DevChain) -> None:
    token = deploy_access_token(py_evm)
    holder_key, holder = funded_key(py_evm)
    _, other = funded_key(py_evm)
    token.mint(holder, 1)
    reads, clock = CountedReads(chain_holds(py_evm.w3)), Clock()
    access = checker(py_evm.chain_id, token.address, reads, clock)
    assert refusal(access, holder) is None and reads.reads == 1
    token.transfer(holder_key, other, 1)
    assert token.balance(holder) == 0
    clock.now += CACHE_SECONDS - 0.5
    assert refusal(access, holder) is None, "the balance read within the cache time counts"
    assert reads.reads == 1
    clock.now += 0.5
    refused = refusal(access, holder)
    assert refused is not None and refused.code.name == "PERMISSION_DENIED", refused
    assert reads.reads == 2
    assert refusal(access, other) is None  # the new holder is in
    assert refusal(access, holder, free=False) is None  # this environment's paid tier is open


def test_a_burst_of_starts_reads_the_chain_once(py_evm: DevChain) -> None:
    token = deploy_access_token(py_evm)
    _, holder = funded_key(py_evm)
    token.mint(holder, 7)
    reads = CountedReads(chain_holds(py_evm.w3))
    access = checker(py_evm.chain_id, token.address, reads, Clock())

    async def burst() -> None:
        await asyncio.gather(*(access.admit([HELD], holder, free=True) for _ in range(20)))

    asyncio.run(burst())
    assert reads.reads == 1


def test_a_refusal_says_what_would_grant_access(py_evm: DevChain) -> None:
    token = deploy_access_token(py_evm)
    _, stranger = funded_key(py_evm)
    allowed = auth.address_of(auth.new_private_key()).lower()
    reads = CountedReads(chain_holds(py_evm.w3))
    access = checker(py_evm.chain_id, token.address, reads, Clock(), allow=(allowed,))
    refused = refusal(access, stranger)
    assert refused is not None and refused.code.name == "PERMISSION_DENIED"
    assert refused.message == (
        f"environment 'held': the free tier is restricted; to use it, hold a token of "
        f"{token.address.lower()} on chain {py_evm.chain_id}, or be on the environment's allow list "
        "(ask the node's operator)"
    )
    assert allowed not in refused.message
    before = reads.reads
    assert refusal(access, allowed) is None and reads.reads == before, "the allow list needs no chain read"


def test_an_unreadable_chain_refuses_and_is_not_remembered(py_evm: DevChain) -> None:
    down = Web3(Web3.HTTPProvider(f"http://127.0.0.1:{free_port()}", request_kwargs={"timeout": 5}))
    reads = CountedReads(chain_holds(down))
    access = checker(py_evm.chain_id, "0x" + "ab" * 20, reads, Clock())
    _, consumer = funded_key(py_evm)
    for attempt in (1, 2):
        refused = refusal(access, consumer)
        assert refused is not None and refused.code.name == "UNAVAILABLE", refused
        assert "the chain could not be read to check yours" in refused.message, refused.message
        assert reads.reads == attempt, "a failed read is read again next time"


def test_an_access_list_that_is_no_contract_never_grants(py_evm: DevChain) -> None:
    _, not_a_contract = funded_key(py_evm)
    _, consumer = funded_key(py_evm)
    access = checker(py_evm.chain_id, not_a_contract, chain_holds(py_evm.w3), Clock())
    refused = refusal(access, consumer)
    assert refused is not None and refused.code.name == "UNAVAILABLE", refused


def test_c2d_envs_shows_an_open_environment_as_open() -> None:
    open_env = common_pb2.Environment(id="e", free=common_pb2.FreeTier(enabled=True))
    assert env_access(open_env) == "open"
    paid_only = common_pb2.Environment(id="e", paid_access=common_pb2.AccessPolicy(allow_list=True))
    assert env_access(paid_only) == "paid: allow list"  # no free tier: not shown
    paid_only.free.enabled = True
    assert env_access(paid_only) == "free: open; paid: allow list"


# -- a node on anvil, its RPC through a proxy ----------------------------------------------------


@dataclass
class Setup:
    node: NodeProcess
    chain: DevChain
    token: AccessToken
    proxy: TcpProxy
    allowed_key: str
    payee: str


def access_env(chain: DevChain, token: str, allowed: str, rpc_url: str) -> dict[str, str]:
    """Two stub environments, priced in the test token: one for token holders, one for the allow list."""
    prices = '[{resource_id = "cpu", price_per_unit_minute = "1000"}]'
    fees = f'[{{chain_id = {chain.chain_id}, token_address = "{chain.token_address}", prices = {prices}}}]'
    holders = f'{{access_lists = [{{chain_id = {chain.chain_id}, address = "{token}"}}]}}'
    envs = ", ".join(f'{{id = "{e}", cpu = 2, ram_gib = 4, disk_gib = 2}}' for e in (HELD, LISTED))
    return {
        "C2D_ENGINES__EXTERNAL_STUB__ENVIRONMENTS": f"[{envs}]",
        "C2D_ENVIRONMENTS__HELD__FEES": fees,
        "C2D_ENVIRONMENTS__HELD__FREE": holders,
        "C2D_ENVIRONMENTS__HELD__PAID": holders,
        "C2D_ENVIRONMENTS__LISTED__FEES": fees,
        "C2D_ENVIRONMENTS__LISTED__FREE": f'{{allow = ["{allowed}"]}}',
        "C2D_ENVIRONMENTS__LISTED__PAID": f'{{allow = ["{allowed}"]}}',
        "C2D_CHAIN__ESCROW_ADDRESS": chain.escrow_address,
        "C2D_CHAIN__CHAIN_ID": str(chain.chain_id),
        "C2D_CHAIN__RPC_URL": rpc_url,
        "C2D_CHAIN__RETRY_MAX_SECONDS": "1",
    }


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, anvil: DevChain) -> Iterator[Setup]:
    assert anvil.rpc_url is not None
    token = deploy_access_token(anvil)
    allowed_key = auth.new_private_key()
    with TcpProxy(anvil.rpc_url.rpartition(":")[2]) as proxy:
        env = access_env(anvil, token.address, auth.address_of(allowed_key), f"http://127.0.0.1:{proxy.port}")
        with running_node(tmp_path_factory.mktemp("access"), env=env) as node:
            node.wait_environment(HELD)
            node.wait_environment(LISTED)
            yield Setup(node, anvil, token, proxy, allowed_key, fund_node(anvil, node.node_key()))


def workflow(env_id: str) -> dict:
    return {"environment": env_id, "stages": [stage(0, "echo in")]}


def refused_start(setup: Setup, key: str, env_id: str, *, paid: bool) -> C2DError:
    with Client(setup.node.address, key) as client:
        return refusals.refused_start(client, workflow(env_id), payment(setup.chain) if paid else None)


def test_a_token_holder_starts_free_and_paid(setup: Setup) -> None:
    holder = new_consumer(setup.chain, setup.payee)
    setup.token.mint(holder.address, 100)
    with Client(setup.node.address, holder.key) as client:
        quoted = client.initialize(workflow(HELD), payment(setup.chain))
        assert quoted.quote.amount and quoted.free_eligible and quoted.consumer_checked
        free = client.start(workflow(HELD))
        paid = client.start(workflow(HELD), payment=payment(setup.chain))
        assert paid.payment is not None and paid.payment.status == compute_pb2.PAYMENT_STATUS_LOCKED
        for started in (free, paid):
            (job,) = client.wait(started.workflow_id, timeout=60)
            assert job.status == common_pb2.JOB_STATUS_FINISHED


def test_a_consumer_without_a_token_is_refused_before_anything_is_locked(setup: Setup) -> None:
    stranger = new_consumer(setup.chain, setup.payee)
    grants = f"hold a token of {setup.token.address.lower()} on chain {setup.chain.chain_id}"
    for paid, tier in ((False, "free"), (True, "paid")):
        err = refused_start(setup, stranger.key, HELD, paid=paid)
        assert err.code == "PERMISSION_DENIED", err
        assert f"environment 'held': the {tier} tier is restricted; to use it, {grants}" in err.message
        assert "allow list" not in err.message  # this environment has none
    assert stranger.funds(setup.chain) == (10**9, 0)
    assert stranger.escrow.get_locks(setup.chain.token_address, stranger.address) == []
    with Client(setup.node.address, stranger.key) as client, pytest.raises(C2DError) as quoted:
        client.initialize(workflow(HELD), payment(setup.chain))  # a signed quote: refused alike
    assert quoted.value.code == "PERMISSION_DENIED" and "the paid tier is restricted" in quoted.value.message
    with Client(setup.node.address, stranger.key) as client, pytest.raises(C2DError) as quoted:
        client.initialize(workflow(HELD))  # no payment: a question about the free tier
    assert quoted.value.code == "PERMISSION_DENIED" and "the free tier is restricted" in quoted.value.message
    with Client(setup.node.address) as anyone:  # unsigned: the caller is unknown, so not checked
        quote = anyone.initialize(workflow(HELD), payment(setup.chain))
    assert quote.quote.amount and not quote.consumer_checked


def test_an_allow_list_environment_admits_only_its_list(setup: Setup) -> None:
    holder = new_consumer(setup.chain, setup.payee)
    setup.token.mint(holder.address, 200)  # a token of the other environment's list grants nothing here
    for paid in (False, True):
        err = refused_start(setup, holder.key, LISTED, paid=paid)
        assert err.code == "PERMISSION_DENIED", err
        assert err.message.endswith("to use it, be on the environment's allow list (ask the node's operator)")
    allowed = auth.address_of(setup.allowed_key)
    setup.chain.fund(allowed)
    with Client(setup.node.address, setup.allowed_key) as client:
        started = client.start(workflow(LISTED))
        (job,) = client.wait(started.workflow_id, timeout=60)
    assert job.status == common_pb2.JOB_STATUS_FINISHED


def test_get_environments_shows_the_access_lists_not_the_allowed_addresses(setup: Setup) -> None:
    reply = setup.node.compute.GetEnvironments(compute_pb2.GetEnvironmentsRequest(), timeout=10)
    envs = {env.id: env for env in reply.environments}
    token_list = common_pb2.AccessList(chain_id=setup.chain.chain_id, address=setup.token.address.lower())
    for policy in (envs[HELD].free.access, envs[HELD].paid_access):
        assert list(policy.access_lists) == [token_list] and not policy.allow_list
    for policy in (envs[LISTED].free.access, envs[LISTED].paid_access):
        assert policy.allow_list and not policy.access_lists
    held = f"token {setup.token.address.lower()} (chain {setup.chain.chain_id})"
    assert env_access(envs[HELD]) == f"free: {held}; paid: {held}"  # as `c2d envs` shows it
    assert env_access(envs[LISTED]) == "free: allow list; paid: allow list"
    allowed = auth.address_of(setup.allowed_key)
    wire = reply.SerializeToString().lower()
    assert allowed[2:].lower().encode() not in wire
    assert bytes.fromhex(allowed[2:]) not in wire


def test_an_unreadable_chain_refuses_with_unavailable(setup: Setup) -> None:
    stranger = new_consumer(setup.chain, setup.payee)
    setup.proxy.cut()
    try:
        err = refused_start(setup, stranger.key, HELD, paid=False)
        assert err.code == "UNAVAILABLE", err
        assert "the chain could not be read to check yours" in err.message, err.message
        with Client(setup.node.address, setup.allowed_key) as client:  # the allow list needs no chain
            started = client.start(workflow(LISTED))
    finally:
        setup.proxy.restore()
    with Client(setup.node.address, setup.allowed_key) as client:
        (job,) = client.wait(started.workflow_id, timeout=60)
    assert job.status == common_pb2.JOB_STATUS_FINISHED
