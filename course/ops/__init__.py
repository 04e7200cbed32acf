"""Watching the ledger, read-only: the audit of its invariants (audit), the heartbeats and
readiness checks (health) and the Prometheus counters (metrics). Used by delivery, web, worker
and cli; imports nothing above the ledger."""
