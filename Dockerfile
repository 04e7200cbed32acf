# One image for every app service in docker-compose.yml (migrate, web, worker, beat); the compose
# file picks the `course` subcommand.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

WORKDIR /app

# The pinned runtime dependencies first (requirements.lock: the pins of requirements-dev.lock without
# the test tools), in their own layer: a code change does not reinstall them.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# README.m[d] and alembic.in[i] are globs so the build does not fail while either file is absent
# (pyproject.toml always matches, which is what COPY needs).
COPY pyproject.toml README.m[d] alembic.in[i] ./
COPY course/ course/
COPY worker/ worker/
COPY templates/ templates/
COPY content/ content/
RUN pip install --no-deps . && rm -rf build ./*.egg-info

# The code runs from /app, not from the copy pip put in site-packages: settings find content/,
# templates/, var/ and alembic.ini relative to the `course` package, and they live here.
ENV PYTHONPATH=/app

# Not root. The code stays root-owned (read-only to the app); only var/ is writable.
RUN useradd --system --user-group --uid 10001 --home-dir /app --no-create-home course \
    && mkdir -p /app/var \
    && chown course:course /app/var
USER course

EXPOSE 8000
CMD ["course", "web", "--host", "0.0.0.0", "--port", "8000"]
