"""The Celery side: the app, its configuration, and the tasks (dispatcher, sender)."""
