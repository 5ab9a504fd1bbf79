"""Settings from the environment, with the embedded local stack as the default.

Nothing configured: every service talks to the local stack under $BILLING_STACK_DIR (default
`.stack` in the working directory). In production set BILLING_KAFKA_BOOTSTRAP_SERVERS and each
service's <SERVICE>_DATABASE_URL. Kafka over TLS and SASL/SCRAM: BILLING_KAFKA_SECURITY_PROTOCOL and
the settings beside it (README, "Configuration" and "Security"); PostgreSQL over TLS: `?ssl=verify-full` on
the database URLs (asyncpg), with the CA in PGSSLROOTCERT.
"""

from __future__ import annotations

import json
import os
import ssl
from enum import StrEnum
from pathlib import Path
from typing import Any, ClassVar

from faststream.security import BaseSecurity, SASLScram256, SASLScram512
from pydantic import SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from shared.periods import time_zone
from shared.vat import VAT_RATES

DEFAULT_KAFKA_PORT = 19092


def stack_dir() -> Path:
    return Path(os.environ.get("BILLING_STACK_DIR", ".stack")).resolve()


def local_stack_state() -> dict[str, str]:
    """What `billing stack up` wrote about the servers it started (socket directory, broker)."""
    state_file = stack_dir() / "stack.json"
    if not state_file.exists():
        return {}
    return json.loads(state_file.read_text())


# What differs between the brokers the code runs on. Production runs Apache Kafka; the local stack
# records which one it started in stack.json ("broker").
BROKER_DEFAULTS: dict[str, dict[str, object]] = {
    # Kafka's usual fetch wait, which saves idle fetches; with aiokafka it still cost latency in the
    # benchmark (README, "On both brokers"), so 50 is the candidate once CI has run with it.
    "kafka": {"idempotent_producer": True, "fetch_max_wait_ms": 500, "batch_top_up_ms": 10},
    # Tansu answers a fetch only when its wait runs out, so the wait is every hop's latency (and a
    # batch's top-up would wait its whole time for nothing); and it fails idempotent producers with
    # UnknownError.
    "tansu": {"idempotent_producer": False, "fetch_max_wait_ms": 50, "batch_top_up_ms": 0},
}


class SecurityProtocol(StrEnum):
    PLAINTEXT = "PLAINTEXT"
    SSL = "SSL"
    SASL_PLAINTEXT = "SASL_PLAINTEXT"
    SASL_SSL = "SASL_SSL"


class ScramMechanism(StrEnum):
    SCRAM_SHA_256 = "SCRAM-SHA-256"
    SCRAM_SHA_512 = "SCRAM-SHA-512"


class KafkaSettings(BaseSettings):
    # The SASL password may come from a file BILLING_KAFKA_SASL_PASSWORD in BILLING_SECRETS_DIR (a mounted
    # secret) instead of the environment; it is a SecretStr, so never printed or logged.
    model_config = SettingsConfigDict(env_prefix="BILLING_KAFKA_", secrets_dir=os.environ.get("BILLING_SECRETS_DIR"),
                                      hide_input_in_errors=True)

    bootstrap_servers: str = ""
    partitions: int = 4
    replication_factor: int = 1
    # Kafka's defaults would let a killed worker hold its partitions for longer; tests, the demo
    # and the harnesses shorten these so that its successor takes over sooner.
    session_timeout_ms: int = 10_000
    heartbeat_interval_ms: int = 3_000
    # How long a fetch may wait for data (default: by broker, BROKER_DEFAULTS).
    fetch_max_wait_ms: int | None = None
    # How long a batch consumer waits for what arrived while it applied its previous batch before
    # it starts the next one (shared.runtime.topped_up); 0 never waits (default: by broker).
    batch_top_up_ms: int | None = None
    # The outbox relays' producers: the broker drops a retried send it already has and keeps a
    # partition's sends in order (default: by broker). Exactly-once effects do not depend on it:
    # the inboxes drop what arrives twice.
    idempotent_producer: bool | None = None
    # Production: SASL_SSL with SCRAM (the local stack is PLAINTEXT). ssl_cafile is the CA that
    # signed the brokers' certificates (default: the system's); certfile and keyfile for mutual TLS.
    security_protocol: SecurityProtocol = SecurityProtocol.PLAINTEXT
    sasl_mechanism: ScramMechanism = ScramMechanism.SCRAM_SHA_512
    sasl_username: str = ""
    sasl_password: SecretStr = SecretStr("")
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None

    @model_validator(mode="after")
    def _sasl_needs_credentials(self) -> KafkaSettings:
        if self.uses_sasl and not (self.sasl_username and self.sasl_password.get_secret_value()):
            raise ValueError(f"BILLING_KAFKA_SECURITY_PROTOCOL={self.security_protocol} needs "
                             "BILLING_KAFKA_SASL_USERNAME and BILLING_KAFKA_SASL_PASSWORD")
        return self

    @property
    def uses_sasl(self) -> bool:
        return self.security_protocol in (SecurityProtocol.SASL_PLAINTEXT, SecurityProtocol.SASL_SSL)

    @property
    def uses_tls(self) -> bool:
        return self.security_protocol in (SecurityProtocol.SSL, SecurityProtocol.SASL_SSL)

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.uses_tls:
            return None
        context = ssl.create_default_context(cafile=str(self.ssl_cafile) if self.ssl_cafile else None)
        if self.ssl_certfile:
            context.load_cert_chain(self.ssl_certfile, self.ssl_keyfile)
        return context

    def client_options(self) -> dict[str, Any]:
        """What every aiokafka client (producer, consumer, admin) is created with besides its own options."""
        options: dict[str, Any] = {"bootstrap_servers": self.bootstrap_servers,
                                   "security_protocol": self.security_protocol.value}
        if self.uses_tls:
            options["ssl_context"] = self.ssl_context()
        if self.uses_sasl:
            options.update(sasl_mechanism=self.sasl_mechanism.value, sasl_plain_username=self.sasl_username,
                           sasl_plain_password=self.sasl_password.get_secret_value())
        return options

    def broker_security(self) -> BaseSecurity | None:
        """The same for FastStream's KafkaBroker."""
        if self.uses_sasl:
            scram = SASLScram512 if self.sasl_mechanism is ScramMechanism.SCRAM_SHA_512 else SASLScram256
            return scram(self.sasl_username, self.sasl_password.get_secret_value(), ssl_context=self.ssl_context(),
                         use_ssl=self.uses_tls)
        if self.uses_tls:
            return BaseSecurity(ssl_context=self.ssl_context(), use_ssl=True)
        return None

    @model_validator(mode="after")
    def _default_to_local_stack(self) -> KafkaSettings:
        broker = "kafka"
        if not self.bootstrap_servers:
            state = local_stack_state()
            self.bootstrap_servers = state.get("bootstrap_servers", f"127.0.0.1:{DEFAULT_KAFKA_PORT}")
            broker = state.get("broker", broker)
        for name, value in BROKER_DEFAULTS[broker].items():
            if getattr(self, name) is None:
                setattr(self, name, value)
        return self


def kafka_client(bootstrap_servers: str) -> dict[str, Any]:
    """Options for an operator tool's aiokafka client of `bootstrap_servers`, with the TLS and SASL
    settings of the environment."""
    return KafkaSettings(bootstrap_servers=bootstrap_servers).client_options()


class SellerSettings(BaseSettings):
    """The seller every service bills for. Its country decides what is domestic (shared.vat), both
    for invoicing, which computes the tax, and for rating, which refuses contracts whose tax could
    not be computed; so it is one setting, BILLING_SELLER_COUNTRY, read here by both."""

    model_config = SettingsConfigDict(env_prefix="BILLING_SELLER_")

    country: str = "DE"
    # The business time zone periods are cut and documents dated in, unless a contract names its own.
    time_zone: str = "Europe/Berlin"

    @field_validator("time_zone")
    @classmethod
    def _time_zone_is_known(cls, name: str) -> str:
        time_zone(name)
        return name

    @field_validator("country")
    @classmethod
    def _country_has_rates(cls, country: str) -> str:
        if country not in VAT_RATES:
            raise ValueError(f"no pinned VAT rates for the seller country {country!r}; see shared/vat.py")
        return country


def seller_country() -> str:
    return SellerSettings().country


def business_time_zone() -> str:
    """The seller's time zone (BILLING_SELLER_TIME_ZONE): where a day begins and ends for billing."""
    return SellerSettings().time_zone


class ServiceSettings(BaseSettings):
    """One service's settings; subclasses set `service` and read <SERVICE>_* variables."""

    service: ClassVar[str]

    database_url: str = ""
    # How often the outbox relay looks for new rows when no notification woke it up (notifications
    # are missed only while its listening connection is re-established).
    outbox_poll_interval_s: float = 1.0
    outbox_batch_size: int = 500
    # What a relay's producer gathers for one partition before a send waits for it to go out.
    # aiokafka keeps one batch a partition and sends a broker one request at a time, so with its
    # default (16 KB) a relay batch of 500 documents (1-2 KB each) over four partitions went as a
    # dozen requests one after the other. Well under the broker's limit for a record batch
    # (message.max.bytes, 1 MB); the bytes a worker holds in flight grow with it (RatingSettings).
    outbox_partition_batch_bytes: int = 256 * 1024
    # How long a consumer retries a batch that fails transiently (database or broker away) before
    # it rewinds it, so that it is redelivered and retried again.
    retry_window_s: float = 120.0
    # A message that waits for another (a chargeback for its payment) is parked, re-driven when a
    # message of its contract is applied and otherwise on a backoff schedule; the loop looks for
    # due ones this often. After park_timeout_s it is dead-lettered with what it waited for.
    parked_redrive_interval_s: float = 2.0
    park_timeout_s: float = 7 * 86_400.0
    # Batch consumers (subscribe_batch) apply up to this many messages per transaction, waiting at
    # most batch_timeout_ms for a poll to fill when the topic is quiet.
    batch_max_records: int = 500
    batch_timeout_ms: int = 20
    # How long the broker may hold a consumer's fetch for a batch's worth of messages
    # (FETCH_LINGER_MIN_BYTES) while its topic is quiet; 0 answers a fetch as soon as there is
    # anything. A stage off the path anybody waits on trades that much delay for fewer, fuller
    # batches: each costs round trips and a commit however few messages it holds.
    fetch_linger_ms: int = 0
    # Events stamped further in the future than this are refused: clocks drift, but not by days.
    max_future_skew_s: float = 86_400.0
    # The worker's own HTTP endpoint (health and /metrics); 0 turns it off. With `--workers N`
    # process i listens on http_port + i. Bind 0.0.0.0 where probes and scrapers come from outside.
    http_host: str = "127.0.0.1"
    http_port: int = 0
    # How often the worker refreshes its lag and backlog gauges (only while the endpoint is on).
    metrics_interval_s: float = 5.0

    @model_validator(mode="after")
    def _default_to_local_stack(self) -> ServiceSettings:
        if not self.database_url:
            self.database_url = local_database_url(self.service)
        return self


def local_database_url(database: str) -> str:
    socket_dir = local_stack_state().get("postgres_socket_dir", str(stack_dir() / "pg"))
    return f"postgresql+asyncpg://postgres@/{database}?host={socket_dir}"



class AccessSettings(BaseSettings):
    """Who may call the HTTP surfaces and operator commands (ACCESS_*; see shared.access).

    `token` is an operator command's credential (ACCESS_TOKEN, or the file ACCESS_TOKEN in
    BILLING_SECRETS_DIR). The OpenID Connect provider is optional: without `oidc_issuer` operators
    sign in with the local user store's passwords only.
    """

    model_config = SettingsConfigDict(env_prefix="ACCESS_", secrets_dir=os.environ.get("BILLING_SECRETS_DIR"),
                                      hide_input_in_errors=True)

    database_url: str = ""
    token: SecretStr = SecretStr("")
    session_hours: float = 8.0
    # Sign-in is refused for a name or an address with this many failures in the window.
    sign_in_failure_limit: int = 5
    sign_in_window_s: float = 900.0
    # Session cookies are Secure (sent over HTTPS only; browsers treat http://localhost as secure).
    secure_cookies: bool = True
    # Signs the OpenID Connect sign-in's short-lived state cookie; set it in production (a random
    # value per start otherwise, so a restart only cancels sign-ins in progress).
    state_secret: SecretStr = SecretStr("")
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    oidc_client_secret: SecretStr = SecretStr("")
    # The claim that holds the operator's role (viewer, clerk or admin); without it, a person the
    # provider signs in must already be an operator (by e-mail) in the local user store.
    oidc_role_claim: str = ""

    @model_validator(mode="after")
    def _local_database_by_default(self) -> AccessSettings:
        if not self.database_url:
            self.database_url = local_database_url("access")
        return self
