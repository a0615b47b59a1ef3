"""Settings for every agentline process, read from the environment.

One definition per setting: the services, the chart, the doctor and the docs all use these
classes. Common settings use the names LiveKit tooling already reads (``LIVEKIT_URL`` …);
per-service settings carry the service's prefix (``TOKEN_API_``, ``DISPATCHER_``,
``AGENT_WORKER_``).
"""

from __future__ import annotations

import sys
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal, Self, TypeVar

from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

DEFAULT_AGENT_NAME = "travel-assistant"
# Development defaults. Production refuses to start with any of them.
DEV_LIVEKIT_URL = "ws://127.0.0.1:7880"
DEV_LIVEKIT_API_KEY = "devkey"
DEV_LIVEKIT_API_SECRET = "agentline-dev-secret-0123456789abcdef"
DEV_API_KEY = "dev-api-key"


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


def _common(name: str, *more: str) -> Any:
    """An alias that ignores the service prefix: the variable is shared by all services."""
    return AliasChoices(name, *more)


class CommonSettings(BaseSettings):
    """Settings every service reads. Subclasses set ``env_prefix``."""

    model_config = SettingsConfigDict(
        env_prefix="AGENTLINE_", extra="ignore", case_sensitive=False, populate_by_name=True
    )
    service_name: ClassVar[str] = "agentline"
    # Variables whose default is a development value; production refuses the default.
    dev_only_defaults: ClassVar[tuple[str, ...]] = (
        "livekit_url",
        "livekit_api_key",
        "livekit_api_secret",
    )

    environment: Environment = Field(
        default=Environment.DEVELOPMENT,
        validation_alias=_common("AGENTLINE_ENV"),
        description="development, test or production; production refuses default secrets",
    )
    redis_url: str = Field(
        default="redis://127.0.0.1:6379/0",
        validation_alias=_common("REDIS_URL"),
        description="Redis (7.0+) URL; in development an embedded server starts when none answers",
    )
    redis_namespace: str = Field(
        default="agentline",
        validation_alias=_common("AGENTLINE_REDIS_NAMESPACE"),
        pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
        description="Hash tag of every Redis key ({namespace}:…); one namespace per deployment",
    )
    livekit_url: str = Field(
        default=DEV_LIVEKIT_URL,
        validation_alias=_common("LIVEKIT_URL"),
        description="LiveKit server URL (ws:// or wss://, http(s):// accepted)",
    )
    livekit_api_key: str = Field(
        default=DEV_LIVEKIT_API_KEY,
        validation_alias=_common("LIVEKIT_API_KEY"),
        min_length=1,
        description="LiveKit API key",
    )
    livekit_api_secret: SecretStr = Field(
        default=SecretStr(DEV_LIVEKIT_API_SECRET),
        validation_alias=_common("LIVEKIT_API_SECRET"),
        description="LiveKit API secret",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="INFO", validation_alias=_common("LOG_LEVEL"), description="Log level"
    )
    log_format: Literal["auto", "json", "console"] = Field(
        default="auto",
        validation_alias=_common("LOG_FORMAT"),
        description="auto: JSON in production, readable console output otherwise",
    )

    @field_validator("livekit_url")
    @classmethod
    def _check_livekit_url(cls, value: str) -> str:
        if not value.startswith(("ws://", "wss://", "http://", "https://")):
            raise ValueError("must start with ws://, wss://, http:// or https://")
        return value.rstrip("/")

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _refuse_dev_defaults_in_production(self) -> Self:
        if self.environment is not Environment.PRODUCTION:
            return self
        for name in self.dev_only_defaults:
            if name not in self.model_fields_set:
                env = env_name(type(self), name)
                raise ValueError(
                    f"{env} must be set in production (the default is for development)"
                )
        return self

    @property
    def livekit_http_url(self) -> str:
        """The LiveKit URL with an http(s) scheme, for Twirp calls."""
        return self.livekit_url.replace("wss://", "https://", 1).replace("ws://", "http://", 1)

    @property
    def livekit_ws_url(self) -> str:
        """The LiveKit URL with a ws(s) scheme, for clients and workers."""
        return self.livekit_url.replace("https://", "wss://", 1).replace("http://", "ws://", 1)

    @property
    def is_production(self) -> bool:
        return self.environment is Environment.PRODUCTION


class TokenApiSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="TOKEN_API_", extra="ignore", populate_by_name=True
    )
    service_name: ClassVar[str] = "token-api"
    dev_only_defaults: ClassVar[tuple[str, ...]] = (*CommonSettings.dev_only_defaults, "api_keys")

    host: str = Field(default="0.0.0.0", description="Bind address")
    port: int = Field(default=8080, ge=1, le=65535, description="HTTP port")
    workers: int = Field(default=1, ge=1, le=64, description="uvicorn worker processes")
    api_keys: Annotated[list[SecretStr], NoDecode] = Field(
        default=[SecretStr(DEV_API_KEY)],
        description="Comma-separated API keys the frontend may use (stored hashed in memory)",
    )
    public_livekit_url: str | None = Field(
        default=None, description="LiveKit URL handed to clients (defaults to LIVEKIT_URL)"
    )
    default_agent_name: str = Field(
        default=DEFAULT_AGENT_NAME, description="agent_name used when a session names none"
    )
    allowed_agent_names: Annotated[list[str], NoDecode] = Field(
        default=[DEFAULT_AGENT_NAME], description="Comma-separated agent names callers may request"
    )
    room_prefix: str = Field(default="travel-room-", description="Prefix of generated room names")
    token_ttl_seconds: int = Field(default=3600, ge=60, le=86400, description="Default token TTL")
    max_token_ttl_seconds: int = Field(
        default=6 * 3600, ge=60, le=7 * 86400, description="Upper bound of a token TTL"
    )
    max_metadata_bytes: int = Field(default=4096, ge=0, le=65536, description="Metadata size cap")
    max_body_bytes: int = Field(default=16384, ge=1024, description="Request body size cap")
    rate_limit_per_minute: int = Field(
        default=600, ge=0, description="Requests per minute per API key (0: no limit)"
    )
    cors_allow_origins: Annotated[list[str], NoDecode] = Field(
        default=[], description="Comma-separated CORS origins"
    )
    sse_heartbeat_seconds: float = Field(default=15.0, gt=0, description="SSE comment heartbeat")

    @field_validator("api_keys", "allowed_agent_names", "cors_allow_origins", mode="before")
    @classmethod
    def _split_commas(cls, value: Any) -> Any:
        if isinstance(value, str):
            return [item.strip() for item in value.split(",") if item.strip()]
        return value


class RegistryPolicy(StrEnum):
    FAIL = "fail"  # no live worker for the agent_name: fail at once
    WAIT = "wait"  # wait a bounded time for one to register
    ADVISE = "advise"  # registry is not authoritative (foreign workers); only advise


class DispatcherSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="DISPATCHER_", extra="ignore", populate_by_name=True
    )
    service_name: ClassVar[str] = "dispatcher"

    host: str = Field(default="0.0.0.0", description="Bind address")
    port: int = Field(default=8081, ge=1, le=65535, description="HTTP port (webhooks, health)")
    consumer_name: str = Field(
        default="",
        validation_alias=AliasChoices("DISPATCHER_CONSUMER_NAME", "HOSTNAME"),
        description="Consumer name in the group; defaults to the pod name (HOSTNAME)",
    )
    max_in_flight: int = Field(
        default=64,
        ge=1,
        description="Dispatch steps a replica runs at once (beyond it requests wait in the stream)",
    )
    registry_policy: RegistryPolicy = Field(
        default=RegistryPolicy.FAIL, description="fail, wait or advise when no worker is registered"
    )
    registry_wait_seconds: float = Field(default=10.0, ge=0, description="Wait bound for 'wait'")
    assign_timeout_seconds: float = Field(default=10.0, gt=0, description="dispatched → assigned")
    join_timeout_seconds: float = Field(default=15.0, gt=0, description="assigned → joined")
    audio_timeout_seconds: float = Field(default=20.0, gt=0, description="joined → speaking")
    max_attempts: int = Field(default=3, ge=1, le=20, description="Dispatch attempts per request")
    retry_backoff_seconds: float = Field(default=0.5, ge=0, description="First retry backoff")
    livekit_timeout_seconds: float = Field(default=5.0, gt=0, description="LiveKit call timeout")
    poll_interval_seconds: float = Field(default=1.0, gt=0, description="ListDispatch polling")
    claim_idle_seconds: float = Field(default=30.0, gt=0, description="XAUTOCLAIM min idle")
    max_deliveries: int = Field(default=5, ge=1, description="Deliveries before dead-letter")
    webhook_api_key: str | None = Field(
        default=None, description="Key LiveKit signs webhooks with (defaults to LIVEKIT_API_KEY)"
    )
    webhook_api_secret: SecretStr | None = Field(
        default=None, description="Its secret (defaults to LIVEKIT_API_SECRET)"
    )
    admission_enabled: bool = Field(default=True, description="Capacity-aware admission")
    max_wait_seconds: float = Field(default=120.0, gt=0, description="Bound on waiting for a slot")
    drain_seconds: float = Field(default=20.0, ge=0, description="SIGTERM grace for in-flight work")


class AgentWorkerSettings(CommonSettings):
    model_config = SettingsConfigDict(
        env_prefix="AGENT_WORKER_", extra="ignore", populate_by_name=True
    )
    service_name: ClassVar[str] = "agent-worker"

    host: str = Field(default="0.0.0.0", description="Bind address")
    port: int = Field(default=8082, ge=1, le=65535, description="HTTP port (health, metrics)")
    agent_name: str = Field(
        default=DEFAULT_AGENT_NAME, min_length=1, description="agent_name registered with LiveKit"
    )
    agent_identity: str = Field(
        default="agent-attar-travel-assistant", description="Agent participant identity"
    )
    agent_display_name: str = Field(default="Travel assistant", description="Participant name")
    max_jobs: int = Field(default=4, ge=1, le=256, description="Concurrent jobs (capacity)")
    idle_processes: int = Field(default=4, ge=0, le=64, description="Pre-warmed job processes")
    drain_timeout_seconds: float = Field(default=60.0, ge=0, description="SIGTERM drain bound")
    join_timeout_seconds: float = Field(
        default=20.0, gt=0, description="A job's room connect bound before it is failed (join)"
    )
    caller_wait_seconds: float = Field(
        default=120.0, gt=0, description="A job whose caller never joins ends after this"
    )
    heartbeat_seconds: float = Field(default=2.0, gt=0, description="Registry heartbeat period")
    openai_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=_common("OPENAI_API_KEY"),
        description="OpenAI key; unset: the local Realtime stand-in is used",
    )
    openai_base_url: str | None = Field(
        default=None,
        validation_alias=_common("OPENAI_BASE_URL", "AGENT_WORKER_OPENAI_BASE_URL"),
        description="Realtime API base URL (stand-in or proxy)",
    )
    voice: str = Field(default="alloy", description="Realtime voice")
    temperature: float = Field(default=0.8, ge=0.6, le=1.2, description="Realtime temperature")


SettingsT = TypeVar("SettingsT", bound=CommonSettings)


def env_name(settings_cls: type[CommonSettings], field: str) -> str:
    """The environment variable a field is read from."""
    info = settings_cls.model_fields[field]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        first = alias.choices[0]
        return str(first).upper()
    if isinstance(alias, str):
        return alias.upper()
    prefix = settings_cls.model_config.get("env_prefix", "")
    return f"{prefix}{field}".upper()


def describe_errors(settings_cls: type[CommonSettings], error: ValidationError) -> list[str]:
    """One line per bad setting, naming its environment variable and what is wrong."""
    lines: list[str] = []
    for item in error.errors():
        loc = [str(part) for part in item["loc"]]
        field = loc[0] if loc else ""
        if field in settings_cls.model_fields:
            name = env_name(settings_cls, field)
        elif field:
            name = field.upper()
        else:
            name = "settings"
        message = item["msg"].removeprefix("Value error, ")
        if not field:
            lines.append(message)
        else:
            lines.append(f"{name}: {message}")
    return lines


def load_settings(settings_cls: type[SettingsT], **overrides: Any) -> SettingsT:
    """Read settings; on a bad value print one line per problem and exit with status 2."""
    try:
        return settings_cls(**overrides)
    except ValidationError as error:
        for line in describe_errors(settings_cls, error):
            print(f"{settings_cls.service_name}: invalid setting: {line}", file=sys.stderr)
        raise SystemExit(2) from None
