-- shared_credentials: credentials and consumers used by more than one team,
-- app or tenant, or from an unusual number of client IPs (OWASP NHI-01: a
-- shared non-human identity blurs both cost ownership and accountability).
-- Each credential fingerprint (HMAC of the credential, never the secret) and
-- each consumer is judged on its own: one consumer may hold several
-- credentials, and one credential maps to exactly one consumer.
--
-- Unattributed requests ('' / 'unattributed' team) do not count as a team.
--
-- Parameters:
--   db, start, end, tenant   as in attribution_summary.sql
--   max_teams       UInt32   flag above this many distinct teams (default 1)
--   max_apps        UInt32   flag above this many distinct apps (default 1)
--   max_tenants     UInt32   flag above this many distinct tenants (default 1)
--   max_client_ips  UInt32   flag above this many distinct client IPs (default 50)
--   only_flagged    UInt8    1 = only identities over a limit
--
-- Columns:
--   kind            credential | consumer
--   identity        the fingerprint or the consumer id
--   consumer        consumer username ('' when anonymous)
--   teams, apps, tenants, client_ips   distinct counts
--   team_list, app_list                up to 10 values each, sorted
--   requests, cost, first_seen, last_seen
--   flagged (0/1), reasons (e.g. ['teams 2 > 1'])
SELECT
    kind,
    identity,
    consumer,
    teams,
    apps,
    tenants,
    client_ips,
    team_list,
    app_list,
    requests,
    cost,
    first_seen,
    last_seen,
    arrayFilter(r -> r != '', [
        if(teams > {max_teams:UInt32}, concat('teams ', toString(teams), ' > ', toString({max_teams:UInt32})), ''),
        if(apps > {max_apps:UInt32}, concat('apps ', toString(apps), ' > ', toString({max_apps:UInt32})), ''),
        if(tenants > {max_tenants:UInt32}, concat('tenants ', toString(tenants), ' > ', toString({max_tenants:UInt32})), ''),
        if(client_ips > {max_client_ips:UInt32}, concat('client IPs ', toString(client_ips), ' > ', toString({max_client_ips:UInt32})), '')
    ]) AS reasons,
    toUInt8(notEmpty(reasons)) AS flagged
FROM
(
    SELECT
        pair.1 AS kind,
        pair.2 AS identity,
        any(consumer_username) AS consumer,
        uniqExactIf(team, team NOT IN ('', 'unattributed')) AS teams,
        uniqExactIf(app, app != '') AS apps,
        uniqExactIf(tenant, tenant != '') AS tenants,
        uniqExactIf(client_ip, client_ip != '') AS client_ips,
        arraySlice(arraySort(groupUniqArrayIf(toString(team), team NOT IN ('', 'unattributed'))), 1, 10) AS team_list,
        arraySlice(arraySort(groupUniqArrayIf(toString(app), app != '')), 1, 10) AS app_list,
        count() AS requests,
        sum(cost_total) AS cost,
        min(started_at) AS first_seen,
        max(started_at) AS last_seen
    FROM {db:Identifier}.usage_events FINAL
    ARRAY JOIN [('credential', credential_fingerprint), ('consumer', consumer_id)] AS pair
    WHERE started_at >= {start:DateTime64(3, 'UTC')}
      AND started_at < {end:DateTime64(3, 'UTC')}
      AND ({tenant:String} = '' OR tenant = {tenant:String})
      AND pair.2 != ''
    GROUP BY kind, identity
)
WHERE flagged OR NOT {only_flagged:UInt8}
ORDER BY flagged DESC, teams DESC, apps DESC, client_ips DESC, requests DESC, kind, identity
