"""Bounces and complaints that come back after a message was accepted (listmonk's internal/bounce
shape): a mailbox to read them from (mailbox.py: a folder of .eml files; the Mailbox protocol for
others), what each says (parse.py: DSN, ARF, auto-replies; pure), one options object and one
recording function (record.py), and the loop that drains a mailbox into it (poll.py)."""
