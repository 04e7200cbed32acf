"""The benchmark's report: the figures of one run as a dict (printed as JSON with --json) and as
the table `course bench` prints."""

from __future__ import annotations

from typing import Any

from course.devtools.bench.config import BenchConfig

def build_report(
    config: BenchConfig,
    figures: dict[str, Any],
    ledger: dict[str, Any],
    probes: dict[int, dict[str, Any]],
    rss: dict[int, dict[str, Any]],
    ceiling: dict[str, Any] | None,
    *,
    run_seconds: float,
    message_bytes: int,
    fan_out_statements: int,
    redis_delta: int,
    commits_delta: int,
    sink_accepted: int | None,
) -> dict[str, Any]:
    sent = ledger["sent"]
    span = (ledger["last_sent"] - ledger["first_due"]).total_seconds() if sent else 0.0
    statements = fan_out_statements + sum(p["statements"] for p in probes.values())
    round_trips = fan_out_statements + sum(p["round_trips"] for p in probes.values())
    dispatch_seconds = sum(p["dispatch_seconds"] for p in probes.values())
    dispatch_claimed = sum(p["dispatch_claimed"] for p in probes.values())
    senders = [r for r in rss.values() if r["role"] == "sender"]
    dispatchers = [r for r in rss.values() if r["role"] == "dispatcher"]
    end_to_end = sent / span if span > 0 else 0.0
    report: dict[str, Any] = {
        "scenario": config.scenario,
        "subscribers": config.subscribers,
        "workers": config.worker_count,
        "pool": config.pool,
        "smtp_connections": config.connections,
        "message_bytes": message_bytes,
        **figures,
        "emails_due": ledger["rows"],
        "emails_sent": sent,
        "sink_accepted": sink_accepted,
        "states": ledger["by_state"],
        "retried": ledger["retried"],
        "run_seconds": round(run_seconds, 2),
        "end_to_end": {"seconds": round(span, 2), "emails_per_second": round(end_to_end, 1)},
        "dispatch": {"claimed": dispatch_claimed, "busy_seconds": round(dispatch_seconds, 2),
                     "rows_per_second": round(dispatch_claimed / dispatch_seconds, 1) if dispatch_seconds else 0.0},
        "lateness_seconds": {"p50": round(float(ledger["p50"] or 0), 2), "p99": round(float(ledger["p99"] or 0), 2),
                             "max": round(float(ledger["max"] or 0), 2)},
        "peak_rss_mib": {"per_worker": [round(r["peak_rss_mib"], 1) for r in senders],
                         "max_worker": round(max((r["peak_rss_mib"] for r in senders), default=0), 1),
                         "dispatcher": round(max((r["peak_rss_mib"] for r in dispatchers), default=0), 1)},
        "database": {"statements": statements, "round_trips": round_trips,
                     "statements_per_email": round(statements / sent, 4) if sent else None,
                     "transactions": commits_delta,
                     "transactions_per_email": round(commits_delta / sent, 4) if sent else None},
        "redis": {"commands": redis_delta, "commands_per_email": round(redis_delta / sent, 4) if sent else None},
        "tasks": _sum_tasks(probes),
    }
    if ceiling is not None:
        report["ceiling"] = ceiling
        report["ratio_to_ceiling"] = round(end_to_end / ceiling["rate"], 3) if ceiling["rate"] else None
    return report

def _sum_tasks(probes: dict[int, dict[str, Any]]) -> dict[str, int]:
    total: dict[str, int] = {}
    for probe in probes.values():
        for name, count in probe["tasks"].items():
            total[name] = total.get(name, 0) + count
    return total

def report_table(report: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"course bench: {report['scenario']}, {report['subscribers']:,} subscribers, "
                        f"{report['workers']} workers ({report['pool']}), {report['message_bytes']:,} B/message")
    table.add_column("measure")
    table.add_column("value", justify="right")
    if "fan_out" in report:
        fan = report["fan_out"]
        table.add_row("fan-out", f"{fan['rows']:,} rows in {fan['seconds']:.2f} s = {fan['rows_per_second']:,.0f} rows/s")
    table.add_row("seeding (not part of the pipeline)", f"{report['seed_seconds']:.1f} s")
    table.add_row("emails sent / due / accepted by smtp-sink",
                  f"{report['emails_sent']:,} / {report['emails_due']:,} / {report['sink_accepted']:,}")
    table.add_row("dispatch", f"{report['dispatch']['rows_per_second']:,.0f} rows/s of dispatcher time")
    e2e = report["end_to_end"]
    table.add_row("end to end (first due → last accepted)", f"{e2e['emails_per_second']:,.0f} emails/s over {e2e['seconds']:.1f} s")
    if "ceiling" in report:
        ceiling = report["ceiling"]
        table.add_row(f"ceiling (smtp-source, {ceiling['connections']} connections)", f"{ceiling['rate']:,.0f} msgs/s")
        table.add_row("ratio to ceiling", f"{report['ratio_to_ceiling']:.2f}")
    late = report["lateness_seconds"]
    table.add_row("lateness p50 / p99 / max", f"{late['p50']:.1f} / {late['p99']:.1f} / {late['max']:.1f} s")
    rss = report["peak_rss_mib"]
    table.add_row("peak RSS per worker / dispatcher", f"{rss['max_worker']:.0f} / {rss['dispatcher']:.0f} MiB")
    db = report["database"]
    table.add_row("database statements per email", f"{db['statements_per_email']} ({db['statements']:,} statements)")
    table.add_row("database transactions per email", f"{db['transactions_per_email']}")
    table.add_row("Redis commands per email", f"{report['redis']['commands_per_email']}")
    return table
