-- reconcile_gateway: the gateway's side of a provider-bill reconciliation.
-- Usage and cost per UTC day x provider x billed model x identity, from raw
-- events read with FINAL (each request once). Providers bill what reached
-- them, so requests Kong answered itself (auth, rate limit, budget) are not counted
-- as requests; their tokens are zero anyway. Cost is the contracted cost the
-- pricer computed (cost_total), compared with what the provider billed.
--
-- Parameters:
--   db            Identifier
--   start         DateTime64(3, 'UTC')   inclusive (a UTC midnight: bills are daily)
--   end           DateTime64(3, 'UTC')   exclusive
--   providers     Array(String)          gateway provider names to include ([] = all)
--
-- Columns:
--   day, provider, model (billing_model: served model, else requested)
--   consumer_id, consumer_username, consumer_custom_id, credential_fingerprint
--   currency
--   requests (proxied), input_tokens (incl. cached and cache writes),
--   cached_input_tokens, cache_write_input_tokens, output_tokens (incl. reasoning)
--   cost, unpriced_requests, estimated_requests (usage from the offline tokenizer)
SELECT
    toDate(started_at) AS day,
    provider,
    billing_model AS model,
    consumer_id,
    consumer_username,
    consumer_custom_id,
    credential_fingerprint,
    currency,
    countIf(policy_outcome NOT IN ('rejected_auth', 'rate_limited', 'rejected_other', 'budget_exceeded', 'budget_unverified')) AS requests,
    sum(input_tokens) AS input_sum,
    sum(cached_input_tokens) AS cached_sum,
    sum(cache_write_input_tokens) AS cache_write_sum,
    sum(output_tokens) AS output_sum,
    sum(cost_total) AS cost,
    countIf(pricing_status != 'priced' AND (input_tokens + output_tokens) > 0) AS unpriced_requests,
    countIf(usage_source = 'estimated') AS estimated_requests
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= {start:DateTime64(3, 'UTC')}
  AND started_at < {end:DateTime64(3, 'UTC')}
  AND (empty({providers:Array(String)}) OR has({providers:Array(String)}, provider))
GROUP BY day, provider, model, consumer_id, consumer_username, consumer_custom_id, credential_fingerprint, currency
ORDER BY day, provider, model, consumer_id, credential_fingerprint
