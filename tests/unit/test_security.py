"""Kafka security settings reach every client, and secrets stay out of reprs and workers' environments."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import faust
import pytest

from pipeline import config, kafka
from pipeline.cluster import open_backend

REPO = Path(__file__).resolve().parents[2]
SASL = {
    "kafka_security_protocol": "SASL_SSL",
    "kafka_sasl_mechanism": "SCRAM-SHA-512",
    "kafka_sasl_username": "wordpipe",
    "kafka_sasl_password": "s3cret-sasl",
}


def test_security_settings_become_every_librdkafka_config():
    s = config.Settings(**SASL, kafka_ssl_ca_location="/etc/ca.pem", bootstrap="b:9092")
    connection = config.Connection.to(s.kafka)
    expected = {
        "security.protocol": "SASL_SSL",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "wordpipe",
        "sasl.password": "s3cret-sasl",
        "ssl.ca.location": "/etc/ca.pem",
    }
    for built in (
        kafka.client_config(connection),
        kafka.producer_config(connection),
        kafka.consumer_config(connection, "g"),
    ):
        assert expected.items() <= built.items()
    assert kafka.security_config(config.Settings().kafka) == {"security.protocol": "PLAINTEXT"}


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kafka_security_protocol": "TLS"}, "kafka_security_protocol: 'TLS' is not one of"),
        ({"kafka_security_protocol": "SASL_PLAINTEXT"}, "kafka_sasl_mechanism: SASL_PLAINTEXT needs one of PLAIN"),
        ({**SASL, "kafka_sasl_password": None}, "kafka_sasl_username and kafka_sasl_password"),
        ({"kafka_ssl_certificate_location": "/c.pem"}, "kafka_ssl_certificate_location and kafka_ssl_key_location"),
    ],
)
def test_bad_security_settings_say_what_is_wrong(changes, message):
    with pytest.raises(config.ConfigError, match=re.escape(message)):
        config.Settings(**changes)


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command to make a CA")
def test_the_faust_aggregator_gets_the_same_credentials(tmp_path):
    ca = tmp_path / "ca.pem"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(ca),
            "-days",
            "1",
            "-subj",
            "/CN=test-ca",
        ],
        check=True,
        capture_output=True,
    )
    assert kafka.faust_credentials(config.Settings().kafka) is None
    tls = kafka.faust_credentials(config.Settings(kafka_security_protocol="SSL", kafka_ssl_ca_location=str(ca)).kafka)
    assert isinstance(tls, faust.SSLCredentials) and tls.context.get_ca_certs()[0]["subject"] == (
        (("commonName", "test-ca"),),
    )
    sasl = kafka.faust_credentials(config.Settings(**SASL, kafka_ssl_ca_location=str(ca)).kafka)
    assert isinstance(sasl, faust.SASLCredentials)
    assert (sasl.username, sasl.password, sasl.mechanism.value, sasl.protocol.value) == (
        "wordpipe",
        "s3cret-sasl",
        "SCRAM-SHA-512",
        "SASL_SSL",
    )
    assert sasl.ssl_context is not None


def test_every_kafka_client_is_built_from_the_shared_config():
    """A client built by hand would miss the security settings: every construction in the
    code goes through kafka.client_config, producer_config or consumer_config, in the Kafka
    edge (pipeline/kafka/), and nothing else imports confluent_kafka."""
    offenders, seen, outside = [], 0, []
    for path in REPO.glob("pipeline/**/*.py"):
        text = path.read_text()
        edge = path.is_relative_to(REPO / "pipeline" / "kafka")
        if not edge and "confluent_kafka" in text:
            outside.append(f"{path.relative_to(REPO)} imports confluent_kafka")
        for match in re.finditer(r"\b(Consumer|Producer|AdminClient)\(", text):
            seen += 1
            if not edge:
                outside.append(f"{path.relative_to(REPO)}: {text[match.start() : match.end() + 60]!r}")
            call = text[match.end() : match.end() + 300]
            if not re.match(r"\s*\{?\s*(\*\*)?(kafka\.)?(client|producer|consumer)_config\(", call):
                offenders.append(f"{path.relative_to(REPO)}: {text[match.start() : match.end() + 60]!r}")
    assert seen >= 3, f"found only {seen} client constructions: the scan no longer sees them"
    assert not offenders, offenders
    assert not outside, outside


def test_secrets_stay_out_of_reprs_and_workers_environments(tmp_path):
    s = config.Settings(**SASL, tokens="api-token", mesos_principal="p", mesos_secret="mesos-pw")
    assert not any(secret in repr(s) for secret in ("s3cret-sasl", "api-token", "mesos-pw"))
    backend = open_backend(s.cluster, s.mesos, s.worker_env(), "test", tmp_path)
    try:
        env = backend.env
    finally:
        backend.close()
    assert env["WORDPIPE_KAFKA_SASL_PASSWORD"] == "s3cret-sasl"  # workers must reach Kafka...
    assert "WORDPIPE_TOKENS" not in env and not any(k.startswith("WORDPIPE_MESOS_") for k in env)  # ...not the APIs


def test_a_local_worker_inherits_only_the_allowed_variables(tmp_path, monkeypatch):
    """`wordpipe up` hands its services the tokens in their environment: a local worker
    launched by one of them must not inherit them, nor anything else not allowed."""
    monkeypatch.setenv("WORDPIPE_TOKENS", "api-token")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "cloud-secret")
    monkeypatch.setenv("LC_ALL", "C.UTF-8")
    s = config.Settings(tokens="api-token")
    backend = open_backend(s.cluster, s.mesos, s.worker_env(), "test", tmp_path)
    try:
        env = backend.env
    finally:
        backend.close()
    assert "WORDPIPE_TOKENS" not in env and "AWS_SECRET_ACCESS_KEY" not in env
    assert env["LC_ALL"] == "C.UTF-8" and env["PATH"] == os.environ["PATH"]
    assert env["WORDPIPE_CHUNKS_TOPIC"] == "chunks" and "WORDPIPE_AGGREGATOR_PORT" not in env


def test_every_setting_a_worker_reads_reaches_it():
    """The workers' allow-list names every setting the worker's code reads."""
    flat = {path: name for name, path in config.FLAT.items()}
    read = set()
    for path in [*REPO.glob("pipeline/worker/*.py"), REPO / "pipeline" / "observe" / "roster.py"]:
        for section, attr in re.findall(r"\bsettings\.([a-z_]+)(?:\.([a-z_]+))?\b", path.read_text()):
            if (section, attr) in flat:
                read.add(flat[section, attr])
            elif section in config.SECTIONS:  # a whole section handed on
                read |= {name for name, (s, _) in config.FLAT.items() if s == section}
            else:
                read.add(section)
    assert len(read) > 10, "the scan finds few settings read: it is broken"
    variables = {config.ENV_PREFIX + name.upper() for name in read}
    assert variables <= config.WORKER_VARIABLES, variables - config.WORKER_VARIABLES
