"""TLS, mutual TLS and the bearer token between the plugin's sender and the aggregator,
with certificates made by openssl for this test (a private CA, a server and a client)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from support.aggregator_fixtures import count_rows, make_event, make_settings, sender_config

from ai_chargeback_aggregator.server.app import Aggregator
from ai_chargeback_plugin.sender import EventSender

pytestmark = pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl is needed to make test certificates")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("pki")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem", "-days", "2",
             "-subj", "/CN=chargeback-test-ca", cwd=d)  # fmt: skip
    for name, usage in (("server", "serverAuth"), ("client", "clientAuth")):
        (d / f"{name}.ext").write_text(f"subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage={usage}\n")
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN=chargeback-{name}", cwd=d)  # fmt: skip
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)  # fmt: skip
    return d


def deliver(settings_address: str, count: int, timeout_s: float, **tls: object) -> EventSender:
    sender = EventSender(sender_config(settings_address, **tls))
    for _ in range(count):
        sender.offer(make_event())
    sender.flush(timeout_s)
    return sender


def test_tls_with_token_delivers_and_plaintext_or_wrong_token_does_not(tmp_path: Path, pki: Path) -> None:
    settings = make_settings(tmp_path, tls_cert_path=str(pki / "server.pem"), tls_key_path=str(pki / "server.key"),
                             auth_token="tls-test-token-0123456789")  # fmt: skip
    agg = Aggregator(settings)
    agg.start()
    senders = []
    try:
        good = deliver(settings.grpc_listen, 20, 30, aggregator_tls=True, aggregator_ca_cert_path=str(pki / "ca.pem"),
                       aggregator_token="tls-test-token-0123456789")  # fmt: skip
        plaintext = deliver(settings.grpc_listen, 5, 2, aggregator_token="tls-test-token-0123456789")
        wrong = deliver(settings.grpc_listen, 5, 2, aggregator_tls=True, aggregator_ca_cert_path=str(pki / "ca.pem"),
                        aggregator_token="nope")  # fmt: skip
        senders = [good, plaintext, wrong]
        assert good.counters.sent == 20
        assert plaintext.counters.sent == 0 and wrong.counters.sent == 0
        assert count_rows(agg) == 20
    finally:
        for sender in senders:
            sender.close(timeout_s=0.5)
        agg.stop(grace_s=2)


def test_mutual_tls_requires_a_client_certificate_signed_by_the_ca(tmp_path: Path, pki: Path) -> None:
    settings = make_settings(tmp_path, tls_cert_path=str(pki / "server.pem"), tls_key_path=str(pki / "server.key"),
                             tls_client_ca_path=str(pki / "ca.pem"))  # fmt: skip
    agg = Aggregator(settings)
    agg.start()
    senders = []
    try:
        tls = {"aggregator_tls": True, "aggregator_ca_cert_path": str(pki / "ca.pem")}
        anonymous = deliver(settings.grpc_listen, 5, 2, **tls)
        certified = deliver(settings.grpc_listen, 10, 30, **tls, aggregator_client_cert_path=str(pki / "client.pem"),
                            aggregator_client_key_path=str(pki / "client.key"))  # fmt: skip
        senders = [anonymous, certified]
        assert anonymous.counters.sent == 0
        assert certified.counters.sent == 10
        assert count_rows(agg) == 10
    finally:
        for sender in senders:
            sender.close(timeout_s=0.5)
        agg.stop(grace_s=2)
