"""`chargeback reprice`: recompute stored costs after a price change, and record why.

    chargeback reprice --from 2026-10-01 --to 2026-11-01 --reason "MSA 2026 discount, effective Oct 1"

Events whose price changed are re-inserted as newer versions of themselves
(each still counts once), the rollups of their hours are rebuilt, and the run
is recorded in reprice_runs with its reason and the cost before and after.
Running it again with the same prices changes nothing. Goes through a
running aggregator (admin token) when there is one, else opens the store.
"""

from __future__ import annotations

import argparse
import json
import sys

from ..aggregator_client import AggregatorError, add_write_target_options, admin_token, post, running_aggregator, whole_days
from ..query_source import EXIT_ERROR, EXIT_OK, add_period_options


def register(subparsers: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    parser = subparsers.add_parser("reprice", help="recompute costs after a price change (idempotent, recorded)",
                                   description=__doc__.split("\n\n", 1)[0] if __doc__ else None)  # fmt: skip
    parser.add_argument("--reason", required=True, help="why: recorded with the run (required)")
    add_period_options(parser)
    add_write_target_options(parser)
    parser.set_defaults(handler=run)


def run(args: argparse.Namespace) -> int:
    from ...analytics.governance import GovernanceError
    from ...pricing.reprice import RepriceError, reprice
    from ...settings import AggregatorSettings
    from ...store.clickhouse import Store, StoreError

    try:
        first, last = whole_days(args)
        url = running_aggregator(args.aggregator)
        if url:
            token = admin_token(args)
            if not token:
                raise AggregatorError(f"an aggregator runs at {url}: pass --admin-token (or set CHARGEBACK_ADMIN_TOKEN)")
            result = post(url, "/v1/reprice", token, {"from": first.isoformat(), "to": last.isoformat(), "reason": args.reason})
        else:
            overrides = {k: v for k, v in (("store_dsn", args.store_dsn), ("database", args.database)) if v}
            settings = AggregatorSettings(**overrides)  # type: ignore[arg-type]
            store = Store.from_settings(settings)
            try:
                store.migrate()
                result = reprice(store, first=first, last=last, reason=args.reason).to_dict()
            finally:
                store.close()
    except (AggregatorError, GovernanceError, RepriceError, StoreError, ValueError) as exc:
        print(f"chargeback reprice: {exc}", file=sys.stderr)
        return EXIT_ERROR
    json.dump(result, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return EXIT_OK
