"""The byte-count calibrations in the registry are the fit of the corpus, and their bounds hold on it.

tests/fixtures/calibrate.py builds the corpus (recorded stream shapes, new
texts, o200k token counts) and fits it; a registry row that differs from a
fresh fit fails here, so the bound printed in every estimate's note
(``err<=NN%``) is the one measured, not a number someone typed.
"""

from __future__ import annotations

import pytest
from fixtures import calibrate

from ai_chargeback_plugin.usage import registry, sizes


@pytest.fixture(scope="module")
def fitted() -> dict[str, registry.Calibration]:
    return calibrate.fitted()


def _registered(name: str) -> registry.Calibration | None:
    if name in ("ANY_STREAM", "JSON_ANSWER", "REQUEST_BODY"):
        return getattr(registry, name)
    return registry.BY_FAMILY[name].stream


def test_every_registry_calibration_equals_a_fresh_fit_of_the_corpus(fitted: dict[str, registry.Calibration]) -> None:
    stale = {name: (_registered(name), row) for name, row in fitted.items() if _registered(name) != row}
    assert not stale, "run `python tests/fixtures/calibrate.py` and copy its rows into usage/registry.py:\n" + "\n".join(
        f"  {name}: registry {old} != fit {new}" for name, (old, new) in stale.items()
    )


def test_no_family_carries_a_calibration_the_corpus_does_not_measure(fitted: dict[str, registry.Calibration]) -> None:
    calibrated = {f.name for f in registry.FAMILIES if f.stream is not None}
    assert calibrated == set(fitted) - {"ANY_STREAM", "JSON_ANSWER", "REQUEST_BODY"}


@pytest.mark.parametrize("family", sorted({s.family for s in calibrate.SHAPES}))
def test_each_streamed_sample_is_within_its_familys_printed_bound(family: str) -> None:
    bound = registry.BY_FAMILY[family].stream
    assert bound is not None
    samples = [s for s in calibrate.stream_samples() if s.family == family and s.tokens >= calibrate.MIN_TOKENS]
    assert len(samples) >= len(calibrate.answers())
    for sample in samples:
        tokens, error_pct = sizes.output_from_bytes(family, sample.body_bytes, streaming=True) or (0, 0)
        assert error_pct == bound.error_pct
        assert abs(tokens - sample.tokens) <= sample.tokens * error_pct / 100, sample


def test_a_rendered_stream_parses_to_the_tokens_of_its_text() -> None:
    """The corpus is made of valid streams: the plugin's own parser reads the new text out of each."""
    from ai_chargeback_plugin.usage.estimate import answer_text

    text = (calibrate.TEXTS / "prose_en.txt").read_text(encoding="utf-8").strip()
    for shape in calibrate.SHAPES:
        body = calibrate.render_stream(shape, text, shape.per_delta[-1])
        seen = "".join(answer_text(body) or [])
        assert text in seen, shape.fixture


def test_split_tokens_keeps_every_character_once() -> None:
    text = "Reconciling 🧠 invoices — 你好, world!"
    pieces = calibrate.split_tokens(text)
    assert "".join(pieces) == text and len(pieces) >= calibrate.count(text) - 2


def test_embeddings_and_empty_bodies_get_no_output_estimate() -> None:
    assert sizes.output_from_bytes("openai.embeddings", 10_000, streaming=False) is None
    assert sizes.output_from_bytes("openai.chat", 0, streaming=True) is None
    tokens, bound = sizes.output_from_bytes("no.such.family", 50_000, streaming=True) or (0, 0)
    assert bound == registry.ANY_STREAM.error_pct and tokens > 0
