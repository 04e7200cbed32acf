"""The public (subscriber-facing) pages and JSON API, one router per module: courses (list, course
page, embeddable form, signup), confirm, preferences, unsubscribe (page and RFC 8058 one-click),
view (view in browser), api (JSON signup). Handlers parse the request, call course.audience (or the
content catalogue) in one transaction and render; forms and signups hold what they share."""
