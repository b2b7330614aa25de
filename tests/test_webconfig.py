"""`--web.config.file`: TLS, mutual TLS and basic auth on real loopback connections, with certificates made here.

Certificates come from PyPI `cryptography` (a test dependency): a CA, a server certificate for 127.0.0.1
and a client certificate, all generated per test.
"""

from __future__ import annotations

import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import bcrypt
import pytest
import requests
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from exporter import cli, webconfig
from exporter.server import serve
from exporter.settings import ConfigError
from exporter.webconfig import WebConfigHolder, load_web_config
from tests.helpers import make_app, make_settings, parse, value
from tests.test_informatica import target

pytestmark = pytest.mark.timeout(60)
USER, PASSWORD = "prometheus", "scrape-me-please"


class CA:
    """A throw-away certificate authority writing PEM files into a directory."""

    def __init__(self, directory: Path, name: str = "test-ca") -> None:
        self.directory = directory
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.cert = (
            self._builder(subject, self.key.public_key())
            .issuer_name(subject)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    key_cert_sign=True,
                    crl_sign=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        self.ca_file = self._write(f"{name}.crt", self.cert.public_bytes(serialization.Encoding.PEM))

    @staticmethod
    def _builder(subject: x509.Name, public_key: Any) -> x509.CertificateBuilder:
        now = datetime.datetime.now(datetime.UTC)
        return (
            x509.CertificateBuilder()
            .subject_name(subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + datetime.timedelta(days=1))
        )

    def _write(self, name: str, data: bytes) -> Path:
        path = self.directory / name
        path.write_bytes(data)
        return path

    def issue(self, name: str, *, client: bool = False) -> tuple[Path, Path]:
        """(cert_file, key_file) for a server on 127.0.0.1/localhost, or a client named `name`."""
        key = ec.generate_private_key(ec.SECP256R1())
        usage = ExtendedKeyUsageOID.CLIENT_AUTH if client else ExtendedKeyUsageOID.SERVER_AUTH
        sans: list[x509.GeneralName] = [x509.DNSName(name)]
        if not client:
            sans += [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
        cert = (
            self._builder(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)]), key.public_key())
            .issuer_name(self.cert.subject)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.SubjectAlternativeName(sans), critical=False)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        return (
            self._write(f"{name}.crt", cert.public_bytes(serialization.Encoding.PEM)),
            self._write(f"{name}.key", key_pem),
        )


def bcrypt_hash(password: str, cost: int = 4) -> str:
    return bcrypt.hashpw(password.encode(), bcrypt.gensalt(cost)).decode()


class Served:
    """The exporter's WSGI app behind the real server on 127.0.0.1, with a web configuration."""

    def __init__(self, app: Any, holder: WebConfigHolder) -> None:
        self.server = serve(app, "127.0.0.1:0", holder)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def url(self, path: str, scheme: str = "https") -> str:
        return f"{scheme}://127.0.0.1:{self.port}{path}"

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def ca(tmp_path: Path) -> CA:
    return CA(tmp_path)


@pytest.fixture
def hanging_upstream() -> Iterator[str]:
    """A loopback listener that accepts connections and never answers."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(64)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(listener.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    listener.close()


def start(tmp_path: Path, document: dict[str, Any], login_url: str = "http://127.0.0.1:9") -> Served:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump(document))
    app = make_app(make_settings([target(login_url=login_url)], scrape_budget_seconds=3))
    return Served(app, WebConfigHolder(load_web_config(path)))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[list[Served]]:
    running: list[Served] = []
    yield running
    for item in running:
        item.stop()


@pytest.fixture(autouse=True)
def _password(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("INGESTION_EXPORTER_INFA_PASSWORD", "upstream-password")


def test_basic_auth_over_tls_and_open_probes_while_every_upstream_hangs(
    tmp_path: Path, ca: CA, served: list[Served], hanging_upstream: str
) -> None:
    cert, key = ca.issue("exporter")
    server = start(
        tmp_path,
        {
            "tls_server_config": {"cert_file": str(cert), "key_file": str(key)},
            "basic_auth_users": {USER: bcrypt_hash(PASSWORD)},
        },
        login_url=hanging_upstream,
    )
    served.append(server)
    anonymous = requests.get(server.url("/metrics"), verify=ca.ca_file, timeout=5)
    assert anonymous.status_code == 401
    assert anonymous.headers["WWW-Authenticate"].startswith("Basic realm=")
    wrong = requests.get(server.url("/metrics"), verify=ca.ca_file, auth=(USER, "not-it"), timeout=5)
    assert wrong.status_code == 401 and "WWW-Authenticate" in wrong.headers
    assert (
        requests.get(server.url("/metrics"), verify=ca.ca_file, auth=("mallory", PASSWORD), timeout=5).status_code
        == 401
    )
    for path in ("/", "/probe?target=infa", "/-/reload"):
        assert requests.get(server.url(path), verify=ca.ca_file, timeout=5).status_code == 401, path

    # A scrape waits on the hung upstream for its whole budget; the probes answer at once, without credentials.
    scrape: dict[str, requests.Response] = {}
    scraping = threading.Thread(
        target=lambda: scrape.setdefault(
            "r", requests.get(server.url("/metrics"), verify=ca.ca_file, auth=(USER, PASSWORD), timeout=10)
        )
    )
    scraping.start()
    time.sleep(0.3)
    for path in ("/healthz", "/readyz"):
        started = time.monotonic()
        probe = requests.get(server.url(path), verify=ca.ca_file, timeout=2)
        assert probe.status_code == 200 and time.monotonic() - started < 0.5, path
    assert scraping.is_alive(), "the scrape should still be waiting on the hung upstream"
    scraping.join()
    assert scrape["r"].status_code == 200
    assert value(parse(scrape["r"].text), "ingestion_scrape_success", target="infa") == 0


def test_plain_http_is_refused_when_tls_is_on(tmp_path: Path, ca: CA, served: list[Served]) -> None:
    cert, key = ca.issue("exporter")
    server = start(tmp_path, {"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
    served.append(server)
    for path in ("/metrics", "/healthz"):
        plain = requests.get(server.url(path, scheme="http"), timeout=5)
        assert plain.status_code == 400, path
        assert "HTTPS server" in plain.text and "ingestion_" not in plain.text
    assert requests.get(server.url("/healthz"), verify=ca.ca_file, timeout=5).text == "ok\n"
    with pytest.raises(requests.exceptions.SSLError):  # verification is on in the client: an unknown CA fails
        requests.get(server.url("/healthz"), timeout=5)


def test_mutual_tls_needs_a_client_certificate_from_the_client_ca(tmp_path: Path, ca: CA, served: list[Served]) -> None:
    cert, key = ca.issue("exporter")
    client = ca.issue("prometheus", client=True)
    (tmp_path / "other").mkdir()
    stranger = CA(tmp_path / "other", "other-ca").issue("intruder", client=True)
    server = start(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": str(cert),
                "key_file": str(key),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(ca.ca_file),
            }
        },
    )
    served.append(server)
    url = server.url("/healthz")
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=ca.ca_file, timeout=5)
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=ca.ca_file, cert=(str(stranger[0]), str(stranger[1])), timeout=5)
    ok = requests.get(url, verify=ca.ca_file, cert=(str(client[0]), str(client[1])), timeout=5)
    assert ok.status_code == 200


def test_client_allowed_sans_limits_which_verified_clients_get_in(tmp_path: Path, ca: CA, served: list[Served]) -> None:
    cert, key = ca.issue("exporter")
    allowed, other = ca.issue("prometheus", client=True), ca.issue("grafana", client=True)
    server = start(
        tmp_path,
        {
            "tls_server_config": {
                "cert_file": str(cert),
                "key_file": str(key),
                "client_auth_type": "RequireAndVerifyClientCert",
                "client_ca_file": str(ca.ca_file),
                "client_allowed_sans": ["prometheus"],
            }
        },
    )
    served.append(server)
    url = server.url("/healthz")
    assert requests.get(url, verify=ca.ca_file, cert=(str(allowed[0]), str(allowed[1])), timeout=5).ok
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(url, verify=ca.ca_file, cert=(str(other[0]), str(other[1])), timeout=5)


def _handshake(port: int, ca_file: Path, version: ssl.TLSVersion) -> str:
    context = ssl.create_default_context(cafile=str(ca_file))
    context.minimum_version = context.maximum_version = version
    with (
        socket.create_connection(("127.0.0.1", port), timeout=5) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        return str(tls.version())


def test_min_version_tls13_refuses_tls12(tmp_path: Path, ca: CA, served: list[Served]) -> None:
    cert, key = ca.issue("exporter")
    server = start(
        tmp_path, {"tls_server_config": {"cert_file": str(cert), "key_file": str(key), "min_version": "TLS13"}}
    )
    served.append(server)
    with pytest.raises(ssl.SSLError):
        _handshake(server.port, ca.ca_file, ssl.TLSVersion.TLSv1_2)
    assert _handshake(server.port, ca.ca_file, ssl.TLSVersion.TLSv1_3) == "TLSv1.3"


def test_default_min_version_is_tls12(tmp_path: Path, ca: CA, served: list[Served]) -> None:
    cert, key = ca.issue("exporter")
    server = start(tmp_path, {"tls_server_config": {"cert_file": str(cert), "key_file": str(key)}})
    served.append(server)
    assert _handshake(server.port, ca.ca_file, ssl.TLSVersion.TLSv1_2) == "TLSv1.2"


def test_configured_headers_on_every_answer_including_401(tmp_path: Path, served: list[Served]) -> None:
    server = start(
        tmp_path,
        {
            "basic_auth_users": {USER: bcrypt_hash(PASSWORD)},
            "http_server_config": {"headers": {"X-Frame-Options": "deny", "X-Content-Type-Options": "nosniff"}},
        },
    )
    served.append(server)
    for response in (
        requests.get(server.url("/metrics", "http"), timeout=5),
        requests.get(server.url("/healthz", "http"), timeout=5),
    ):
        assert response.headers["X-Frame-Options"] == "deny"
        assert response.headers["X-Content-Type-Options"] == "nosniff"


def test_a_verified_password_is_remembered_a_wrong_one_never(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "web.yml"
    path.write_text(yaml.safe_dump({"basic_auth_users": {USER: bcrypt_hash(PASSWORD)}}))
    config = load_web_config(path)
    calls: list[bytes] = []
    real = bcrypt.checkpw

    def counting(password: bytes, hashed: bytes) -> bool:
        calls.append(password)
        return real(password, hashed)

    monkeypatch.setattr(webconfig.bcrypt, "checkpw", counting)
    good = requests.auth._basic_auth_str(USER, PASSWORD)
    bad = requests.auth._basic_auth_str(USER, "guess")
    assert all(config.authorized(good) for _ in range(5))
    assert len(calls) == 1
    assert not any(config.authorized(bad) for _ in range(3))
    assert len(calls) == 4
    assert not config.authorized(requests.auth._basic_auth_str("nobody", PASSWORD))
    assert len(calls) == 5, "an unknown user pays bcrypt's cost too"
    for header in (None, "", "Bearer x", "Basic !!!", "Basic " + "bm9jb2xvbg=="):
        assert not config.authorized(header)


@pytest.mark.parametrize(
    ("document", "field"),
    [
        (
            {"tls_server_config": {"cert_file": "CERT", "key_file": "KEY", "min_version": "TLS14"}},
            "tls_server_config.min_version",
        ),
        ({"tls_server_config": {"cert_file": "/nonexistent.crt", "key_file": "KEY"}}, "tls_server_config.cert_file"),
        (
            {"tls_server_config": {"cert_file": "CERT", "key_file": "KEY", "client_auth_type": "RequireAnyClientCert"}},
            "tls_server_config.client_auth_type",
        ),
        (
            {
                "tls_server_config": {
                    "cert_file": "CERT",
                    "key_file": "KEY",
                    "client_auth_type": "RequireAndVerifyClientCert",
                }
            },
            "tls_server_config.client_ca_file",
        ),
        ({"tls_server_config": {"cert_file": "KEY", "key_file": "CERT"}}, "tls_server_config.cert_file"),
        ({"basic_auth_users": {USER: "plain-text-password"}}, "basic_auth_users"),
        ({"http_server_config": {"headers": {"Server": "x"}}}, "http_server_config.headers"),
        (
            {
                "tls_server_config": {
                    "cert_file": "CERT",
                    "key_file": "KEY",
                    "cipher_suites": ["TLS_AES_128_GCM_SHA256"],
                }
            },
            "tls_server_config.cipher_suites",
        ),
        ({"tls_srever_config": {}}, "tls_srever_config"),
    ],
)
def test_bad_web_config_exits_2_naming_the_field(
    tmp_path: Path,
    ca: CA,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    document: dict[str, Any],
    field: str,
) -> None:
    monkeypatch.setattr(cli.logs, "configure", lambda *args, **kwargs: None)  # keep logging off pytest's capture
    cert, key = ca.issue("exporter")
    text = yaml.safe_dump(document).replace("CERT", str(cert)).replace("KEY", str(key))
    (tmp_path / "web.yml").write_text(text)
    (tmp_path / "config.yml").write_text(yaml.safe_dump({"targets": [target()]}))
    code = cli.main(
        [
            "--config.file",
            str(tmp_path / "config.yml"),
            "--web.config.file",
            str(tmp_path / "web.yml"),
            "--web.listen-address",
            "127.0.0.1:0",
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert f"invalid web configuration: {field}" in err, err


def test_missing_web_config_file_names_the_flag(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as caught:
        load_web_config(tmp_path / "absent.yml")
    assert caught.value.lines[0].startswith("web.config.file: cannot read")


def test_the_flag_protects_a_running_exporter(tmp_path: Path) -> None:
    from tests.test_process import Running

    web = tmp_path / "web.yml"
    web.write_text(yaml.safe_dump({"basic_auth_users": {USER: bcrypt_hash(PASSWORD)}}))
    running = Running(["--demo", "--web.config.file", str(web)])
    try:
        assert requests.get(running.url + "/metrics", timeout=5).status_code == 401
        assert requests.get(running.url + "/healthz", timeout=5).status_code == 200
        scraped = requests.get(running.url + "/metrics", auth=(USER, PASSWORD), timeout=10)
        assert scraped.status_code == 200 and "ingestion_job_state" in scraped.text
    finally:
        running.stop()
