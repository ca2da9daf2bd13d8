"""Throwaway keys and certificates for one test control plane, made with the `openssl` CLI.

A real CA (rather than `insecure-skip-tls-verify`) keeps every client honest: the Python client, kubectl,
kube-scheduler and kwok all verify the API server's certificate. P-256 keys because they are generated in
milliseconds; the API server signs ServiceAccount tokens with one (ES256) so TokenReview works as in a real
cluster.
"""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess

VALID_DAYS = 2


@dataclasses.dataclass(frozen=True)
class Pki:
    ca_cert: pathlib.Path
    serving_cert: pathlib.Path  # 127.0.0.1 and localhost; shared by kube-apiserver and kube-scheduler
    serving_key: pathlib.Path
    service_account_key: pathlib.Path  # private key: signs ServiceAccount tokens
    service_account_public_key: pathlib.Path  # verifies them (TokenReview, every authenticated request)


def _openssl(*args: str) -> None:
    subprocess.run(["openssl", *args], check=True, capture_output=True)


def _ec_key(path: pathlib.Path) -> None:
    _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", str(path))


def create_pki(directory: pathlib.Path) -> Pki:
    if shutil.which("openssl") is None:
        raise RuntimeError("the test control plane needs the `openssl` CLI to make its certificates")
    directory.mkdir(parents=True, exist_ok=True)
    ca_key, ca_cert = directory / "ca.key", directory / "ca.crt"
    key, csr, cert = directory / "serving.key", directory / "serving.csr", directory / "serving.crt"
    sa_key = directory / "service-account.key"
    for path in (ca_key, key, sa_key):
        _ec_key(path)
    _openssl(
        "req", "-x509", "-new", "-key", str(ca_key), "-out", str(ca_cert), "-days", str(VALID_DAYS),
        "-subj", "/CN=wattwise-test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-addext", "subjectKeyIdentifier=hash",
    )  # fmt: skip
    _openssl("req", "-new", "-key", str(key), "-out", str(csr), "-subj", "/CN=127.0.0.1")
    extensions = directory / "serving.ext"
    extensions.write_text(
        "basicConstraints=critical,CA:FALSE\n"
        "keyUsage=critical,digitalSignature\n"
        "extendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid\n"
        "subjectAltName=IP:127.0.0.1,DNS:localhost\n"
    )
    _openssl(
        "x509", "-req", "-in", str(csr), "-CA", str(ca_cert), "-CAkey", str(ca_key), "-CAcreateserial",
        "-out", str(cert), "-days", str(VALID_DAYS), "-extfile", str(extensions),
    )  # fmt: skip
    sa_public = directory / "service-account.pub"
    _openssl("pkey", "-in", str(sa_key), "-pubout", "-out", str(sa_public))
    for path in (ca_key, key, sa_key):
        path.chmod(0o600)
    return Pki(
        ca_cert=ca_cert,
        serving_cert=cert,
        serving_key=key,
        service_account_key=sa_key,
        service_account_public_key=sa_public,
    )
