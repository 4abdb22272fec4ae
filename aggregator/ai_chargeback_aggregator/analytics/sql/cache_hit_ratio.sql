-- cache_hit_ratio: how much of each app's prompt input was served from the
-- provider's prompt cache, and what caching saved.
--
-- Reads usage_events FINAL. input_tokens includes cached and cache-write
-- tokens (the store's token rule), so the ratio is cached / input. The
-- saving is what the cached tokens would have cost at the uncached input
-- rate minus what they cost (both from the rates stored on each event).
--
-- Parameters:
--   db      Identifier              database holding usage_events
--   start   DateTime64(3, 'UTC')    inclusive
--   end     DateTime64(3, 'UTC')    exclusive
--
-- Columns (lowest hit ratio first, apps with input tokens only):
--   tenant, app, model, events, input (tokens, cached included), cached, cache_write,
--   hit_ratio (Float64, cached / input), saving (Decimal USD)
SELECT
    tenant,
    app,
    billing_model AS model,
    count() AS events,
    sum(input_tokens) AS input,
    sum(cached_input_tokens) AS cached,
    sum(cache_write_input_tokens) AS cache_write,
    cached / input AS hit_ratio,
    sum(toDecimal128(cached_input_tokens, 0) * (toDecimal128(rate_input_e12, 0) - toDecimal128(rate_cached_input_e12, 0))
        * toDecimal128('0.000000000000000001', 18)) AS saving
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
GROUP BY tenant, app, model
HAVING input > 0
ORDER BY hit_ratio, tenant, app, model
