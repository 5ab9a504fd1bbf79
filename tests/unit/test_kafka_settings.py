"""Kafka's TLS and SASL settings from the environment: what every client is created with, the
password never shown, and SASL without credentials refused at start."""

from __future__ import annotations

import pytest
from faststream.security import SASLScram512
from pydantic import ValidationError

from shared.settings import KafkaSettings


def test_the_local_stack_is_plaintext_without_credentials(monkeypatch):
    monkeypatch.setenv("BILLING_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092")
    kafka = KafkaSettings()
    assert kafka.client_options() == {"bootstrap_servers": "kafka-1:9092", "security_protocol": "PLAINTEXT"}
    assert kafka.broker_security() is None


def test_sasl_ssl_with_scram_from_the_environment_and_a_secrets_file(monkeypatch, tmp_path):
    (tmp_path / "BILLING_KAFKA_SASL_PASSWORD").write_text("s3cret-from-a-file")
    monkeypatch.setenv("BILLING_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("BILLING_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9093")
    monkeypatch.setenv("BILLING_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BILLING_KAFKA_SASL_USERNAME", "rating")
    kafka = KafkaSettings(_secrets_dir=tmp_path)
    options = kafka.client_options()
    assert (options["security_protocol"], options["sasl_mechanism"], options["sasl_plain_username"],
            options["sasl_plain_password"]) == ("SASL_SSL", "SCRAM-SHA-512", "rating", "s3cret-from-a-file")
    assert options["ssl_context"].check_hostname
    security = kafka.broker_security()
    assert isinstance(security, SASLScram512) and security.use_ssl
    assert "s3cret" not in repr(kafka) and "s3cret" not in str(kafka.model_dump())


def test_sasl_without_a_password_is_refused_and_the_error_does_not_echo_the_input(monkeypatch):
    monkeypatch.setenv("BILLING_KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9093")
    monkeypatch.setenv("BILLING_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("BILLING_KAFKA_SASL_USERNAME", "rating")
    with pytest.raises(ValidationError, match="needs BILLING_KAFKA_SASL_USERNAME and BILLING_KAFKA_SASL_PASSWORD"):
        KafkaSettings()
