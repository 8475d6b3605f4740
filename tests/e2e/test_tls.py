"""The host behind https with a certificate from a private CA: runners and clients that trust
that CA (``--RunnerApp.ca_file``, ``Client(ca_file=...)``) work; those that do not are refused
by certificate verification; ``verify_tls=False`` connects without checking (insecure)."""

from __future__ import annotations

import datetime
import ipaddress
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID
from harness import TERMINAL, TOKEN, HostProcess, RunnerProcess, wait_for, wait_node

from kohakuriver_lab.client import Client, HostUnreachable

pytestmark = [pytest.mark.integration]


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def make_ca_and_server_cert(folder: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate it signed for 127.0.0.1 and localhost:
    (ca.pem, server.pem, server-key.pem)."""
    now = datetime.datetime.now(datetime.timezone.utc)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_cert = (
        x509.CertificateBuilder()
        .subject_name(_name("kohakuriver test CA"))
        .issuer_name(_name("kohakuriver test CA"))
        .public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=False,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=True,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), False)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (
        x509.CertificateBuilder()
        .subject_name(_name("localhost"))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
        )
        .sign(ca_key, hashes.SHA256())
    )
    ca_pem, cert_pem, key_pem = folder / "ca.pem", folder / "server.pem", folder / "server-key.pem"
    ca_pem.write_bytes(ca_cert.public_bytes(serialization.Encoding.PEM))
    cert_pem.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_pem.write_bytes(_pem_key(key))
    key_pem.chmod(0o600)
    return ca_pem, cert_pem, key_pem


@pytest.fixture
def tls_host(make_host: Callable[..., HostProcess], workdir: Path) -> HostProcess:
    """A host serving https only, with a certificate from a CA made for this test."""
    pki = workdir / "pki"
    pki.mkdir()
    ca, cert, key = make_ca_and_server_cert(pki)
    extra = [f"--ServerApp.certfile={cert}", f"--ServerApp.keyfile={key}"]
    host = make_host(heartbeat=0.5, extra=extra, ca_file=ca)
    assert host.url.startswith("https://")
    return host


def wait_log(runner: RunnerProcess, text: str, timeout: float = 20.0) -> str:
    """The runner's log once it contains ``text``."""
    deadline = time.monotonic() + timeout
    while True:
        log = runner.log_path.read_text(errors="replace") if runner.log_path.exists() else ""
        if text in log:
            return log
        if time.monotonic() > deadline:
            raise AssertionError(f"{text!r} not in the runner log:\n{log[-3000:]}")
        time.sleep(0.1)


def test_runner_trusting_the_ca_runs_a_task_over_https(
    tls_host: HostProcess, make_runner: Callable[..., RunnerProcess]
) -> None:
    ca = tls_host.ca_file
    assert ca is not None
    make_runner(
        tls_host, tls_host.runner_token("tls-node"), "tls-node", [f"--RunnerApp.ca_file={ca}"]
    )
    with tls_host.client() as client:  # the Python client, trusting the same CA
        wait_node(client, "tls-node", "online")
        result = client.submit(["echo", "hello over tls"], targets=["tls-node"])
        task = wait_for(client, result.task_ids[0], TERMINAL)
        assert task.status.value == "completed", client.logs(task.task_id, "stderr").data
        assert client.logs(task.task_id).data == "hello over tls\n"
        # the log stream is a WebSocket (wss://): the CA is trusted there too
        assert "".join(text for _, text in client.follow_logs(task.task_id)) == "hello over tls\n"


def test_runner_and_client_without_the_ca_are_refused(
    tls_host: HostProcess, make_runner: Callable[..., RunnerProcess]
) -> None:
    runner = make_runner(tls_host, tls_host.runner_token("untrusting"), "untrusting")
    log = wait_log(runner, "CERTIFICATE_VERIFY_FAILED")
    assert "connection to wss://127.0.0.1" in log
    assert runner.process is not None and runner.process.poll() is None  # keeps retrying
    with Client(tls_host.url, TOKEN) as untrusting, pytest.raises(HostUnreachable) as info:
        untrusting.list_nodes()
    assert "CERTIFICATE_VERIFY_FAILED" in str(info.value)
    with tls_host.client() as client:
        time.sleep(1.0)  # a few reconnect attempts
        assert "untrusting" not in {node.name for node in client.list_nodes()}


def test_runner_with_verify_tls_off_connects_insecurely(
    tls_host: HostProcess, make_runner: Callable[..., RunnerProcess]
) -> None:
    """Documented as insecure (anyone in the middle can pose as the host); it works."""
    token = tls_host.runner_token("careless")
    make_runner(tls_host, token, "careless", ["--RunnerApp.verify_tls=False"])
    with tls_host.client() as client:
        wait_node(client, "careless", "online")
