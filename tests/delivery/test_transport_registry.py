"""Providers and their transports: `default` comes from the COURSE_SMTP_* variables as before, more
providers are named in COURSE_PROVIDERS, each process keeps one transport per provider, and a bad
provider setting is refused with a message naming it. A real SMTP server checks that the registry's
transport is the one that sends."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from pydantic import ValidationError

from course.delivery.transports.base import (
    DEFAULT_PROVIDER,
    ConnectionFailed,
    PermanentSendError,
    TransientSendError,
    Transport,
    TransportError,
)
from course.delivery.transports.registry import TransportRegistry, UnknownProvider, shared_transport
from course.delivery.transports.smtp import SMTPConfig, SMTPTransport
from course.settings import Settings
from tests.support.smtp_server import RecordingSMTPServer

RELAY = '{"relay-b": {"host": "smtp.example.net", "port": 2525, "starttls": true, "max_per_second": 50}}'


def test_the_default_provider_comes_from_the_smtp_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_SMTP_HOST", "mail.example.org")
    monkeypatch.setenv("COURSE_SMTP_PORT", "2526")
    monkeypatch.setenv("COURSE_SMTP_USERNAME", "ann")
    monkeypatch.setenv("COURSE_SMTP_STARTTLS", "true")
    settings = Settings()
    assert list(settings.provider_settings) == [DEFAULT_PROVIDER]
    assert SMTPConfig.from_settings(settings) == SMTPConfig("mail.example.org", 2526, "ann", "", True, 30.0)
    assert SMTPConfig.from_provider(settings.provider_settings[DEFAULT_PROVIDER]) == SMTPConfig.from_settings(settings)


def test_further_providers_are_named_in_course_providers(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COURSE_PROVIDERS", RELAY)
    settings = Settings()
    assert list(settings.provider_settings) == [DEFAULT_PROVIDER, "relay-b"]
    relay = settings.provider_settings["relay-b"]
    assert (relay.host, relay.port, relay.starttls, relay.max_per_second, relay.timeout) == ("smtp.example.net", 2525, True, 50, 30.0)
    registry = TransportRegistry.from_settings(settings)
    assert registry.names == [DEFAULT_PROVIDER, "relay-b"]
    transport = registry.get("relay-b")
    assert isinstance(transport, SMTPTransport) and transport.config.port == 2525
    assert registry.get("relay-b") is transport and registry.get() is not transport
    with pytest.raises(UnknownProvider, match="unknown mail provider 'ses': configured are default, relay-b"):
        registry.get("ses")
    registry.close()


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ('{"default": {"host": "x"}}', "the provider name 'default' is reserved, configure it with the COURSE_SMTP_"),
        ('{"Relay B": {"host": "x"}}', "provider name 'Relay B' must be 1-64 lower-case letters"),
        ('{"relay": {"port": 25}}', "host"),
        ('{"relay": {"host": "x", "max_per_second": 0}}', "max_per_second"),
        ('{"relay": {"host": "x", "kind": "carrier-pigeon"}}', "kind"),
        ('{"relay": {"host": "x", "hots": "y"}}', "hots"),
    ],
)
def test_a_bad_provider_setting_is_refused_by_name(monkeypatch: pytest.MonkeyPatch, value: str, message: str) -> None:
    monkeypatch.setenv("COURSE_PROVIDERS", value)
    with pytest.raises(ValidationError, match=message):
        Settings()


def test_the_error_hierarchy_and_protocol() -> None:
    for error in (TransientSendError, PermanentSendError, ConnectionFailed):
        assert issubclass(error, TransportError)
    assert issubclass(ConnectionFailed, TransientSendError)  # a dead server: the whole batch waits
    assert TransientSendError("451 later", code=451).code == 451
    assert isinstance(SMTPTransport(SMTPConfig("127.0.0.1", 25)), Transport)


def test_each_process_and_thread_keeps_one_transport_per_provider(tmp_path: Path) -> None:
    with RecordingSMTPServer() as server:
        settings = Settings(smtp_host=server.host, smtp_port=server.port, var_dir=tmp_path)
        transport = shared_transport(settings)
        assert shared_transport(settings, DEFAULT_PROVIDER) is transport
        transport.send("a@example.org", "b@example.org", b"Subject: hi\r\n\r\nhello\r\n")
        assert [mail.envelope_to for mail in server.received] == [["b@example.org"]]
        other: list[Transport] = []
        thread = threading.Thread(target=lambda: other.append(shared_transport(settings)))
        thread.start()
        thread.join(10)
        assert other and other[0] is not transport  # another thread never shares this socket
        moved = settings.model_copy(update={"smtp_port": server.port + 1})
        assert shared_transport(moved) is not transport  # changed settings, new registry
        transport.close()
