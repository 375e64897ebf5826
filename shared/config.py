"""Configuration, read once from COBUY_* variables with local defaults (SPEC §6)."""
from __future__ import annotations

import ipaddress
import os
import secrets
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
SERVICES = ("catalog", "reservation", "auction", "mailer")
# Internal HTTP ports sit right above the gateway's: 8080 → catalog 8081 … mailer 8084.
SERVICE_PORT_OFFSET = {name: i + 1 for i, name in enumerate(SERVICES)}


def _env(name: str, default: str | None = None) -> str | None:
    value = os.environ.get(name)
    return value if value not in (None, "") else default


def _optional(kind, value: str | None):
    return None if value is None else kind(value)


@dataclass(frozen=True)
class SmtpSettings:
    """COBUY_SMTP_URL as operators write it for a real relay:
    `smtp://host:587` (STARTTLS when offered; `?starttls=required` to insist, `?starttls=off` never),
    `smtps://host:465` (TLS from the first byte), `user:password@` URL-encoded in either, or
    COBUY_SMTP_USER / COBUY_SMTP_PASSWORD; COBUY_SMTP_CA_FILE: the CAs to trust instead of the system's."""

    host: str
    port: int
    tls: str = "starttls"  # "starttls" (when offered), "starttls-required", "implicit" or "off"
    user: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str, user: str | None = None, password: str | None = None,
              ca_file: str | None = None) -> "SmtpSettings":
        parts = urlsplit(url)
        if parts.scheme not in ("smtp", "smtps") or not parts.hostname:
            raise ValueError("COBUY_SMTP_URL: expected smtp://[user:password@]host[:port] or smtps://…")
        starttls = parse_qs(parts.query).get("starttls", ["auto"])[-1]
        modes = {"auto": "starttls", "opportunistic": "starttls", "required": "starttls-required", "off": "off"}
        if parts.scheme == "smtp" and starttls not in modes:
            raise ValueError(f"COBUY_SMTP_URL: starttls={starttls!r}; expected required, opportunistic or off")
        return cls(host=parts.hostname, port=parts.port or (465 if parts.scheme == "smtps" else 25),
                   tls="implicit" if parts.scheme == "smtps" else modes[starttls],
                   user=unquote(parts.username) if parts.username else user,
                   password=unquote(parts.password) if parts.password is not None else password,
                   ca_file=ca_file)


@dataclass(frozen=True)
class Config:
    http_port: int
    data_dir: Path
    amqp_url: str | None
    database_url: str | None
    smtp_url: str | None
    mail_from: str
    public_url: str
    rate_limit: str
    internal_secret: str
    service_urls: dict[str, str] = field(default_factory=dict)
    exchange_prefix: str = "cobuy"
    relay_poll_seconds: float = 0.05
    # reservation counts one offer at most once per interval: one ReservationCountChanged, not one per batch
    count_interval_seconds: float = 0.1
    outbox_retention_days: float = 7.0
    amqp_heartbeat: int = 30
    transient_retry_seconds: float = 60.0
    mail_lease_seconds: float = 30.0
    mail_concurrency: int = 16
    mail_nice: int = 10
    # SPEC §10: a price-drop mail leaves this long after the interception that started it (later
    # ones fold into it), then at most one per offer and purchaser per interval
    price_drop_delay_seconds: float = 30.0
    price_drop_interval_seconds: float = 600.0
    log_level: str = "INFO"
    bind_host: str = "127.0.0.1"  # the gateway's listening address under `cobuy up`
    worker_metrics_port: int | None = None  # a worker in its own container serves /metrics and /healthz here
    worker_stale_seconds: float = 60.0  # /healthz fails when a loop has not beaten for this long
    # when set, the gateway answers /metrics, /readyz and /healthz on this port only (one the Ingress
    # does not route) and 404s them on its public one; unset, both on the public port (`cobuy up`)
    operator_port: int | None = None
    mail_template_dir: Path | None = None  # an operator's templates, before the shipped ones
    # proxies in front of the gateway whose X-Forwarded-For is believed (gateway/edge.client_address)
    trusted_proxies: tuple[IPNetwork, ...] = ()
    # "start": each worker migrates its schema as it starts (`cobuy up`); "job": only the release's
    # migration Job does, and pods check the schema is at or ahead of their code (`cobuy serve`)
    migrations: str = "start"
    smtp_user: str | None = field(default=None, repr=False)
    smtp_password: str | None = field(default=None, repr=False)
    smtp_ca_file: str | None = None
    # "quorum": the durable queues are declared `x-queue-type: quorum`, replicated across a RabbitMQ
    # cluster; "classic" (default) declares no type. A queue's type is fixed when it is first declared.
    amqp_queue_type: str = "classic"
    # Sellers' webhooks (services/mailer/webhooks): http:// and private/loopback targets are for tests
    # and private deployments only; the timings are configurable so tests need not wait 24 hours.
    webhook_allow_http: bool = False
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 5.0
    webhook_backoff_seconds: float = 5.0
    webhook_retry_seconds: float = 86400.0
    webhook_concurrency: int = 8
    # How a service's connections land in its schema (PostgreSQL). "option": one URL for all, the
    # schema sent as the startup option `-c search_path=<service>`. "role": each service connects as its
    # own role (COBUY_CATALOG_DATABASE_URL, COBUY_RESERVATION_DATABASE_URL, COBUY_AUCTION_DATABASE_URL,
    # COBUY_MAILER_DATABASE_URL) whose search_path is set on the role and no startup option is sent:
    # what PgBouncer in transaction mode needs (docs/operations.md, "Connection pooler").
    database_search_path: str = "option"
    service_database_urls: dict[str, str] = field(default_factory=dict, repr=False)

    @property
    def embedded_broker(self) -> bool:
        return self.amqp_url is None

    def broker_folder(self) -> Path:
        return self.data_dir / "broker"

    def database_url_for(self, service: str) -> str:
        """Each service owns its data: a schema in PostgreSQL, or its own SQLite file."""
        url = self.service_database_urls.get(service) or self.database_url
        if url:
            for prefix in ("postgresql://", "postgres://"):
                if url.startswith(prefix):
                    url = "postgresql+psycopg://" + url[len(prefix):]
            return url
        return f"sqlite:///{self.data_dir / (service + '.db')}"

    def smtp(self) -> SmtpSettings:
        # Embedded mode: `cobuy up` runs a local sink right above the services' ports.
        url = self.smtp_url or f"smtp://127.0.0.1:{self.http_port + 5}"
        return SmtpSettings.parse(url, self.smtp_user, self.smtp_password, self.smtp_ca_file)

    def smtp_address(self) -> tuple[str, int]:
        settings = self.smtp()
        return settings.host, settings.port

    @property
    def operator_http_port(self) -> int:
        """Where the gateway answers its operator endpoints."""
        return self.operator_port or self.http_port

    def service_url(self, service: str) -> str:
        return self.service_urls[service]

    def service_port(self, service: str) -> int:
        return self.http_port + SERVICE_PORT_OFFSET[service]


def _internal_secret(data_dir: Path) -> str:
    """A secret shared by the gateway and services to sign identities.

    Production sets COBUY_INTERNAL_SECRET (a Secret in Kubernetes); locally one is made
    once and kept under the data dir so every process of `cobuy up` agrees on it.
    """
    explicit = _env("COBUY_INTERNAL_SECRET")
    if explicit:
        return explicit
    path = data_dir / "internal-secret"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_suffix(f".{os.getpid()}")
        # Created 0600 from the first byte: anyone who reads it can sign identities.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_urlsafe(32))
        os.replace(tmp, path)
    elif path.stat().st_mode & 0o077:  # written 0644 by an older release
        path.chmod(0o600)
    return path.read_text().strip()


def trusted_networks(text: str | None) -> tuple[IPNetwork, ...]:
    """COBUY_TRUSTED_PROXIES: comma-separated addresses or CIDRs (default none); a bad one stops start-up."""
    networks = []
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        try:
            networks.append(ipaddress.ip_network(part, strict=False))
        except ValueError:
            raise ValueError(f"COBUY_TRUSTED_PROXIES: {part!r} is not an address or CIDR") from None
    return tuple(networks)


def load() -> Config:
    http_port = int(_env("COBUY_HTTP_PORT", "8080"))
    data_dir = Path(_env("COBUY_DATA_DIR", "./.cobuy")).resolve()
    service_urls = {
        name: _env(f"COBUY_{name.upper()}_URL", f"http://127.0.0.1:{http_port + off}")
        for name, off in SERVICE_PORT_OFFSET.items()
    }
    return Config(
        http_port=http_port,
        data_dir=data_dir,
        amqp_url=_env("COBUY_AMQP_URL"),
        database_url=_env("COBUY_DATABASE_URL"),
        smtp_url=_env("COBUY_SMTP_URL"),
        mail_from=_env("COBUY_MAIL_FROM", "cobuy <no-reply@cobuy.localhost>"),
        public_url=_env("COBUY_PUBLIC_URL", f"http://127.0.0.1:{http_port}").rstrip("/"),
        rate_limit=_env("COBUY_RATE_LIMIT", "reservations=30/minute;registrations=5/minute;sign_ins=5/minute"),
        internal_secret=_internal_secret(data_dir),
        service_urls=service_urls,
        exchange_prefix=_env("COBUY_EXCHANGE_PREFIX", "cobuy"),
        relay_poll_seconds=float(_env("COBUY_RELAY_POLL_SECONDS", "0.05")),
        count_interval_seconds=float(_env("COBUY_COUNT_INTERVAL_SECONDS", "0.1")),
        outbox_retention_days=float(_env("COBUY_OUTBOX_RETENTION_DAYS", "7")),
        amqp_heartbeat=int(_env("COBUY_AMQP_HEARTBEAT", "30")),
        transient_retry_seconds=float(_env("COBUY_TRANSIENT_RETRY_SECONDS", "60")),
        mail_lease_seconds=float(_env("COBUY_MAIL_LEASE_SECONDS", "30")),
        mail_concurrency=int(_env("COBUY_MAIL_CONCURRENCY", "16")),
        mail_nice=int(_env("COBUY_MAIL_NICE", "10")),
        price_drop_delay_seconds=float(_env("COBUY_PRICE_DROP_DELAY_SECONDS", "30")),
        price_drop_interval_seconds=float(_env("COBUY_PRICE_DROP_INTERVAL_SECONDS", "600")),
        log_level=_env("COBUY_LOG_LEVEL", "INFO"),
        bind_host=_env("COBUY_BIND_HOST", "127.0.0.1"),
        worker_metrics_port=_optional(int, _env("COBUY_WORKER_METRICS_PORT")),
        worker_stale_seconds=float(_env("COBUY_WORKER_STALE_SECONDS", "60")),
        operator_port=_optional(int, _env("COBUY_OPERATOR_PORT")),
        mail_template_dir=_optional(Path, _env("COBUY_MAIL_TEMPLATE_DIR")),
        trusted_proxies=trusted_networks(_env("COBUY_TRUSTED_PROXIES")),
        migrations=_env("COBUY_MIGRATIONS", "start"),
        smtp_user=_env("COBUY_SMTP_USER"),
        smtp_password=_env("COBUY_SMTP_PASSWORD"),
        smtp_ca_file=_env("COBUY_SMTP_CA_FILE"),
        amqp_queue_type=_queue_type(_env("COBUY_AMQP_QUEUE_TYPE", "classic")),
        webhook_allow_http=_env("COBUY_WEBHOOK_ALLOW_HTTP", "0") == "1",
        webhook_allow_private=_env("COBUY_WEBHOOK_ALLOW_PRIVATE", "0") == "1",
        webhook_timeout_seconds=float(_env("COBUY_WEBHOOK_TIMEOUT_SECONDS", "5")),
        webhook_backoff_seconds=float(_env("COBUY_WEBHOOK_BACKOFF_SECONDS", "5")),
        webhook_retry_seconds=float(_env("COBUY_WEBHOOK_RETRY_SECONDS", "86400")),
        webhook_concurrency=int(_env("COBUY_WEBHOOK_CONCURRENCY", "8")),
        database_search_path=_search_path_mode(_env("COBUY_DATABASE_SEARCH_PATH", "option")),
        service_database_urls={name: url for name in SERVICES
                               if (url := _env(f"COBUY_{name.upper()}_DATABASE_URL"))},
    )


def _search_path_mode(value: str) -> str:
    if value not in ("option", "role"):
        raise ValueError(f"COBUY_DATABASE_SEARCH_PATH: {value!r}; expected option or role")
    return value


def _queue_type(value: str) -> str:
    if value not in ("classic", "quorum"):
        raise ValueError(f"COBUY_AMQP_QUEUE_TYPE: {value!r}; expected classic or quorum")
    return value


@lru_cache(maxsize=1)
def get() -> Config:
    """The process's configuration, read once."""
    return load()
