"""The public (subscriber-facing) pages and JSON API."""
