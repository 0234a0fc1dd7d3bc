"""One `connection_config` model per source type, and the secret split they share.

Secret values are typed `SecretStr`. `split_secrets` walks a config, replaces every
secret with the mask and returns the secrets by path, so the DynamoDB item keeps only
the masked config and Secrets Manager keeps the rest; `merge_secrets` puts them back.
"""

from __future__ import annotations

import codecs
import re
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from datasources.errors import ValidationFailed
from datasources.models.common import MASK, PathKey


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)


# ---------------------------------------------------------------- database


class DatabaseConfig(ConfigModel):
    """A PostgreSQL, MySQL or MariaDB database."""

    host: Annotated[str, Field(min_length=1, max_length=253)]
    port: Annotated[int, Field(ge=1, le=65535)]
    database: Annotated[str, Field(min_length=1, max_length=128)]
    username: Annotated[str, Field(min_length=1, max_length=128)]
    password: SecretStr
    engine: Literal["postgresql", "mysql", "mariadb"] | None = None
    db_schema: str | None = Field(default=None, alias="schema", max_length=128)
    schemas: list[Annotated[str, Field(max_length=128)]] | None = Field(default=None, max_length=50)
    tables: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=5000
    )
    exclude_tables: list[Annotated[str, Field(max_length=256)]] | None = Field(
        default=None, max_length=5000
    )
    ssl_mode: (
        Literal["disable", "allow", "prefer", "require", "verify-ca", "verify-full"] | None
    ) = None
    connect_timeout: Annotated[int, Field(ge=1, le=20)] = 10
    statement_timeout_seconds: Annotated[int, Field(ge=1, le=900)] = 300

    @model_validator(mode="after")
    def _infer_engine(self) -> DatabaseConfig:
        if self.engine is None:
            inferred = {5432: "postgresql", 3306: "mysql"}.get(self.port)
            if inferred is None:
                raise ValueError(
                    "cannot infer the database engine from port "
                    f"{self.port}: set 'engine' to postgresql, mysql or mariadb"
                )
            self.engine = inferred  # type: ignore[assignment]
        return self

    @property
    def selected_schemas(self) -> list[str] | None:
        if self.schemas:
            return list(self.schemas)
        if self.db_schema:
            return [self.db_schema]
        return None


# ---------------------------------------------------------------- api


class Pagination(ConfigModel):
    """How a resource pages. `auto` follows a Link header or an obvious next URL in the body.

    `page`: `page_param` counts up from `start_page` until an empty page. `offset`:
    `offset_param` advances by the records received, `limit_param` = `page_size` (100 when
    unset). `cursor`: the token at `cursor_path` (or a usual place such as `next_cursor`,
    `meta.next_cursor`) is sent back as `cursor_param` until it is absent. `link_header`:
    `Link: <...>; rel="next"`. `next_url`: the URL at `next_url_path` (or a usual place such
    as `next`, `links.next`). `max_pages` bounds one run so a misbehaving API cannot page
    forever.
    """

    kind: Literal["auto", "none", "page", "offset", "cursor", "link_header", "next_url"] = "auto"
    page_param: str = "page"
    start_page: int = 1
    size_param: str | None = None
    page_size: Annotated[int, Field(ge=1, le=10_000)] | None = None
    offset_param: str = "offset"
    limit_param: str = "limit"
    cursor_param: str = "cursor"
    cursor_path: str | None = None
    next_url_path: str | None = None
    max_pages: Annotated[int, Field(ge=1, le=100_000)] = 10_000


class Incremental(ConfigModel):
    """A record field that only grows, and the request parameter that filters on it.

    The committed cursor value (or `initial_value` on a first run) is sent as `param`.
    """

    cursor_field: Annotated[str, Field(min_length=1, max_length=256)]
    param: Annotated[str, Field(min_length=1, max_length=256)]
    initial_value: str | None = None


class ApiResource(ConfigModel):
    """One endpoint of the API, synced as one stream.

    `path` is joined to `base_url`. `records_path` is the dotted path of the list of
    records in the body (`.` for the whole body); absent, the connector takes the whole
    body when it is a list, else the one list-valued key (`data`, `results`, `items`, ...).
    """

    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,128}$")]
    path: Annotated[str, Field(max_length=2048)] = ""
    params: dict[str, str | int | float | bool] = Field(default_factory=dict)
    records_path: Annotated[str, Field(max_length=256)] | None = None
    primary_key: list[str] | None = None
    pagination: Pagination = Field(default_factory=Pagination)
    incremental: Incremental | None = None

    @field_validator("primary_key", mode="before")
    @classmethod
    def _one_key_as_list(cls, value: Any) -> Any:
        # `"primary_key": "id"` is what people write for a single-column key.
        return [value] if isinstance(value, str) else value


class BasicAuth(ConfigModel):
    username: str
    password: SecretStr


_SECRET_HEADER = re.compile(r"(auth|token|key|secret|password|cookie|session)", re.IGNORECASE)

# Where `api_key` goes when `api_key_name` is not given, per placement.
DEFAULT_API_KEY_NAMES = {"bearer": "Authorization", "header": "X-API-Key", "query": "api_key"}


class ApiConfig(ConfigModel):
    """An HTTP JSON API. The minimal form is `{base_url, api_key}`.

    `api_key_in` places the key: `bearer` (`Authorization: Bearer <key>`, the default),
    `header` (the header `api_key_name`, default `X-API-Key`) or `query` (the query
    parameter `api_key_name`, default `api_key`).
    """

    base_url: Annotated[str, Field(min_length=8, max_length=2048)]
    api_key: SecretStr | None = None
    api_key_in: Literal["bearer", "header", "query"] = "bearer"
    api_key_name: Annotated[str, Field(min_length=1, max_length=256)] | None = None
    basic_auth: BasicAuth | None = None
    bearer_token: SecretStr | None = None
    headers: dict[str, str | SecretStr] = Field(default_factory=dict, max_length=50)
    resources: list[ApiResource] = Field(default_factory=list, max_length=100)
    health_path: str | None = None
    timeout_seconds: Annotated[float, Field(gt=0, le=60)] = 15.0
    max_retry_wait_seconds: Annotated[float, Field(ge=0, le=600)] = 60.0

    @field_validator("base_url")
    @classmethod
    def _http_scheme(cls, value: str) -> str:
        parsed = urlsplit(value)
        if parsed.scheme not in ("https", "http") or not parsed.hostname:
            raise ValueError("base_url must be an https URL with a host")
        return value

    @field_validator("headers", mode="before")
    @classmethod
    def _secret_headers(cls, value: Any) -> Any:
        # Headers that look like credentials are stored as secrets, never in DynamoDB.
        if isinstance(value, dict):
            return {
                k: SecretStr(v) if isinstance(v, str) and _SECRET_HEADER.search(k) else v
                for k, v in value.items()
            }
        return value

    @model_validator(mode="after")
    def _unique_resource_names(self) -> ApiConfig:
        names = [resource.name for resource in self.resources]
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"resource names must be unique: {', '.join(duplicates)}")
        return self

    @property
    def effective_api_key_name(self) -> str:
        """The header or query parameter that carries `api_key`."""
        return self.api_key_name or DEFAULT_API_KEY_NAMES[self.api_key_in]


# ---------------------------------------------------------------- file


class CsvOptions(ConfigModel):
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = None
    quote_char: Annotated[str, Field(min_length=1, max_length=1)] = '"'
    has_header: bool = True
    encoding: Annotated[str, Field(min_length=1, max_length=64)] = "utf-8"
    null_values: list[str] = Field(default_factory=lambda: [""])

    @field_validator("encoding")
    @classmethod
    def _text_encoding(cls, value: str) -> str:
        # Files are transcoded through Python's codec of this name: an unknown one, or a
        # codec that is not bytes-to-text (rot13, zlib_codec, base64), is a config error.
        try:
            codec = codecs.lookup(value)
        except LookupError:
            raise ValueError("unknown encoding: use a name such as utf-8 or latin-1") from None
        if not getattr(codec, "_is_text_encoding", True):
            raise ValueError("not a text encoding: use a name such as utf-8 or latin-1")
        return value


class FileCredentials(ConfigModel):
    """Keys for a bucket outside this account; absent means the service's own role."""

    aws_access_key_id: str
    aws_secret_access_key: SecretStr
    aws_session_token: SecretStr | None = None
    region: str | None = None


class FileConfig(ConfigModel):
    """Files on S3 (`s3://bucket/key` or a prefix with `pattern`) or one https URL."""

    url: Annotated[str, Field(min_length=6, max_length=2048)]
    format: Literal["csv", "tsv", "jsonl", "json", "parquet"] | None = None
    pattern: Annotated[str, Field(max_length=512)] | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    compression: Literal["gzip", "none"] | None = None
    credentials: FileCredentials | None = None

    @field_validator("url")
    @classmethod
    def _known_scheme(cls, value: str) -> str:
        if not (
            value.startswith("s3://") or value.startswith("https://") or value.startswith("http://")
        ):
            raise ValueError("url must start with s3:// or https://")
        return value


CONFIG_MODELS: dict[str, type[ConfigModel]] = {
    "database": DatabaseConfig,
    "api": ApiConfig,
    "file": FileConfig,
}


def parse_connection_config(source_type: str, config: dict[str, Any]) -> ConfigModel:
    """Validate a raw `connection_config` for its type (used where the type is not a tag)."""
    model = CONFIG_MODELS.get(source_type)
    if model is None:
        raise ValidationFailed(f"unknown source type '{source_type}'")
    return model.model_validate(config)


# ---------------------------------------------------------------- secrets


def split_secrets(config: ConfigModel) -> tuple[dict[str, Any], list[tuple[list[PathKey], str]]]:
    """Return (the config as JSON with every secret masked, [(path, secret value), ...])."""
    secrets: list[tuple[list[PathKey], str]] = []

    def collect(value: Any, path: list[PathKey]) -> None:
        if isinstance(value, SecretStr):
            secrets.append((path, value.get_secret_value()))
        elif isinstance(value, dict):
            for k, v in value.items():
                collect(v, [*path, k])
        elif isinstance(value, list):
            for i, v in enumerate(value):
                collect(v, [*path, i])

    # The python-mode dump keeps SecretStr objects, so it tells where the secrets are;
    # the JSON-mode dump is what gets stored, with the mask at each of those places.
    collect(config.model_dump(mode="python", by_alias=True, exclude_none=True), [])
    as_json = config.model_dump(mode="json", by_alias=True, exclude_none=True)
    for path, _ in secrets:
        _set_path(as_json, path, MASK)
    return as_json, secrets


def merge_secrets(
    source_type: str, masked: dict[str, Any], secrets: list[tuple[list[PathKey], str]]
) -> ConfigModel:
    """Rebuild the full config from the masked item and the values from Secrets Manager."""
    import copy

    full = copy.deepcopy(masked)
    for path, value in secrets:
        _set_path(full, list(path), value)
    return parse_connection_config(source_type, full)


def _set_path(target: Any, path: list[PathKey], value: Any) -> None:
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value


def reveal(value: SecretStr | str | None) -> str | None:
    """The plain value of a field that may be a secret (connectors call this at use)."""
    if isinstance(value, SecretStr):
        return value.get_secret_value()
    return value
