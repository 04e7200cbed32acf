"""A real IMAP server for the bounce mailbox tests: Debian's dovecot (scripts/services.sh installs
dovecot-imapd), started as an instance of the test's own — its own config, mail directory,
passwd-file user and a self-signed certificate made here — on free ports, never the system service.
Implicit TLS on one port, STARTTLS on another; clear-text logins are refused on both before TLS."""

from __future__ import annotations

import datetime as dt
import grp
import imaplib
import os
import pwd
import shutil
import signal
import socket
import ssl
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.support.services import unavailable

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "bounces"
PASSWORD = "imap-test-password"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def self_signed_certificate(folder: Path, host: str = "localhost") -> tuple[Path, Path]:
    """A CA-less self-signed certificate for `host` (and 127.0.0.1): (certificate, key) PEM files."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, host)])
    now = dt.datetime.now(dt.timezone.utc)
    import ipaddress

    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(host), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_path.chmod(0o600)
    return cert_path, key_path


@dataclass
class DovecotServer:
    root: Path
    host: str
    tls_port: int
    starttls_port: int
    ca_file: Path
    user: str = USER
    password: str = PASSWORD
    process: subprocess.Popen[bytes] | None = None

    @property
    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def client(self) -> imaplib.IMAP4_SSL:
        """A logged-in client of the test's own (to put mail in and look at the folders)."""
        context = ssl.create_default_context(cafile=str(self.ca_file))
        connection = imaplib.IMAP4_SSL(self.host, self.tls_port, ssl_context=context, timeout=10)
        connection.login(self.user, self.password)
        return connection

    def append(self, raw: bytes, folder: str = "INBOX") -> None:
        connection = self.client()
        try:
            connection.create(f'"{folder}"')
            status, detail = connection.append(f'"{folder}"', "", imaplib.Time2Internaldate(time.time()), raw)
            assert status == "OK", detail
        finally:
            connection.logout()

    def count(self, folder: str, criteria: str = "ALL") -> int:
        connection = self.client()
        try:
            status, detail = connection.select(f'"{folder}"', readonly=True)
            if status != "OK":
                return 0
            _, found = connection.search(None, criteria)
            return len((found[0] or b"").split())
        finally:
            connection.logout()

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=5)


def start_dovecot(root: Path) -> DovecotServer:
    """Start dovecot in the foreground (-F) with a config under `root`; wait for both ports."""
    if not os.access(DOVECOT, os.X_OK):
        unavailable(f"Debian's dovecot is not installed at {DOVECOT} (scripts/services.sh installs dovecot-imapd as root)")
    root.mkdir(parents=True, exist_ok=True)
    root.chmod(0o755)
    if os.getuid() == 0:
        # Dovecot refuses to run its login and mail processes as root: the package's own users
        # for the login and internal processes, and `nobody` owns the test's mail.
        login_user, internal_user = "dovenull", "dovecot"
        mail_uid, mail_gid = pwd.getpwnam("nobody").pw_uid, pwd.getpwnam("nobody").pw_gid
    else:
        login_user = internal_user = pwd.getpwuid(os.getuid()).pw_name
        mail_uid, mail_gid = os.getuid(), os.getgid()
    internal_group = grp.getgrgid(pwd.getpwnam(internal_user).pw_gid).gr_name
    cert, key = self_signed_certificate(root)
    (root / "run").mkdir()
    (root / "mail").mkdir()
    os.chown(root / "mail", mail_uid, mail_gid)
    passwd = root / "passwd"
    passwd.write_text(f"{USER}:{{PLAIN}}{PASSWORD}:{mail_uid}:{mail_gid}::{root / 'mail' / USER}::\n")
    tls_port, starttls_port = free_port(), free_port()
    config = root / "dovecot.conf"
    config.write_text(
        f"""
base_dir = {root / 'run'}
instance_name = course-test-{tls_port}
state_dir = {root / 'state'}
log_path = {root / 'dovecot.log'}
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = yes
auth_mechanisms = plain
default_internal_user = {internal_user}
default_internal_group = {internal_group}
default_login_user = {login_user}
first_valid_uid = {mail_uid}
first_valid_gid = {mail_gid}
mail_location = maildir:~/Maildir
passdb {{
  driver = passwd-file
  args = {passwd}
}}
userdb {{
  driver = passwd-file
  args = {passwd}
}}
service imap-login {{
  inet_listener imap {{
    port = {starttls_port}
  }}
  inet_listener imaps {{
    port = {tls_port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
service stats {{
  unix_listener stats-writer {{
    mode = 0666
  }}
}}
"""
    )
    (root / "state").mkdir()
    process = subprocess.Popen([DOVECOT, "-F", "-c", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    server = DovecotServer(root, "127.0.0.1", tls_port, starttls_port, cert, process=process)
    deadline = time.monotonic() + 20
    while True:
        if process.poll() is not None:
            error = (process.stderr.read() if process.stderr else b"").decode(errors="replace")
            raise RuntimeError(f"dovecot exited ({process.returncode}): {error}\n{server.log}")
        try:
            server.client().logout()
            with socket.create_connection(("127.0.0.1", starttls_port), timeout=1):
                break
        except OSError:
            if time.monotonic() > deadline:
                server.stop()
                raise RuntimeError(f"dovecot did not answer on 127.0.0.1:{tls_port} within 20 s\n{server.log}")
            time.sleep(0.1)
    return server
