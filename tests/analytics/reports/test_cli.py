"""The commands against the store directly (no aggregator running), as an operator would use them."""

from __future__ import annotations

import csv
import io
import json
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path

import pyarrow.parquet as pq
from support.aggregator_fixtures import free_port
from support.seed import day_start, random_events, recent_day, seeded_store, store_dsn, usage_event

from ai_chargeback_aggregator.cli.main import main


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def test_operator_flow_on_the_embedded_store(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.delenv("CHARGEBACK_SQL_TOKEN", raising=False)
    monkeypatch.setenv("CHARGEBACK_AGGREGATOR_URL", "")
    monkeypatch.setenv("CHARGEBACK_HTTP_LISTEN", f"127.0.0.1:{free_port()}")  # where no aggregator answers
    first = recent_day(3)
    with seeded_store(tmp_path) as seed:
        seed.insert(random_events(300, first=first, days=3))
        seed.insert([usage_event(day_start(recent_day(2)), provider="vllm", requested_model="llama-internal", served_model="llama-internal")])
        seed.build_rollups()
    store = ["--store-dsn", store_dsn(tmp_path)]
    period = ["--from", first.isoformat(), "--to", recent_day(1).isoformat()]  # both days inclusive

    code, out, _ = run("report", "--by", "team", "--mode", "chargeback", "--format", "json", *period, *store)
    assert code == 1  # unpriced usage present
    report = json.loads(out)
    assert report["totals"]["flag"] == "UNPRICED" and report["totals"]["unpriced_models"] == ["llama-internal"]
    assert report["sources"]["days_from_daily_rollup"] == 3

    prices = tmp_path / "prices.csv"
    prices.write_text(f"id,provider,model,kind,effective_from,input_per_mtok,output_per_mtok\nllama,vllm,llama-internal,list,{first},0.4,0.8\n")
    code, out, err = run("prices", "load", str(prices), *store)
    assert code == 0, err
    code, out, err = run("reprice", *period, "--reason", "price the internal llama", *store)
    assert code == 0, err
    assert json.loads(out)["events_repriced"] == 1

    code, out, _ = run("report", "--by", "model", "--format", "csv", *period, *store)
    assert code == 0  # everything priced now
    rows = list(csv.DictReader(io.StringIO(out.split("\n\n")[0].split("\n", 1)[1])))
    llama = next(r for r in rows if r["key"] == "llama-internal")
    assert llama["flag"] == "" and llama["list_cost_exact"] == "0.000720000000000000"  # 1000 x 0.4 + 300 x 0.8 per 1M

    code, out, _ = run("explain", llama["handle"], "--format", "json", *store)
    explained = json.loads(out)
    assert code == 0 and explained["summary"]["events"] == 1
    assert explained["events"][0]["price_source"] == "override:llama" and explained["events"][0]["reprice_run_id"]

    out_file = tmp_path / "focus.parquet"
    code, _, err = run("export", "focus", *period, "--out", str(out_file), *store)
    assert code == 0, err
    assert "FOCUS export: day 3/3" in err and pq.read_table(out_file).num_rows > 0

    code, out, _ = run("sql", "--query", "top_apps",
                       "--param", f"start={first} 00:00:00", "--param", f"end={recent_day(0)} 00:00:00", "--param", "limit=2",
                       "--format", "csv", *store)  # fmt: skip
    assert code == 0 and len(out.strip().splitlines()) == 3

    code, _, err = run("reprice", *period, "--reason", "", *store)
    assert code == 2 and "reason" in err
