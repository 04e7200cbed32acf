"""The subscriber web: course pages with the signup form, confirmation, preferences, one-click
unsubscribe and "view in browser", plus a JSON signup API. `course web` serves create_app()."""
