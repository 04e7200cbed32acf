"""Newsletters: schedule a campaign for a segment, count its audience, fan it out, follow its progress."""
