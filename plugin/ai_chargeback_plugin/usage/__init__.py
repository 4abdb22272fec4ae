"""Provider usage parsing: exact token counts from LLM requests and responses.

Flow on Kong's hot path::

    access phase:  facts, new_body = prepare_request(path, body, host=...)   # maybe inject include_usage
                   ctx["facts"] = facts.to_wire()
    log phase:     record = parse_usage(Exchange(path, body, ..., facts=RequestFacts.from_wire(ctx["facts"])))
                   if record.source is UsageSource.NONE:
                       record = usage_from_ai_proxy(kong.log.serialize()) or estimate_usage(facts, exchange)

One adapter per API family lives in :mod:`.adapters`; the normalization rule is
in :mod:`.record`; note words and billable-extra keys in :mod:`.notes`.
"""

from .detect import detect_family
from .estimate import estimate_usage
from .estimate import warm as warm_tokenizer
from .facts import RequestFacts
from .kong import ai_proxy_ran, requested_model_from_ai_proxy, usage_from_ai_proxy
from .parse import Exchange, parse_usage, sniff_family
from .prepare import prepare_decoded_request, prepare_request
from .record import UsageRecord, UsageSource

__all__ = [
    "Exchange",
    "RequestFacts",
    "UsageRecord",
    "UsageSource",
    "ai_proxy_ran",
    "detect_family",
    "estimate_usage",
    "parse_usage",
    "prepare_decoded_request",
    "prepare_request",
    "requested_model_from_ai_proxy",
    "sniff_family",
    "usage_from_ai_proxy",
    "warm_tokenizer",
]
