"""Admin accounts: who may use the web admin and the admin API, and how they prove it.

`credentials` holds the pure rules (roles and their order, password policy and hashing, TOTP and
recovery codes, token formats); `store` is the thin database shell (create an admin, sign in with
throttling, sessions, API tokens). Nothing here knows about HTTP: course/web/admin calls it."""
