"""Email courses and newsletters: articles become drip lessons sent from a delivery ledger."""
