"""The orchestrator's settings: one field per environment variable, each default written once here.

`Settings()` reads `VTON_*` (and the two AWS credential variables) from the environment, validates every value
and refuses a bad one naming the variable. docs/deploy.md's settings table is generated from this class
(`python -m orchestrator.settings`), and a test keeps the two equal.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    Field,
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    PositiveInt,
    SecretStr,
    ValidationError,
    create_model,
    field_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from vton.runtime.vocab import API_PORT, GRPC_PORTS, STAGES

ENV_PREFIX = "VTON_"

# Constraints shared by many settings, named once: a duration or a rate of 0 would mean "never" or "spin".
Seconds = Annotated[float, Field(gt=0)]
Port = Annotated[int, Field(ge=1, le=65535)]
# An operator key: long enough that guessing it is hopeless.
Secret = Annotated[SecretStr, Field(min_length=16)]


def _stage_address_fields() -> dict[str, Any]:
    """`<stage>_addr` for every stage of the vocabulary: VTON_POSE_ADDR ... VTON_DIFFUSION_ADDR."""
    return {
        f"{stage}_addr": (
            str,
            Field(
                f"127.0.0.1:{GRPC_PORTS[stage]}",
                min_length=1,
                description=f"gRPC address of the {stage} stage",
            ),
        )
        for stage in STAGES
    }


# The stage addresses are fields like any other (validated, documented, overridable one by one); they are
# generated from the vocabulary so that adding a stage adds its setting.
_StageAddresses = create_model("_StageAddresses", __base__=BaseSettings, **_stage_address_fields())


class Settings(_StageAddresses):  # type: ignore[misc, valid-type]
    """Each field's docstring is its description (the settings table's "meaning" column)."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX,
        env_ignore_empty=True,  # VTON_X= (set but empty) means the default, as an unset variable does
        frozen=True,
        populate_by_name=True,  # tests and callers pass s3_access_key=...; the environment uses the alias
        extra="ignore",  # VTON_LOG_LEVEL, VTON_MODELS_DIR...: the same environment carries other processes' settings
        use_attribute_docstrings=True,
    )

    http_host: str = "127.0.0.1"
    """Address the HTTP API listens on"""
    http_port: Port = API_PORT
    """Port of the HTTP API"""
    data_dir: Path = Path("~/.local/share/vton")
    """Where the SQLite job database lives when no database URL is set"""
    database_url: str | None = None
    """SQLAlchemy URL of the job database, e.g. `postgresql+psycopg://user:pw@host/db`; unset: a SQLite file
    `jobs.db` in the data directory"""
    s3_endpoint: str | None = None
    """URL of the S3 server; unset: AWS S3"""
    s3_public_endpoint: str | None = None
    """The S3 URL clients reach when it differs from ours (a cluster's ingress): presigned URLs are signed for
    this host"""
    s3_bucket: Annotated[str, Field(min_length=3, max_length=63)] = "vton"
    """Bucket of inputs, artifacts, results"""
    s3_region: Annotated[str, Field(min_length=1)] = "us-east-1"
    """Region the bucket is signed for"""
    s3_access_key: str | None = Field(None, validation_alias="AWS_ACCESS_KEY_ID")
    """S3 access key; unset: boto3's own chain (profiles, instance roles)"""
    s3_secret_key: SecretStr | None = Field(None, validation_alias="AWS_SECRET_ACCESS_KEY")
    """S3 secret key; unset: boto3's own chain"""
    s3_startup_wait_s: NonNegativeFloat = 30.0
    """How long startup retries creating the bucket while S3 comes up"""
    workers: NonNegativeInt = 2
    """Jobs this process runs at once; 0 accepts jobs and leaves them to other replicas"""
    stage_timeout_s: Seconds = 120.0
    """Deadline of each gRPC stage call"""
    max_working_pixels: Annotated[int, Field(ge=32 * 32)] = (
        2_400_000  # 1344x1792 at 3:4, above the networks' 1024x768
    )
    """Larger person photos go through the stages scaled down to this many pixels; the result is pasted back
    at full size"""
    max_upload_bytes: PositiveInt = 25 * 1024 * 1024
    """Largest person or garment upload"""
    url_ttl_s: Annotated[int, Field(ge=1, le=7 * 24 * 3600)] = 3600
    """Expiry of presigned URLs (SigV4 allows at most 7 days)"""
    wait_timeout_s: Seconds = 600.0
    """How long `POST /v1/tryon?wait=true` waits before answering 202"""
    job_lease_s: Seconds = 60.0
    """A running job whose worker sent no heartbeat for this long is taken over"""
    job_max_attempts: PositiveInt = 3
    """A job that stopped its worker this many times fails instead of looping"""
    readiness_timeout_s: Seconds = 2.0
    """Bound of each check behind /readyz and of the workers' health checks"""
    job_deadline_s: Seconds = 900.0
    """A job that waits this long after it was accepted for a stage or the storage that is down fails naming
    it; until then it waits in the queue and retries"""
    health_interval_s: Seconds = 1.0
    """How often the workers check the stages and the storage; no job is claimed while one is down"""
    shutdown_drain_s: NonNegativeFloat = 5.0
    """After SIGTERM the API answers 503 (readyz and new jobs) this long before it closes, so load balancers
    stop sending to it; running jobs go back to the queue at once"""
    key_pepper: Secret | None = None
    """Server-side secret every API key's stored hash is keyed with (HMAC-SHA256); required, the same on every
    replica. `vton up` makes one"""
    admin_key: Secret | None = None
    """Bearer key of the /v1/admin routes (creating, listing, revoking API keys); unset: those routes are off.
    `vton up` makes one"""
    rate_limit_per_s: PositiveFloat = 20.0
    """Requests per second each API key may make (token bucket, per replica)"""
    rate_limit_burst: PositiveInt = 60
    """Requests an API key may make at once before the per-second rate applies"""
    max_queued_jobs: PositiveInt = 1000
    """Queued jobs of all tenants beyond which POSTs answer 429"""
    max_queued_jobs_per_tenant: PositiveInt = 200
    """Queued jobs of one tenant beyond which its POSTs answer 429"""
    idempotency_window_s: Seconds = 86400.0
    """How long an `Idempotency-Key` returns the job it first created"""
    incoming_poll_s: Seconds = 10.0
    """How often each tenant's incoming-garment prefix is listed for new garments (by replicas that run
    jobs)"""
    webhook_timeout_s: Seconds = 10.0
    """Deadline of each callback delivery"""
    webhook_retry_for_s: Seconds = 3600.0
    """How long a callback that fails is retried before it is given up"""
    webhook_backoff_s: Seconds = 2.0
    """Wait before a failed callback's first retry; doubles with each retry"""
    webhook_max_backoff_s: Seconds = 300.0
    """The longest wait between two retries"""
    webhook_allowed_hosts: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated host names callbacks may go to (`*.shop.example` for a domain); unset: any host whose
    addresses are all public"""
    webhook_allowed_networks: Annotated[tuple[str, ...], NoDecode] = ()
    """Comma-separated networks (CIDR) callbacks may reach although loopback, private or link-local, e.g.
    `10.20.0.0/16`; unset: such addresses are refused"""

    @field_validator("webhook_allowed_hosts", "webhook_allowed_networks", mode="before")
    @classmethod
    def _comma_separated(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(item.strip() for item in value.split(",") if item.strip())
        return value

    @field_validator("webhook_allowed_networks")
    @classmethod
    def _networks(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for item in value:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise ValueError(f"{item!r} is not a network such as 10.0.0.0/8 or fd00::/8") from None
        return value

    @field_validator("data_dir")
    @classmethod
    def _expand_home(cls, value: Path) -> Path:
        return value.expanduser()

    @property
    def resolved_database_url(self) -> str:
        return self.database_url or f"sqlite:///{self.data_dir / 'jobs.db'}"

    @property
    def stage_addrs(self) -> dict[str, str]:
        return {stage: getattr(self, f"{stage}_addr") for stage in STAGES}


class SettingsError(ValueError):
    """A setting has a value the orchestrator cannot use; the message names each variable and its value."""


def env_name(field: str) -> str:
    """The environment variable of a settings field."""
    alias = Settings.model_fields[field].validation_alias
    return alias if isinstance(alias, str) else ENV_PREFIX + field.upper()


def load_settings() -> Settings:
    """Settings from the environment, or SettingsError listing every bad variable."""
    try:
        return Settings()
    except ValidationError as exc:
        by_name = {name: env_name(name) for name in Settings.model_fields}
        by_name |= {env: env for env in by_name.values()}
        problems = [
            f"{by_name.get(str(err['loc'][0]), err['loc'][0])}={err['input']!r}: {err['msg']}"
            for err in exc.errors()
        ]
        raise SettingsError("invalid settings: " + "; ".join(problems)) from None


def settings_table() -> str:
    """The Markdown table of every setting (docs/deploy.md holds a copy that a test compares)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in Settings.model_fields.items():
        default = "unset" if field.default in (None, ()) else f"`{field.default}`"
        meaning = " ".join((field.description or "").split())  # a docstring's lines, as one table cell
        rows.append(f"| `{env_name(name)}` | {default} | {meaning} |")
    return "\n".join(rows) + "\n"


if __name__ == "__main__":
    print(settings_table(), end="")
