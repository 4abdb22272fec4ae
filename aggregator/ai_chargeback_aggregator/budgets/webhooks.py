"""Webhook bodies and one delivery attempt: generic JSON, or a Slack-compatible message.

Targets are named in settings (``CHARGEBACK_BUDGET_WEBHOOKS``, a JSON object of
name -> {"url", "format": "json"|"slack", "token"}); a budget's ``notify``
picks names, and no ``notify`` means every target. Every request carries the
alert id (``X-Chargeback-Alert-Id`` and in the body) so a receiver can drop the
rare duplicate a takeover after a crash can send.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .. import __version__
from ..settings import BudgetWebhook

FORMATS = ("json", "slack")
ALERT_ID_HEADER = "X-Chargeback-Alert-Id"
# Answers worth retrying: the receiver may recover. Any other 4xx will not fix itself.
RETRYABLE_STATUSES = frozenset((408, 425, 429))
MAX_ERROR_CHARS = 500


@dataclass(frozen=True, slots=True)
class Target:
    name: str
    url: str
    format: str = "json"
    token: str = ""


@dataclass(frozen=True, slots=True)
class Attempt:
    ok: bool
    status: int  # HTTP status; 0 when no answer came
    error: str
    retryable: bool


def body_for(target: Target, payload: Mapping[str, Any]) -> bytes:
    data = slack_message(payload) if target.format == "slack" else payload
    return json.dumps(data, sort_keys=True).encode()


def slack_message(payload: Mapping[str, Any]) -> dict[str, Any]:
    """Slack incoming-webhook body: a text fallback and one section block (mrkdwn)."""
    state = {"enforced": "refused at the gateway", "exhausted": "exhausted (alert only)"}.get(payload.get("state", ""), "")
    unit = "USD" if payload.get("unit") == "usd" else "tokens"
    headline = (
        f"Budget {payload['budget_id']} ({payload['scope_text']}) crossed {payload['threshold_percent']}%: "
        f"{payload['spend']} of {payload['limit']} {unit} in {payload['period_label']} ({payload['timezone']})"
    )
    lines = [f"*{headline}*"]
    if state:
        lines.append(f"Requests in this scope are {state} until {payload['resets_at']}." if payload.get("state") == "enforced"
                     else f"Budget {state}; resets {payload['resets_at']}.")  # fmt: skip
    forecast = payload.get("forecast") or {}
    if forecast.get("exhausts_at"):
        lines.append(f"At this period's run rate it is exhausted at {forecast['exhausts_at']}.")
    lines.append(f"alert `{payload['alert_id']}`")
    return {"text": headline, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "\n".join(lines)}}]}


def send(target: Target, payload: Mapping[str, Any], *, timeout_s: float) -> Attempt:
    """One POST. Never raises: the outcome says whether to retry."""
    headers = {
        "content-type": "application/json",
        "user-agent": f"kong-ai-chargeback/{__version__}",
        ALERT_ID_HEADER: str(payload.get("alert_id", "")),
    }
    if target.token:
        headers["authorization"] = f"Bearer {target.token}"
    request = urllib.request.Request(target.url, data=body_for(target, payload), method="POST", headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:  # noqa: S310 (operator-configured URL)
            response.read(64 * 1024)
            return Attempt(True, response.status, "", False)
    except urllib.error.HTTPError as exc:
        detail = exc.read(MAX_ERROR_CHARS).decode("utf-8", "replace") if exc.fp else ""
        retryable = exc.code >= 500 or exc.code in RETRYABLE_STATUSES
        return Attempt(False, exc.code, f"HTTP {exc.code}: {detail}"[:MAX_ERROR_CHARS], retryable)
    except (urllib.error.URLError, OSError) as exc:
        reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
        return Attempt(False, 0, f"{type(exc).__name__}: {reason}"[:MAX_ERROR_CHARS], True)
    except ValueError as exc:  # a malformed URL: configuration, not the network
        return Attempt(False, 0, f"bad webhook URL: {exc}"[:MAX_ERROR_CHARS], False)


def targets_from(configured: Mapping[str, BudgetWebhook]) -> dict[str, Target]:
    """The targets configured in settings (CHARGEBACK_BUDGET_WEBHOOKS)."""
    return {
        name: Target(name, hook.url.get_secret_value(), hook.format, hook.token.get_secret_value() if hook.token else "")
        for name, hook in configured.items()
    }
