-- cost_per_model: what each model costs, in total and per unit of work.
--
-- Reads usage_events FINAL. billing_model is the model the provider served
-- (the requested one when the response did not say). Unit costs are exact
-- Decimals: per request and per 1M tokens (input + output); NULL when the
-- divisor is zero.
--
-- Parameters:
--   db      Identifier              database holding usage_events
--   start   DateTime64(3, 'UTC')    inclusive
--   end     DateTime64(3, 'UTC')    exclusive
--
-- Columns (most expensive first):
--   provider, model, price_model_id (the catalog/override model it was priced as),
--   events, input_tokens, output_tokens, cost, list_cost,
--   cost_per_request, cost_per_mtok, unpriced_events
SELECT
    provider,
    billing_model AS model,
    anyLast(price_model_id) AS price_model_id,
    count() AS events,
    sum(input_tokens) AS input_tokens,
    sum(output_tokens) AS output_tokens,
    sum(cost_total) AS cost,
    sum(list_cost_total) AS list_cost,
    if(events = 0, NULL, cost / events) AS cost_per_request,
    if(input_tokens + output_tokens = 0, NULL, cost * 1000000 / (input_tokens + output_tokens)) AS cost_per_mtok,
    countIf(pricing_status = 'unpriced') AS unpriced_events
FROM {db:Identifier}.usage_events FINAL
WHERE started_at >= {start:DateTime64(3, 'UTC')} AND started_at < {end:DateTime64(3, 'UTC')}
GROUP BY provider, model
ORDER BY cost DESC, provider, model
