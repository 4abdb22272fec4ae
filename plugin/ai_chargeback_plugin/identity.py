"""Who is accountable for a request, resolved from one kong.log.serialize() snapshot.

Precedence, first match wins per attribute:
  1. the authenticated consumer: its tags ``tenant:``, ``team:``, ``app:``,
     ``workload:``; app and workload fall back to the consumer itself
     (username; custom_id for the workload) because a consumer *is* an app
     identity in Kong;
  2. route tags, 3. service tags (same ``key:value`` form);
  4. request headers, only when ``headers`` is in ``identity_sources``;
  5. the configured default (tenant only).
A team that stays unknown is recorded as ``unattributed`` with the reason.
A header naming another value than the one chosen is recorded as a conflict,
trusted or not: a spoofing attempt is itself worth seeing.
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ai_chargeback_proto import pb
from ai_chargeback_proto.limits import text_limit

from .config import PluginConfig

UNATTRIBUTED = "unattributed"
ATTRIBUTES = ("tenant", "team", "app", "workload")
# The contract's length for tenant, team, app and workload (the same for each).
MAX_VALUE_CHARS = min(text_limit(attribute) for attribute in ATTRIBUTES)

_SOURCE_BY_KIND = {
    "consumer": pb.IDENTITY_SOURCE_CONSUMER,
    "route_tags": pb.IDENTITY_SOURCE_ROUTE_TAG,
    "service_tags": pb.IDENTITY_SOURCE_SERVICE_TAG,
    "headers": pb.IDENTITY_SOURCE_HEADER,
}


@dataclass(frozen=True, slots=True)
class Identity:
    values: Mapping[str, str]
    sources: Mapping[str, int]  # pb.IdentitySource per attribute
    unattributed_reason: str
    conflicts: tuple[str, ...]
    consumer_id: str
    consumer_username: str
    consumer_custom_id: str
    credential_fingerprint: str


def tag_values(tags: Any) -> dict[str, str]:
    """``["team:payments", "env:prod"]`` -> ``{"team": "payments", "env": "prod"}`` (first wins)."""
    found: dict[str, str] = {}
    if isinstance(tags, Sequence) and not isinstance(tags, str):
        for tag in tags:
            if isinstance(tag, str):
                key, sep, value = tag.partition(":")
                if sep and value and key not in found:
                    found[key] = value
    return found


def header_value(headers: Mapping[str, Any], name: str) -> str:
    """Kong serializes repeated headers as lists; the first value counts."""
    value = headers.get(name)
    if isinstance(value, list):
        value = value[0] if value else ""
    return value.strip() if isinstance(value, str) else ""


def fingerprint(secret: bytes, credential_id: str) -> str:
    """Keyed hash of the credential's id: stable per credential, useless to an attacker."""
    if not secret or not credential_id:
        return ""
    return hmac.new(secret, credential_id.encode(), hashlib.sha256).hexdigest()[:32]


def resolve(serialized: Mapping[str, Any], config: PluginConfig) -> Identity:
    consumer = serialized.get("consumer") if isinstance(serialized.get("consumer"), Mapping) else None
    headers = _mapping(_mapping(serialized.get("request")).get("headers"))
    candidates: dict[str, dict[str, str]] = {}  # source kind -> attribute -> value
    for kind in config.identity_sources:
        if kind == "consumer" and consumer is not None:
            found = tag_values(consumer.get("tags"))
            username = _text(consumer.get("username"))
            custom_id = _text(consumer.get("custom_id"))
            found.setdefault("app", username or custom_id)
            found.setdefault("workload", custom_id or username)
            candidates[kind] = found
        elif kind == "route_tags":
            candidates[kind] = tag_values(_mapping(serialized.get("route")).get("tags"))
        elif kind == "service_tags":
            candidates[kind] = tag_values(_mapping(serialized.get("service")).get("tags"))
        elif kind == "headers":
            candidates[kind] = _from_headers(headers, config)

    values: dict[str, str] = {}
    sources: dict[str, int] = {}
    for attribute in ATTRIBUTES:
        for kind in config.identity_sources:
            value = candidates.get(kind, {}).get(attribute, "")
            if value:
                values[attribute] = value[:MAX_VALUE_CHARS]
                sources[attribute] = _SOURCE_BY_KIND[kind]
                break
        else:
            values[attribute] = ""
            sources[attribute] = pb.IDENTITY_SOURCE_NONE
    if not values["tenant"]:
        values["tenant"], sources["tenant"] = config.default_tenant, pb.IDENTITY_SOURCE_DEFAULT

    reason = ""
    if not values["team"]:
        values["team"] = UNATTRIBUTED
        if consumer is None:
            reason = "no-authenticated-consumer"
        elif "consumer" not in config.identity_sources:
            reason = "consumer-not-trusted"
        else:
            reason = "no-team-tag"

    conflicts = tuple(_conflicts(values, headers, config))
    credential = _mapping(serialized.get("authenticated_entity"))
    return Identity(
        values=values,
        sources=sources,
        unattributed_reason=reason,
        conflicts=conflicts,
        consumer_id=_text(consumer.get("id")) if consumer else "",
        consumer_username=_text(consumer.get("username")) if consumer else "",
        consumer_custom_id=_text(consumer.get("custom_id")) if consumer else "",
        credential_fingerprint=fingerprint(config.credential_hmac_secret, _text(credential.get("id"))),
    )


def _from_headers(headers: Mapping[str, Any], config: PluginConfig) -> dict[str, str]:
    names = {"tenant": config.header_tenant, "team": config.header_team, "app": config.header_app,
             "workload": config.header_workload}  # fmt: skip
    return {attribute: value for attribute, name in names.items() if (value := header_value(headers, name))}


def _conflicts(values: Mapping[str, str], headers: Mapping[str, Any], config: PluginConfig) -> list[str]:
    found = []
    for attribute, claimed in _from_headers(headers, config).items():
        chosen = values.get(attribute, "")
        if claimed != chosen:
            found.append(f"{attribute}: header={claimed[:64]} resolved={chosen[:64]}")
    return found


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _text(value: Any) -> str:
    return value if isinstance(value, str) else ""
