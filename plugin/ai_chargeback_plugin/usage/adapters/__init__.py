"""One module per provider API family: pure functions from response bytes to a UsageRecord.

Every adapter exposes ``parse(body, *, stream) -> UsageRecord`` (Bedrock also
takes the response headers). ``body`` is already decoded (no Content-Encoding)
and within the size cap; ``stream`` says whether it is the provider's streaming
format. Adapters fill the counts, the model the *response* names, the service
tier, billable extras and a note; the dispatcher (``..parse``) adds provider,
API family, the streaming flag and the model fallbacks (URL, request).

No Kong, gRPC or ClickHouse imports here, ever.
"""
