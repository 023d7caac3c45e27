"""``c2d dashboard``: signs a browser in to a node's dashboard with your key, through a one-time link.

The command asks the dashboard for a challenge, signs it with the key file (as a wallet's
personal_sign would) and trades the signature for a link that signs in whichever browser opens
it first, within two minutes. The key never leaves this process and the browser never holds it.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
import webbrowser
from typing import TYPE_CHECKING, Any

from c2d import auth
from c2d.cli.errors import UsageError
from c2d.client import C2DError

if TYPE_CHECKING:
    from c2d.cli.context import Context

DASHBOARD_ENV = "C2D_DASHBOARD"
DEFAULT_DASHBOARD = "http://127.0.0.1:8000/dashboard"


def cmd_dashboard(ctx: Context) -> int:
    base = (ctx.args.url or os.environ.get(DASHBOARD_ENV) or DEFAULT_DASHBOARD).rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise UsageError(f"the dashboard's URL must start with http:// or https://, got {base!r}")
    key = ctx.private_key()
    challenge = _call(base, "/api/challenge", None, ctx.args.timeout)
    signature = "0x" + auth.sign_text(key, str(challenge["text"])).hex()
    link = _call(base, "/api/links", {"challenge": challenge["id"], "signature": signature}, ctx.args.timeout)
    role = "the operator" if link.get("operator") else "a consumer"
    ctx.out.result(
        link, f"{link['url']}\n(signs a browser in as {link['address']}, {role}; once, within 2 minutes)"
    )
    if ctx.args.open:
        webbrowser.open(str(link["url"]))
    return 0


def _call(base: str, path: str, body: dict[str, Any] | None, timeout: float) -> dict[str, Any]:
    """One JSON call to the dashboard; C2DError (exit code 3) with the dashboard's words when refused."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            answer = json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        raise C2DError("UNAUTHENTICATED" if exc.code == 401 else "UNKNOWN", _words(exc)) from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise C2DError(
            "UNAVAILABLE", f"no dashboard answers at {base} ({reason}); set --url or {DASHBOARD_ENV}"
        ) from None
    except ValueError:
        raise C2DError("UNKNOWN", f"{base}{path} did not answer JSON: is it a node's dashboard?") from None
    if not isinstance(answer, dict):
        raise C2DError("UNKNOWN", f"{base}{path} answered {type(answer).__name__}, not an object")
    return answer


def _words(error: urllib.error.HTTPError) -> str:
    text = error.read(2000).decode("utf-8", "replace")
    try:
        return str(json.loads(text)["error"])
    except (ValueError, KeyError, TypeError):
        return text.strip() or f"HTTP {error.code}"
