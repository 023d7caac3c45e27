"""The command line's grammar: global options, then one command (some with sub-commands)."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from importlib import metadata
from typing import Any

from c2d.cli import admin, compute, dashboard, earnings, escrow, keys, proof
from c2d.cli.context import DEFAULT_NODE, NODE_ENV
from c2d.client import DEFAULT_TIMEOUT

Handler = Callable[..., int]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="c2d",
        description="Run algorithms on a Compute-to-Data node and fetch their results.",
        epilog="Exit codes: 0 ok, 1 a stage failed (--wait) or a proof check failed, 2 usage or input error, "
        "3 node error, 4 chain error.",
    )
    parser.add_argument("--node", help=f"node address host:port (default: ${NODE_ENV} or {DEFAULT_NODE})")
    parser.add_argument(
        "--key-file", help=f"file holding your hex private key (default: ${keys.KEY_FILE_ENV})"
    )
    parser.add_argument("--json", action="store_true", help="print JSON (for scripts)")
    parser.add_argument("--base-units", action="store_true", help=BASE_UNITS_HELP)
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, help="seconds per call")
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _add_compute(commands)
    _add_escrow(commands)
    _add_admin(commands)
    _add_key(commands)
    _add_dashboard(commands)
    return parser


BASE_UNITS_HELP = "amounts given and shown are whole base units of the token, not token units (1.5)"


def _leaf(commands: Any, name: str, handler: Handler, help_text: str) -> argparse.ArgumentParser:
    """A runnable command; it also takes --json after its name (`c2d start wf.json --json`)."""
    command = commands.add_parser(name, help=help_text, description=help_text)
    command.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")
    command.add_argument("--base-units", action="store_true", default=argparse.SUPPRESS, help=BASE_UNITS_HELP)
    command.set_defaults(handler=handler)
    return command


def _add_workflow_args(command: argparse.ArgumentParser) -> None:
    command.add_argument("workflow", metavar="WORKFLOW.json", help="the workflow (the seed's JSON format)")
    command.add_argument("--env", help="environment id for every stage (see c2d envs)")
    command.add_argument("--chain-id", type=int, help="pay on this chain")
    command.add_argument("--token", help="pay with this token (address)")


def _add_compute(commands: Any) -> None:
    envs = _leaf(commands, "envs", compute.cmd_envs, "list the node's environments")
    envs.add_argument("--engine", help="only this engine's environments")

    init = _leaf(commands, "init", compute.cmd_init, "validate and price a workflow without starting it")
    _add_workflow_args(init)

    start = _leaf(commands, "start", compute.cmd_start, "start a workflow")
    _add_workflow_args(start)
    start.add_argument("--free", action="store_true", help="use the free tier (otherwise paid via escrow)")
    start.add_argument(
        "--metadata",
        metavar="JSON",
        help="a JSON object kept with the workflow and shown in its status (at most 1,024 bytes)",
    )
    start.add_argument("--wait", action="store_true", help="wait until every stage has ended")
    start.add_argument("--poll", type=float, default=1.0, help="seconds between status checks (--wait)")
    start.add_argument("--wait-timeout", type=float, help="give up waiting after this many seconds")

    status = _leaf(commands, "status", compute.cmd_status, "status of a job, a workflow, or all your jobs")
    status.add_argument("id", nargs="?", metavar="ID", help="a job id or workflow id")
    status.add_argument("--all", action="store_true", help="all of your jobs")
    status.add_argument("--history", action="store_true", help="also every status change")

    logs = _leaf(commands, "logs", compute.cmd_logs, "print a stage's algorithm log")
    logs.add_argument("job_id", metavar="JOB")
    logs.add_argument("-f", "--follow", action="store_true", help="keep printing while the stage runs")
    logs.add_argument("--offset", type=int, default=0, help="start at this byte")

    result = _leaf(commands, "result", compute.cmd_result, "download every result file of a job")
    result.add_argument("job_id", metavar="JOB")
    result.add_argument("-o", "--output", metavar="DIR", default=".", help="folder to save to (default: .)")
    result.add_argument("--index", type=int, help="only the result with this index")

    stop = _leaf(commands, "stop", compute.cmd_stop, "stop a workflow or one stage")
    stop.add_argument("id", metavar="ID", help="a job id or workflow id")

    check = _leaf(commands, "proof", proof.cmd_proof, "fetch and check the payment proof of a workflow")
    check.add_argument("id", metavar="ID", help="a workflow id or the job id of one of its stages")
    check.add_argument("-o", "--output", metavar="FILE", help="save the signed records here")
    check.add_argument(
        "--rpc", help=f"also check the claim on chain through this RPC (default: ${escrow.RPC_ENV})"
    )
    check.add_argument("--payee", help="the node address you expect to have signed and claimed")


def _add_chain_args(command: argparse.ArgumentParser) -> None:
    command.add_argument("--rpc", help=f"the chain's JSON-RPC URL (default: ${escrow.RPC_ENV})")
    command.add_argument("--chain-id", type=int, help="the chain (default: the one the node accepts)")
    command.add_argument("--token", help="the token's address (default: the one the node accepts)")
    command.add_argument("--escrow", help="the escrow's address (default: the node's)")


def _add_amount(command: argparse.ArgumentParser, name: str, help_text: str) -> None:
    if name.startswith("-"):
        command.add_argument(name, help=help_text, required=True)
    else:  # a positional, which argparse refuses ``required`` for
        command.add_argument(name, help=help_text)


def _add_escrow(commands: Any) -> None:
    escrow_parser = commands.add_parser(
        "escrow", help="your funds in the node's escrow (needs c2d-sdk[chain])"
    )
    actions = escrow_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    deposit = _leaf(actions, "deposit", escrow.cmd_deposit, "move tokens from your wallet into the escrow")
    _add_amount(deposit, "amount", "how much, in token units (1.5) unless --base-units")
    _add_chain_args(deposit)
    authorize = _leaf(
        actions, "authorize", escrow.cmd_authorize, "allow the node to lock your escrow funds for workflows"
    )
    _add_amount(authorize, "--max-amount", "the most it may hold locked at once (token units)")
    authorize.add_argument(
        "--max-seconds",
        type=int,
        default=escrow.DEFAULT_MAX_SECONDS,
        help=f"the longest a lock may last (default: {escrow.DEFAULT_MAX_SECONDS})",
    )
    authorize.add_argument(
        "--max-locks",
        type=int,
        default=escrow.DEFAULT_MAX_LOCKS,
        help=f"how many locks at once (default: {escrow.DEFAULT_MAX_LOCKS})",
    )
    authorize.add_argument("--payee", help="whom to authorize (default: the node's address, from a quote)")
    _add_chain_args(authorize)
    balance = _leaf(
        actions, "balance", escrow.cmd_balance, "your wallet, escrow funds, authorizations and live locks"
    )
    balance.add_argument("--payee", help="only this payee's authorization and locks")
    _add_chain_args(balance)
    withdraw = _leaf(
        actions, "withdraw", escrow.cmd_withdraw, "move available escrow funds back to your wallet"
    )
    _add_amount(withdraw, "amount", 'how much, in token units (1.5) unless --base-units, or "all"')
    _add_chain_args(withdraw)


def _add_admin(commands: Any) -> None:
    admin_parser = commands.add_parser("admin", help="operator commands (node key)")
    topics = admin_parser.add_subparsers(dest="topic", metavar="TOPIC", required=True)
    assets = topics.add_parser("assets", help="registered datasets and algorithms")
    actions = assets.add_subparsers(dest="action", metavar="ACTION", required=True)
    register = _leaf(actions, "register", admin.cmd_assets_register, "register assets from a JSON file")
    register.add_argument("file", metavar="FILE.json", help="an asset object or a list of them")
    register.add_argument("--replace", action="store_true", help="replace an asset with the same did")
    _leaf(actions, "list", admin.cmd_assets_list, "list registered assets")
    remove = _leaf(actions, "remove", admin.cmd_assets_remove, "remove an asset")
    remove.add_argument("did", metavar="DID")
    _leaf(topics, "engines", admin.cmd_engines, "engine plugins and their health")
    _add_earnings(topics)


def _add_earnings(topics: Any) -> None:
    shown = _leaf(
        topics, "earnings", earnings.cmd_earnings, "the node's earnings available in its escrow, per token"
    )
    _add_chain_args(shown)
    withdraw = _leaf(
        topics, "withdraw", earnings.cmd_withdraw, "move the node's escrow earnings to its wallet (node key)"
    )
    withdraw.add_argument(
        "amount", nargs="?", metavar="AMOUNT", help="how much, in token units (1.5) unless --base-units"
    )
    withdraw.add_argument("--all", action="store_true", help="everything available")
    _add_chain_args(withdraw)


def _add_key(commands: Any) -> None:
    key_parser = commands.add_parser("key", help="create or inspect a key file")
    actions = key_parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    new = _leaf(actions, "new", keys.cmd_key_new, "create a new private key file (mode 0600)")
    new.add_argument("-o", "--output", metavar="FILE", required=True, help="where to write the key")
    new.add_argument("--force", action="store_true", help="replace an existing file")
    address = _leaf(actions, "address", keys.cmd_key_address, "print the address of a key file")
    address.add_argument("file", nargs="?", metavar="FILE", help="the key file (default: --key-file)")


def _add_dashboard(commands: Any) -> None:
    command = _leaf(
        commands,
        "dashboard",
        dashboard.cmd_dashboard,
        "print a link that signs a browser in to the dashboard",
    )
    command.add_argument(
        "--url", help=f"the dashboard (default: ${dashboard.DASHBOARD_ENV} or {dashboard.DEFAULT_DASHBOARD})"
    )
    command.add_argument("--open", action="store_true", help="open the link in this machine's browser")


def _version() -> str:
    try:
        return metadata.version("c2d-sdk")
    except metadata.PackageNotFoundError:
        return "unknown"
