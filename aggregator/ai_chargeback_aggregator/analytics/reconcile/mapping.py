"""The optional mapping file: provider accounts to gateway identities, plus name aliases.

YAML or JSON::

    accounts:                      # provider API key / project / workspace -> Kong identity
      - provider: openai
        api_key_id: key_abc        # exactly one of api_key_id, project_id, workspace_id
        label: checkout            # optional; shown in reports (default: the id)
        consumers: [checkout-svc]  # Kong consumer username, id or custom_id
        credential_fingerprints: []
    models:                        # raw export name -> model (meters, SKU ids, fine-tunes)
      gpt-4o-mini-0718-Inp-glbl: gpt-4o-mini
    providers:                     # export provider name -> gateway provider
      Microsoft: azure

Anthropic's Console CSV names keys rather than giving their ids: put the key
name in ``api_key_id``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .lines import BillLine, ExportError
from .normalize import normalize_provider

ACCOUNT_KINDS = ("api_key_id", "project_id", "workspace_id")
UNMAPPED_GATEWAY = "(gateway identity not mapped)"


@dataclass(frozen=True, slots=True)
class AccountRule:
    provider: str
    kind: str
    value: str
    label: str
    consumers: frozenset[str] = frozenset()
    fingerprints: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class AccountMapping:
    accounts: tuple[AccountRule, ...] = ()
    models: Mapping[str, str] = field(default_factory=dict)
    providers: Mapping[str, str] = field(default_factory=dict)

    @property
    def mapped_providers(self) -> frozenset[str]:
        return frozenset(rule.provider for rule in self.accounts)

    def bill_label(self, line: BillLine) -> str | None:
        """The account label of a bill line; None when the export had no account for it."""
        if not line.account:
            return None
        for rule in self.accounts:
            if rule.provider == line.provider and rule.kind == line.account_kind and rule.value == line.account:
                return rule.label
        return f"unmapped {line.account_kind} {line.account}"

    def gateway_label(self, provider: str, identities: tuple[str, ...], fingerprint: str) -> str:
        """The account label of gateway traffic, from its consumer (id, username, custom id) or credential."""
        for rule in self.accounts:
            if rule.provider != provider:
                continue
            if (fingerprint and fingerprint in rule.fingerprints) or any(i and i in rule.consumers for i in identities):
                return rule.label
        return UNMAPPED_GATEWAY


def load_mapping(path: str | Path) -> AccountMapping:
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read mapping file {source}: {exc}") from exc
    return mapping_from_bytes(data, str(source))


def mapping_from_bytes(data: bytes, name: str) -> AccountMapping:
    """A mapping file's content: JSON when its name ends in .json, else YAML (a run sent to the aggregator carries the bytes)."""
    try:
        body = data.decode("utf-8")
        if name.lower().endswith(".json"):
            parsed = json.loads(body)
        else:
            import yaml

            parsed = yaml.safe_load(body)
    except Exception as exc:  # json and yaml raise their own types
        raise ExportError(f"mapping file {name} is not valid: {exc}") from exc
    return parse_mapping(parsed or {})


def parse_mapping(data: Mapping[str, Any]) -> AccountMapping:
    errors: list[str] = []
    if not isinstance(data, Mapping):
        raise ExportError("mapping file must hold an object")
    unknown = set(data) - {"accounts", "models", "providers"}
    if unknown:
        errors.append(f"unknown sections {sorted(unknown)}")
    providers = {str(k): str(v) for k, v in (data.get("providers") or {}).items()}
    rules: list[AccountRule] = []
    for index, entry in enumerate(data.get("accounts") or []):
        where = f"accounts[{index}]"
        if not isinstance(entry, Mapping):
            errors.append(f"{where} must be an object")
            continue
        kinds = [k for k in ACCOUNT_KINDS if entry.get(k)]
        if len(kinds) != 1:
            errors.append(f"{where} needs exactly one of {', '.join(ACCOUNT_KINDS)}")
            continue
        if not entry.get("provider"):
            errors.append(f"{where} needs a provider")
            continue
        consumers = frozenset(str(c) for c in entry.get("consumers") or [])
        fingerprints = frozenset(str(f) for f in entry.get("credential_fingerprints") or [])
        if not consumers and not fingerprints:
            errors.append(f"{where} maps to no consumer or credential fingerprint")
        value = str(entry[kinds[0]])
        rules.append(AccountRule(
            provider=normalize_provider(str(entry["provider"]), providers), kind=kinds[0], value=value,
            label=str(entry.get("label") or value), consumers=consumers, fingerprints=fingerprints,
        ))  # fmt: skip
    if errors:
        raise ExportError("mapping file: " + "; ".join(errors))
    models = {str(k): str(v) for k, v in (data.get("models") or {}).items()}
    return AccountMapping(accounts=tuple(rules), models=models, providers=providers)
