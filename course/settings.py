"""The one settings object. Every value comes from the environment (prefix ``COURSE_``) or a default
that suits the embedded single-machine mode: SQLite under ``var/``, a local SMTP sink, and Redis only
when ``REDIS_URL`` answers."""

from __future__ import annotations

import ipaddress
import math
import re
from functools import lru_cache
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_SECRET = "dev-secret-change-me"
# The provider built from the COURSE_SMTP_* variables; the last resort of every route by default.
DEFAULT_PROVIDER = "default"
PROVIDER_NAME_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,63}$"  # fits deliveries.provider (String(64))


class ProviderSettings(BaseModel):
    """One way out for mail: an SMTP relay with its limits. `default` is built from the COURSE_SMTP_*
    variables; more are configured by name in COURSE_PROVIDERS (a JSON object of these). Which one a
    message takes is course.delivery.routing's decision; the limits are enforced for every worker
    process at once by course.delivery.gate (a shared bucket in Redis)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["smtp"] = "smtp"
    host: str
    port: int = Field(587, ge=1, le=65535)
    username: str = ""
    password: str = ""
    starttls: bool = False
    timeout: float = Field(30.0, gt=0)  # per command
    connect_timeout: float = Field(10.0, gt=0)  # connect, greeting, EHLO, STARTTLS, AUTH
    data_timeout: float = Field(600.0, gt=0)  # the reply to the end of DATA
    # Limits over every worker process and machine together (None: no limit of that kind). Per hour
    # and per day count clock hours and UTC days, as SES and most relays count their quotas.
    max_per_second: float | None = Field(None, gt=0)
    max_per_hour: int | None = Field(None, gt=0)
    max_per_day: int | None = Field(None, gt=0)
    max_connections: int | None = Field(None, gt=0)  # SMTP connections open at once, fleet-wide
    # Mail whose From address is at one of these domains (or a subdomain) goes through this provider
    # first, unless its campaign or course names a provider of its own.
    from_domains: tuple[str, ...] = ()

    @field_validator("from_domains")
    @classmethod
    def _domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(domain.strip().lower().rstrip(".") for domain in domains if domain.strip())

    @property
    def limited(self) -> bool:
        return self.metered or self.max_connections is not None

    @property
    def metered(self) -> bool:
        """Whether each message must ask the gate for a slot (a rate or a quota to keep)."""
        return self.max_per_second is not None or self.max_per_hour is not None or self.max_per_day is not None


class DkimKey(BaseModel):
    """How mail from one From domain is signed: the DNS selector (`<selector>._domainkey.<domain>`
    holds the public key) and the file of the PEM private key. Rotating a key is a new selector
    with a new file; the old DNS record stays until mail signed with it has been delivered."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selector: str = Field(pattern=r"^[A-Za-z0-9](?:[A-Za-z0-9._-]{0,62})$")
    private_key_file: Path


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="COURSE_", extra="ignore")

    env: Literal["development", "production"] = "development"
    var_dir: Path = PROJECT_ROOT / "var"
    content_dir: Path = PROJECT_ROOT / "content"
    templates_dir: Path = PROJECT_ROOT / "templates"
    # Re-read a template when its file changed (for someone editing them); off, each is read once.
    template_reload: bool = False

    database_url: str = ""  # empty: SQLite at var/course.db
    # REDIS_URL is the conventional name; COURSE_REDIS_URL works too.
    redis_url: str = Field("", validation_alias=AliasChoices("COURSE_REDIS_URL", "REDIS_URL"))
    broker_url: str = ""  # empty: Redis when redis_url answers, else SQLite-backed kombu transport

    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str = ""
    smtp_password: str = ""
    smtp_starttls: bool = False
    # Time-outs per SMTP phase: connecting (and the greeting/EHLO), each command, and the reply to the
    # end of DATA, which a slow but healthy server may take long to give (RFC 5321 suggests 10 min).
    # Each is cut shorter when the task's lease would otherwise run out mid-transaction.
    smtp_connect_timeout: float = 10.0
    smtp_timeout: float = 30.0  # per command
    smtp_data_timeout: float = 600.0
    # The default provider's limits, fleet-wide (see ProviderSettings); unset: none.
    smtp_max_per_second: float | None = Field(None, gt=0)
    smtp_max_per_hour: int | None = Field(None, gt=0)
    smtp_max_per_day: int | None = Field(None, gt=0)
    smtp_max_connections: int | None = Field(None, gt=0)
    smtp_from_domains: tuple[str, ...] = ()
    # Further providers by name, as JSON: {"bulk-relay": {"host": "smtp.example.net", "port": 587,
    # "username": "...", "password": "...", "starttls": true, "max_per_second": 50}}. The name
    # "default" is reserved for the COURSE_SMTP_* provider above.
    providers: dict[str, ProviderSettings] = Field(default_factory=dict)
    # The providers a message falls back to, in order, after its campaign's or course's own and the
    # ones routing its From domain (course/delivery/routing.py). JSON list of names.
    provider_fallback: tuple[str, ...] = (DEFAULT_PROVIDER,)
    # A provider that fails (refused connection, 421/454 replies, time-outs) is paused for
    # provider_pause_seconds, doubled at each further failure up to provider_pause_max_seconds; its
    # rows wait in the database (or take the next provider of their route). Replies like 421 and
    # time-outs pause it after provider_failures_to_pause of them in a row; a refused connection at once.
    provider_pause_seconds: float = Field(30.0, gt=0)
    provider_pause_max_seconds: float = Field(1800.0, gt=0)
    provider_failures_to_pause: int = Field(3, ge=1)
    # A campaign is paused (a system pause, with the reason shown in the admin) once more than this
    # share of its attempted rows bounced or failed, counted after campaign_error_min_rows of them
    # (as listmonk's max-errors). 1.0 turns it off.
    campaign_max_error_rate: float = Field(0.2, gt=0, le=1.0)
    campaign_error_min_rows: int = Field(50, ge=1)
    mail_dir: Path = PROJECT_ROOT / "var" / "mail"
    # VERP (course/delivery/envelope.py): with a domain here, each message's envelope sender is
    # bounce+<delivery id>-<signature>@<bounce_domain>, so a bounce names its delivery exactly.
    # Empty: the envelope sender is the From address.
    bounce_domain: str = ""
    # Soft bounces (4.x.x, a full mailbox, a policy refusal) suppress an address once it has this
    # many within bounce_soft_window_days (course/bounces/record.py); a hard bounce at once.
    bounce_soft_threshold: int = Field(3, ge=1)
    bounce_soft_window_days: int = Field(30, ge=1)
    # The bounce mailbox, read over IMAP with TLS (course/bounces/imap.py) by `course bounces poll`
    # and by beat every bounce_poll_interval_seconds. Empty host: no mailbox (webhooks and
    # `--folder` still work). tls "tls" is implicit TLS (port 993), "starttls" upgrades port 143;
    # there is no clear-text mode. A processed message is moved to bounce_imap_done_folder (created
    # when missing); empty, it is deleted instead.
    bounce_imap_host: str = ""
    bounce_imap_port: int = Field(993, ge=1, le=65535)
    bounce_imap_user: str = ""
    bounce_imap_password: str = ""
    bounce_imap_folder: str = "INBOX"
    bounce_imap_done_folder: str = "Processed"
    bounce_imap_tls: Literal["tls", "starttls"] = "tls"
    bounce_imap_ca_file: str = ""  # a PEM file of CAs to trust instead of the system's (a private CA)
    bounce_imap_timeout_seconds: float = Field(30.0, gt=0)
    bounce_imap_batch: int = Field(500, ge=1)  # messages per poll at most; the rest wait for the next
    bounce_poll_interval_seconds: float = Field(300.0, gt=0)
    # Provider webhooks at /webhooks/<provider> (course/bounces/webhooks); each is on when its
    # secret is set. SES: the SNS topic ARNs allowed, comma-separated (the signature is AWS's).
    # Postmark: the Basic-auth password in its webhook URL. SendGrid: the signed event webhook's
    # public key (base64 DER as SendGrid shows it, or PEM). Mailgun: the HTTP webhook signing key.
    # Generic: the HMAC secret of X-Course-Signature (README: "Generic webhook").
    webhook_ses_topic_arns: str = ""
    webhook_postmark_secret: str = ""
    webhook_sendgrid_public_key: str = ""
    webhook_mailgun_signing_key: str = ""
    webhook_generic_secret: str = ""
    webhook_max_age_seconds: int = Field(900, ge=30)  # signed timestamps older (or newer) are refused
    webhook_max_bytes: int = Field(1024 * 1024, ge=1024)  # a SendGrid batch can be large; SNS is at most 256 KB
    webhook_limit_per_minute: int = Field(600, ge=1)  # requests per IP address
    webhook_apply_interval_seconds: float = Field(2.0, gt=0)  # how often beat applies stored events
    # DKIM (course/delivery/dkim.py), per From domain, as JSON:
    # {"example.org": {"selector": "2026a", "private_key_file": "/etc/course/dkim/2026a.pem"}}.
    # A domain not listed is sent unsigned.
    dkim: dict[str, DkimKey] = Field(default_factory=dict)

    base_url: str = "http://127.0.0.1:8000"
    secret_key: str = DEFAULT_SECRET
    unsubscribe_mailto: str = "unsubscribe@localhost"
    list_id_domain: str = "course.localhost"

    # Dispatcher and sender limits: one place, with defaults.
    dispatch_interval_seconds: float = 5.0
    # Queued signups are handled, and their confirmations handed to the priority queue, this often
    # between two dispatch runs (a reader waits for that mail).
    signup_interval_seconds: float = 1.0
    # How often beat polls the feeds of courses made from a blog's feed (a conditional GET each).
    feed_poll_interval_seconds: float = 3600.0
    # A bulk action (tag, enrol, unsubscribe) over at most this many subscribers runs in the request;
    # a larger one becomes a bulk job the worker applies in batches, polled this often.
    bulk_inline_limit: int = 10_000
    bulk_batch_size: int = 5000
    bulk_job_interval_seconds: float = 2.0
    # Feeds given in the admin are fetched from public addresses only (no door into this network).
    feed_allow_private_hosts: bool = False
    dispatch_batch_size: int = 1000
    dispatch_max_batches: int = 50  # per dispatcher run, so one run cannot starve the beat
    # Rows handed to workers and not yet sent, at most: keep it well under what the fleet sends in
    # lease_seconds, or queued rows would outlive their lease.
    dispatch_max_in_flight: int = 50_000
    send_chunk_size: int = 500  # deliveries per send task: 5 statements and 2 Redis commands a task (docs/performance.md)
    # Urgent rows (confirmations) per send task: small, so a burst of signups is spread over every
    # send worker at once and each row's sent_at is written soon after its own message, not after
    # 500 others (course bench --scenario mixed).
    urgent_chunk_size: int = 50
    lease_seconds: int = 300
    # A row whose worker died on this many attempts in a row is given up (a message that crashes its
    # worker must not crash-loop the fleet). Transient SMTP failures are bounded by time instead:
    max_attempts: int = 8
    # A row that keeps failing transiently (4xx, time-outs, unknown outcomes, relay unreachable) is
    # retried with back-off for this long after its first attempt, like an MTA's queue lifetime, then
    # marked failed; `course retry-failed` requeues failed rows on purpose.
    retry_window_seconds: float = 3 * 86400.0
    # A send task records outcomes as they happen, a group at a time: when it holds this many, or is
    # this old, whichever comes first (course/delivery/outcomes.py).
    outcome_group_size: int = 50
    outcome_group_seconds: float = 0.25
    # A group whose every sent message is in the send journal may grow to a send task's chunk, or
    # this old: a kill re-sends only what the journal lacks, so these groups only bound how stale
    # the ledger's view of a running task is.
    outcome_journaled_group_seconds: float = 2.0
    # Each message the relay accepts is noted at once in Redis for this long, so a task that takes
    # over rows after a lost worker settles them as sent instead of sending them again
    # (course/delivery/journal.py). 0 turns the journal off.
    send_journal_ttl_seconds: int = 2 * 86400
    # The journal is trusted (outcome groups grow past outcome_group_size) only when it survives a
    # Redis crash: AOF with appendfsync everysec/always, or this many replicas acknowledging the
    # notes with WAIT (0: AOF only).
    send_journal_wait_replicas: int = 0
    # Where a send task abandoned with outcomes it could not write (the database away past its lease)
    # keeps the ids the relay accepted, for a take-over on this host (var/spool by default).
    send_spool_dir: Path | None = None
    retry_base_seconds: float = 60.0
    retry_max_seconds: float = 6 * 3600.0

    # Signs of life (course/ops/health.py): worker and beat write a heartbeat this often; one older than
    # heartbeat_stale_seconds (or three of its periods) is an alarm in /readyz, `course status` and
    # `course health`.
    heartbeat_interval_seconds: float = 10.0
    heartbeat_stale_seconds: float = 60.0
    # Worker metrics in prometheus_client's multiprocess mode: each Celery process writes its counters
    # here and `course metrics` serves them merged. Empty: each process keeps its own (no export).
    metrics_dir: Path | None = None

    # Demo clock: the course calendar runs `clock_speed` times faster than the wall clock,
    # counted from `clock_origin` (a Unix time). speed 1 is the real clock.
    clock_speed: float = 1.0
    clock_origin: float = 0.0

    # Subscriber web (course/web, course/subscriptions.py).
    # The language of pages about no one course (the course list, an error, preferences spanning
    # courses in several languages): "en", "de" or "fr". A page about a course speaks the course's.
    site_language: str = "en"
    confirm_link_max_age_days: int = 7
    # Preference links stop working this long after the mail that carried them; every mail signs
    # a fresh one, so a reader who still gets mail always holds a working link.
    preference_link_max_age_days: int = 90
    # The link that confirms a subscriber's own erasure (asked for on the preferences page).
    erase_link_max_age_hours: int = 24
    unconfirmed_retention_days: int = 30  # pending subscribers older than this are purged
    signup_limit_per_ip: int = 20  # signups per IP address per rate_limit_window_seconds
    signup_limit_per_address: int = 3  # mails per address (lower-case, +tag removed) per window
    # Confirmation mails the whole site sends per hour, at most: what a flood of signups from many
    # addresses and networks can cost the sending reputation. Past it, signups get no mail (logged).
    confirmation_mails_per_hour: int = 500
    rate_limit_window_seconds: int = 3600
    # Proof of work on the signup form for sites under attack (course/web/proof_of_work.py): the
    # browser finds a number up to this by brute force (~N/2 SHA-256s: 100000 is about a second).
    # 0: off.
    signup_proof_of_work: int = 0
    max_request_bytes: int = 64 * 1024  # larger bodies get 413 before they are parsed
    # The same for the admin pages and /api/admin: a campaign body may be 50,000 characters, which
    # a form or JSON body carries in up to 12 bytes each (percent- or \u-escaped, outside the BMP).
    max_admin_request_bytes: int = 1024 * 1024
    # A subscriber CSV uploaded to the admin or the API: streamed to disk, refused above this (a
    # million rows of a typical export are about 60 MB).
    import_max_bytes: int = 256 * 1024 * 1024
    embed_frame_ancestors: str = "*"  # CSP frame-ancestors of the embeddable form, e.g. "https://blog.example.com"
    # Origins whose pages may call the JSON API from a browser, e.g. "https://blog.example.com"
    # (several: separated by commas or spaces). Empty: no cross-origin browser calls; server-to-server
    # calls need no CORS at all.
    api_cors_origins: str = ""
    # Proxies whose X-Forwarded-For / X-Forwarded-Proto are believed: addresses or networks
    # ("10.0.0.5", "10.0.0.0/8", several separated by commas or spaces). Empty: forwarded headers
    # are ignored and the client is whoever opened the connection.
    trusted_proxies: str = ""
    # A client must send a request's head within this many seconds of its first byte (or of the
    # connection opening), and its body within body_timeout_seconds after the head: slow clients
    # cannot hold connections open.
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0

    # Web admin (course/web/admin, course/accounts).
    admin_session_idle_minutes: int = 60  # a session unused this long ends
    admin_session_max_hours: int = 12  # and every session ends this long after sign-in
    admin_login_limit_per_account: int = 5  # failed sign-ins per account per admin_login_window_seconds
    admin_login_limit_per_ip: int = 20  # failed sign-ins per IP address per window
    admin_login_window_seconds: int = 900
    admin_invitation_hours: int = 72  # an invitation's sign-in link works once, for this long (wall clock)
    # Who campaigns may come from: "Name <address>" entries separated by commas or new lines.
    campaign_senders: str = "Newsletter <newsletter@example.org>"

    # How often a web process asks whether `course import` changed the catalogue it caches (course
    # pages, the list, the embed page, course ids for signups): a page is at most this old.
    catalogue_recheck_seconds: float = Field(1.0, ge=0)
    # Requests a web process runs at once in its thread pool (each holds one of the process's 10
    # pooled database connections); more wait in the event loop, in arrival order. Past about two
    # per core the threads mostly wait for each other's GIL: on the 2-core bench machine 4 against
    # 8 took one-click unsubscribe from 704 to 1,103 requests/s and its p99 from 80 to 34 ms
    # (docs/performance.md). A database far away (milliseconds a round trip) may want more.
    web_threads: int = Field(4, ge=1)

    @field_validator("site_language")
    @classmethod
    def _site_language(cls, language: str) -> str:
        from course.i18n import check_language  # course.i18n needs no settings; imported late all the same

        return check_language(language.strip().lower())

    @field_validator("providers")
    @classmethod
    def _provider_names(cls, providers: dict[str, ProviderSettings]) -> dict[str, ProviderSettings]:
        for name in providers:
            if name == DEFAULT_PROVIDER:
                raise ValueError(
                    f"COURSE_PROVIDERS: the provider name {DEFAULT_PROVIDER!r} is reserved, "
                    "configure it with the COURSE_SMTP_* variables"
                )
            if not re.match(PROVIDER_NAME_PATTERN, name):
                raise ValueError(
                    f"COURSE_PROVIDERS: provider name {name!r} must be 1-64 lower-case letters, digits, '-' or '_'"
                )
        return providers

    @field_validator("smtp_from_domains")
    @classmethod
    def _smtp_domains(cls, domains: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(domain.strip().lower().rstrip(".") for domain in domains if domain.strip())

    @field_validator("bounce_domain")
    @classmethod
    def _bounce_domain(cls, domain: str) -> str:
        domain = domain.strip().lower()
        if domain and not re.fullmatch(r"[a-z0-9](?:[a-z0-9-]*[a-z0-9])?(?:\.[a-z0-9](?:[a-z0-9-]*[a-z0-9])?)+", domain):
            raise ValueError(f"COURSE_BOUNCE_DOMAIN must be a domain name such as bounces.example.org (it is {domain!r})")
        return domain

    @field_validator("dkim")
    @classmethod
    def _dkim_domains(cls, keys: dict[str, DkimKey]) -> dict[str, DkimKey]:
        return {domain.strip().lower(): key for domain, key in keys.items()}

    @property
    def webhook_ses_topic_arn_list(self) -> list[str]:
        return [arn.strip() for arn in self.webhook_ses_topic_arns.split(",") if arn.strip()]

    @property
    def default_provider(self) -> ProviderSettings:
        return ProviderSettings(
            host=self.smtp_host,
            port=self.smtp_port,
            username=self.smtp_username,
            password=self.smtp_password,
            starttls=self.smtp_starttls,
            timeout=self.smtp_timeout,
            connect_timeout=self.smtp_connect_timeout,
            data_timeout=self.smtp_data_timeout,
            max_per_second=self.smtp_max_per_second,
            max_per_hour=self.smtp_max_per_hour,
            max_per_day=self.smtp_max_per_day,
            max_connections=self.smtp_max_connections,
            from_domains=self.smtp_from_domains,
        )

    @property
    def provider_settings(self) -> dict[str, ProviderSettings]:
        """Every configured provider by name, `default` first."""
        return {DEFAULT_PROVIDER: self.default_provider, **self.providers}

    @property
    def api_cors_origin_list(self) -> list[str]:
        return [origin.rstrip("/") for origin in self.api_cors_origins.replace(",", " ").split()]

    @property
    def trusted_proxy_list(self) -> list[str]:
        return self.trusted_proxies.replace(",", " ").split()

    @property
    def sqlalchemy_url(self) -> str:
        return self.database_url or f"sqlite:///{self.var_dir / 'course.db'}"

    @property
    def is_sqlite(self) -> bool:
        return self.sqlalchemy_url.startswith("sqlite")


@lru_cache
def get_settings() -> Settings:
    return Settings()


# --- what production refuses -------------------------------------------------------------------

MIN_SECRET_BYTES = 32


class InsecureConfiguration(RuntimeError):
    """Production settings that would make the service unsafe; one line per problem."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("refusing to start in production:\n" + "\n".join(f"  {line}" for line in problems))
        self.problems = problems


def secret_entropy_bytes(secret: str) -> float:
    """An upper estimate of a secret's entropy: its length times the bits per character of the
    smallest alphabet it is drawn from (hex digits, letters, digits, punctuation). Generous for
    random strings, which are what a secret should be; a repeated character or a short word is
    caught by the distinct-character floor."""
    if len(set(secret)) < 8:
        return 0.0
    if all(char in "0123456789abcdef" for char in secret) or all(char in "0123456789ABCDEF" for char in secret):
        alphabet = 16
    else:
        alphabet = 0
        alphabet += 10 if any(char.isdigit() for char in secret) else 0
        alphabet += 26 if any(char.islower() for char in secret) else 0
        alphabet += 26 if any(char.isupper() for char in secret) else 0
        alphabet += 33 if any(not char.isalnum() for char in secret) else 0
    return len(secret) * math.log2(max(alphabet, 2)) / 8


def _is_local_host(host: str) -> bool:
    """localhost and its subdomains, .localdomain names, names without a dot, and loopback or
    unspecified addresses: nothing a mail provider or a reader elsewhere can reach."""
    host = host.strip().strip("[]").rstrip(".").lower()
    if not host:
        return True
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return "." not in host or host.endswith((".localhost", ".localdomain"))
    return address.is_loopback or address.is_unspecified or address.is_link_local


def production_problems(settings: Settings) -> list[str]:
    """Everything about these settings that production refuses, one line each naming the variable
    to change. Pure: `course check-config` prints the list, every process start refuses on it."""
    problems: list[str] = []
    secret = settings.secret_key
    if secret == DEFAULT_SECRET:
        problems.append(
            "COURSE_SECRET_KEY is unset (the development default): every signed link would be forgeable; "
            "make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    elif secret_entropy_bytes(secret) < MIN_SECRET_BYTES:
        problems.append(
            f"COURSE_SECRET_KEY is too weak (about {secret_entropy_bytes(secret):.0f} of the {MIN_SECRET_BYTES} bytes "
            "of entropy needed): make one with `python3 -c 'import secrets; print(secrets.token_urlsafe(32))'`"
        )
    base = urlsplit(settings.base_url)
    if base.scheme != "https" or not base.hostname:
        problems.append(
            f"COURSE_BASE_URL must be an https:// address readers can reach (it is {settings.base_url!r}): "
            "links and List-Unsubscribe would travel in clear"
        )
    elif _is_local_host(base.hostname):
        problems.append(f"COURSE_BASE_URL points at a local host ({base.hostname}): links in mail would not work")
    _, at, mailto_domain = settings.unsubscribe_mailto.rpartition("@")
    if not at or _is_local_host(mailto_domain):
        problems.append(
            f"COURSE_UNSUBSCRIBE_MAILTO must be an address at your own domain (it is {settings.unsubscribe_mailto!r}): "
            "mail providers send unsubscribe requests there"
        )
    if _is_local_host(settings.list_id_domain):
        problems.append(
            f"COURSE_LIST_ID_DOMAIN must be your own domain (it is {settings.list_id_domain!r}): "
            "it names every List-Id and Message-ID"
        )
    for name, provider in settings.provider_settings.items():
        if provider.limited and not settings.redis_url:
            problems.append(f"provider {name!r} has limits, which hold across processes only through Redis: set REDIS_URL")
    problems.extend(configuration_errors(settings))
    return problems


def configuration_errors(settings: Settings) -> list[str]:
    """Settings no environment can run with (checked in development too)."""
    errors: list[str] = []
    for entry in settings.trusted_proxy_list:
        try:
            ipaddress.ip_network(entry, strict=False)
        except ValueError:
            errors.append(f"COURSE_TRUSTED_PROXIES lists {entry!r}, which is not an IP address or network (e.g. 10.0.0.0/8)")
    for name in settings.provider_fallback:
        if name not in settings.provider_settings:
            errors.append(
                f"COURSE_PROVIDER_FALLBACK names {name!r}, which is not a configured provider "
                f"(configured: {', '.join(settings.provider_settings)})"
            )
    if not settings.provider_fallback:
        errors.append("COURSE_PROVIDER_FALLBACK is empty: mail without a provider of its own could go nowhere")
    for name in ("header_timeout_seconds", "body_timeout_seconds", "preference_link_max_age_days", "erase_link_max_age_hours"):
        if getattr(settings, name) <= 0:
            errors.append(f"COURSE_{name.upper()} must be positive")
    return errors


def refuse_unsafe(settings: Settings) -> None:
    """Raise InsecureConfiguration when these settings must not run: in production, anything
    production_problems finds; in any environment, a setting that cannot work at all. The web app,
    the worker and beat all call this before they start."""
    problems = production_problems(settings) if settings.env == "production" else configuration_errors(settings)
    if problems:
        raise InsecureConfiguration(problems)
