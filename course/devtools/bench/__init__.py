"""`course bench`: the whole sending pipeline measured on real parts. harness (processes, services
and the run's steps), config (BenchConfig, BenchError), seed (the scenario's rows), measure (the
figures: ledger, probe counters, smtp-sink's count, /proc, ceiling), report (dict and table),
command (the Typer command), probe (the Celery app the bench's workers run); audience (the
`--scenario audience` run: count_audience at 1M subscribers against a plain count(*))."""
