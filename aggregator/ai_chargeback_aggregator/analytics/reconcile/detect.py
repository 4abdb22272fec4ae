"""Which parser reads a file: each format says whether it recognizes the content."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path

from . import anthropic_costs, anthropic_usage, focus, openai_costs, openai_usage
from .lines import ExportError, ProviderExport

# Order matters only where formats could look alike; these do not, but FOCUS
# goes first because its Parquet files are recognized by magic bytes.
FORMATS: Mapping[str, tuple[Callable[[bytes], bool], Callable[..., ProviderExport]]] = {
    focus.FORMAT: (focus.sniff, focus.parse),
    openai_usage.FORMAT: (openai_usage.sniff, openai_usage.parse),
    openai_costs.FORMAT: (openai_costs.sniff, openai_costs.parse),
    anthropic_usage.FORMAT: (anthropic_usage.sniff, anthropic_usage.parse),
    anthropic_costs.FORMAT: (anthropic_costs.sniff, anthropic_costs.parse),
}


def detect(data: bytes) -> str:
    for name, (sniff, _) in FORMATS.items():
        if sniff(data):
            return name
    raise ExportError(
        "unrecognized provider export: expected FOCUS (CSV/Parquet), OpenAI usage or costs "
        "(API JSON or dashboard CSV), or Anthropic usage or cost report (Admin API JSON or Console CSV)"
    )


def load_export(
    path: str | Path,
    *,
    format: str = "auto",
    provider: str = "",
    provider_aliases: Mapping[str, str] | None = None,
) -> ProviderExport:
    source = Path(path)
    try:
        data = source.read_bytes()
    except OSError as exc:
        raise ExportError(f"cannot read {source}: {exc}") from exc
    return parse_export(data, name=str(source), format=format, provider=provider, provider_aliases=provider_aliases)


def parse_export(
    data: bytes,
    *,
    name: str,
    format: str = "auto",
    provider: str = "",
    provider_aliases: Mapping[str, str] | None = None,
) -> ProviderExport:
    """One export's bytes, parsed; `name` is what errors and the result call it (a path or an uploaded file's name)."""
    try:
        found = detect(data) if format == "auto" else format
    except ExportError as exc:
        raise ExportError(f"{name}: {exc}") from None  # with several files, say which one
    if found not in FORMATS:
        raise ExportError(f"unknown export format {found!r}; known: {', '.join(FORMATS)}")
    try:
        if found == focus.FORMAT:
            return focus.parse(data, path=name, provider=provider, provider_aliases=provider_aliases)
        return FORMATS[found][1](data, path=name)
    except ExportError as exc:
        raise ExportError(f"{name} ({found}): {exc}") from exc
    except (KeyError, ValueError, TypeError, AttributeError) as exc:
        raise ExportError(f"{name} ({found}): malformed export: {exc!r}") from exc
