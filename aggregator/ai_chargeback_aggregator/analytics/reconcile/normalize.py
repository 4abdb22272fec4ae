"""One name per provider and per model, whichever side wrote it.

Provider bills name models by dated snapshot (``gpt-4o-mini-2024-07-18``,
``claude-sonnet-4-20250514``), platform ids (``anthropic.claude-3-5-sonnet-20240620-v1:0``,
``claude-3-5-sonnet@20240620``) or display names (``Claude Sonnet 4``,
``Claude Haiku 3.5``); the gateway records what the provider answered
(``served_model``), usually a snapshot too. Matching happens on the family
name: lower case, no vendor prefix, no date or version suffix, and Claude
names in one word order (``claude-<family>-<version>``).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

# Billing exports and the gateway name providers differently; the gateway's names win.
PROVIDER_ALIASES: Mapping[str, str] = {
    "openai": "openai",
    "openai, inc.": "openai",
    "anthropic": "anthropic",
    "anthropic, pbc": "anthropic",
    "microsoft": "azure",
    "azure": "azure",
    "microsoft azure": "azure",
    "azure openai": "azure",
    "azure openai service": "azure",
    "amazon web services": "bedrock",
    "aws": "bedrock",
    "amazon": "bedrock",
    "amazon bedrock": "bedrock",
    "google cloud": "vertex",
    "google": "vertex",
    "gcp": "vertex",
    "vertex ai": "vertex",
}

# Vendor prefixes some platforms put in front of the model (Bedrock, Vertex, routers).
_PREFIX = re.compile(r"^(?:models/|publishers/[^/]+/models/|(?:openai|anthropic|azure|bedrock|vertex_ai|google)/|"
                     r"(?:us|eu|apac|global)\.anthropic\.|anthropic\.|openai\.)")  # fmt: skip
# Bedrock version suffix "-v1:0", Vertex "@20240620", dated snapshots "-2024-07-18" / "-20250514",
# Azure-style "-0613" (a 4-digit MMDD after a model name), "-latest".
_SUFFIXES = (
    re.compile(r"-v\d+(?::\d+)?$"),
    re.compile(r":\d+$"),
    re.compile(r"@\d{8}$"),
    re.compile(r"-\d{4}-\d{2}-\d{2}$"),
    re.compile(r"-\d{8}$"),
    re.compile(r"-(?:0[1-9]|1[0-2])\d{2}$"),
    re.compile(r"-latest$"),
)
_CLAUDE_FAMILY = re.compile(r"^claude-(?:(?P<v1>\d+(?:-\d+)?)-(?P<f1>opus|sonnet|haiku)|(?P<f2>opus|sonnet|haiku)-(?P<v2>\d+(?:-\d+)?))$")


def normalize_provider(name: str, aliases: Mapping[str, str] | None = None) -> str:
    key = name.strip().lower()
    if aliases:
        lowered = {k.strip().lower(): v for k, v in aliases.items()}
        if key in lowered:
            return lowered[key]
    return PROVIDER_ALIASES.get(key, key)


def normalize_model(name: str, aliases: Mapping[str, str] | None = None) -> str:
    """The family name both sides are matched on; aliases (raw name -> model) apply first."""
    raw = name.strip()
    if aliases and raw in aliases:
        raw = aliases[raw]
    model = raw.lower()
    if " " in model:
        # Display names ("Claude Haiku 4.5", "GPT-4o mini"): words joined by dashes;
        # Claude versions use dashes in ids ("claude-haiku-4-5").
        model = "-".join(model.split())
        if model.startswith("claude"):
            model = model.replace(".", "-")
    model = _PREFIX.sub("", model)
    changed = True
    while changed:  # "-20240620-v1:0" carries two suffixes
        changed = False
        for suffix in _SUFFIXES:
            stripped = suffix.sub("", model)
            if stripped != model and stripped:
                model, changed = stripped, True
    match = _CLAUDE_FAMILY.match(model)
    if match:
        family = match.group("f1") or match.group("f2")
        version = match.group("v1") or match.group("v2")
        model = f"claude-{family}-{version}"
    return model
