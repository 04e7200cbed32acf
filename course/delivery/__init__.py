"""From a claimed ledger row to bytes on the wire: dispatch, sending, composing, rendering, MIME, links, transports."""
