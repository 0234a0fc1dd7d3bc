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
from datasources.models.credentials import (
    SecretUrl,
    is_credential_header,
    is_credential_param,
    refuse_url_credentials,
    url_credentials,
)


class ConfigModel(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True, hide_input_in_errors=True)


# ---------------------------------------------------------------- database


# A CA bundle can hold many roots (a cloud provider's bundle is about 170 KB); a client
# certificate or key is a few KB. Bounded so a config stays inside one request body
# (256 KiB) and one item.
MAX_CA_BUNDLE_CHARS = 192 * 1024
MAX_CLIENT_PEM_CHARS = 32 * 1024
_PEM_KEY_RE = re.compile(
    r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----.+-----END (?:[A-Z]+ )?PRIVATE KEY-----", re.S
)


def _check_pem_certificates(value: str, what: str) -> str:
    import ssl

    try:
        if not value.isascii():  # PEM is ASCII; the ssl module raises TypeError otherwise
            raise ValueError
        ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).load_verify_locations(cadata=value)
    except (ssl.SSLError, ValueError, TypeError):
        raise ValueError(f"{what} must be PEM text of one or more X.509 certificates") from None
    return value


class DatabaseConfig(ConfigModel):
    """A PostgreSQL, MySQL or MariaDB database.

    Without `engine`, the well-known ports name it; on any other port the connector asks
    the server (connectors/sql/engine_probe.py) and the source stores the answer.
    """

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
    # docs/database-types.md: the same meaning on every engine.
    ssl_mode: Literal["disable", "prefer", "require", "verify-ca", "verify-full"] | None = None
    ssl_root_cert: Annotated[str, Field(min_length=1, max_length=MAX_CA_BUNDLE_CHARS)] | None = None
    ssl_cert: Annotated[str, Field(min_length=1, max_length=MAX_CLIENT_PEM_CHARS)] | None = None
    ssl_key: SecretStr | None = None
    connect_timeout: Annotated[int, Field(ge=1, le=20)] = 10
    statement_timeout_seconds: Annotated[int, Field(ge=1, le=900)] = 300

    @field_validator("ssl_root_cert")
    @classmethod
    def _ca_bundle_is_pem(cls, value: str | None) -> str | None:
        return None if value is None else _check_pem_certificates(value, "ssl_root_cert")

    @field_validator("ssl_cert")
    @classmethod
    def _client_cert_is_pem(cls, value: str | None) -> str | None:
        return None if value is None else _check_pem_certificates(value, "ssl_cert")

    @field_validator("ssl_key")
    @classmethod
    def _client_key_is_pem(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        text = value.get_secret_value()
        # The message never repeats the value: it is a secret.
        if len(text) > MAX_CLIENT_PEM_CHARS or not _PEM_KEY_RE.search(text):
            raise ValueError(
                f"ssl_key must be a PEM private key of at most {MAX_CLIENT_PEM_CHARS} characters"
            )
        return value

    @model_validator(mode="after")
    def _infer_engine(self) -> DatabaseConfig:
        if self.engine is None:
            inferred = {5432: "postgresql", 3306: "mysql"}.get(self.port)
            if inferred is not None:
                self.engine = inferred  # type: ignore[assignment]
        if (self.ssl_key is None) != (self.ssl_cert is None):
            raise ValueError("a client certificate needs both ssl_cert and ssl_key")
        if self.ssl_mode == "disable" and (self.ssl_root_cert or self.ssl_cert):
            raise ValueError("ssl_mode 'disable' cannot use ssl_root_cert, ssl_cert or ssl_key")
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
    # Credential-looking parameters (access_token, api_key, ...) are stored as secrets.
    params: dict[str, str | int | float | bool | SecretStr] = Field(default_factory=dict)
    records_path: Annotated[str, Field(max_length=256)] | None = None
    primary_key: list[str] | None = None
    pagination: Pagination = Field(default_factory=Pagination)
    incremental: Incremental | None = None

    @field_validator("primary_key", mode="before")
    @classmethod
    def _one_key_as_list(cls, value: Any) -> Any:
        # `"primary_key": "id"` is what people write for a single-column key.
        return [value] if isinstance(value, str) else value

    @field_validator("path")
    @classmethod
    def _no_credentials_in_path(cls, value: str) -> str:
        return refuse_url_credentials(value, "resources[].path")

    @field_validator("params", mode="before")
    @classmethod
    def _secret_params(cls, value: Any) -> Any:
        # A credential sent as a query parameter belongs in Secrets Manager, not DynamoDB.
        if isinstance(value, dict):
            return {
                k: SecretStr(str(v))
                if isinstance(k, str) and is_credential_param(k) and not isinstance(v, SecretStr)
                else v
                for k, v in value.items()
            }
        return value


class BasicAuth(ConfigModel):
    username: str
    password: SecretStr


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
        return refuse_url_credentials(value, "base_url")

    @field_validator("health_path")
    @classmethod
    def _no_credentials_in_health_path(cls, value: str | None) -> str | None:
        return None if value is None else refuse_url_credentials(value, "health_path")

    @field_validator("headers", mode="before")
    @classmethod
    def _secret_headers(cls, value: Any) -> Any:
        # Headers that look like credentials are stored as secrets, never in DynamoDB.
        if isinstance(value, dict):
            return {
                k: SecretStr(v) if isinstance(v, str) and is_credential_header(k) else v
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


MAX_ENCODING_NAME = 64
ENCODING_NAME_PATTERN = r"^[A-Za-z0-9_.:-]+$"
_ENCODING_EXAMPLES = ("utf-8", "utf-16", "latin-1", "cp1252", "shift_jis")


class CsvOptions(ConfigModel):
    delimiter: Annotated[str, Field(min_length=1, max_length=1)] | None = None
    quote_char: Annotated[str, Field(min_length=1, max_length=1)] = '"'
    has_header: bool = True
    encoding: Annotated[
        str, Field(min_length=1, max_length=MAX_ENCODING_NAME, pattern=ENCODING_NAME_PATTERN)
    ] = "utf-8"
    null_values: list[str] = Field(default_factory=lambda: [""])

    @field_validator("encoding")
    @classmethod
    def _text_codec(cls, value: str) -> str:
        # Checked here so a bad name is a 422, not a LookupError in the reader. Only
        # codecs that turn bytes into text: rot13 or zlib_codec would fail mid-read, and
        # `undefined` raises on every byte.
        try:
            info = codecs.lookup(value)
        except LookupError:
            raise ValueError(f"unknown encoding (e.g. {', '.join(_ENCODING_EXAMPLES)})") from None
        if not getattr(info, "_is_text_encoding", True) or info.name == "undefined":
            raise ValueError("encoding must be a text encoding such as utf-8 or latin-1")
        return value


class FileCredentials(ConfigModel):
    """Keys for a bucket outside this account; absent means the service's own role."""

    aws_access_key_id: str
    aws_secret_access_key: SecretStr
    aws_session_token: SecretStr | None = None
    region: str | None = None


class FileConfig(ConfigModel):
    """Files on S3 (`s3://bucket/key` or a prefix with `pattern`) or one https URL."""

    # A url carrying credentials (presigned, SAS, a token, userinfo) is kept as a secret.
    url: Annotated[str, Field(min_length=6, max_length=2048)] | SecretStr
    format: Literal["csv", "tsv", "jsonl", "json", "parquet"] | None = None
    pattern: Annotated[str, Field(max_length=512)] | None = None
    csv: CsvOptions = Field(default_factory=CsvOptions)
    compression: Literal["gzip", "none"] | None = None
    credentials: FileCredentials | None = None

    @field_validator("url", mode="before")
    @classmethod
    def _known_scheme(cls, value: Any) -> Any:
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if not isinstance(value, str):
            return value
        if not (
            value.startswith("s3://") or value.startswith("https://") or value.startswith("http://")
        ):
            raise ValueError("url must start with s3:// or https://")
        if value.startswith("s3://") and any(c in urlsplit(value).netloc for c in "@:"):
            # Keys before the bucket would be stored in clear and are no bucket name.
            raise ValueError(
                "an s3 url names a bucket only (s3://bucket/key): put access keys in "
                "'credentials', which is stored as a secret"
            )
        if url_credentials(value):
            if not 6 <= len(value) <= 2048:
                raise ValueError("url must be 6 to 2,048 characters")
            return SecretUrl(value)
        return value

    @property
    def plain_url(self) -> str:
        """The url itself, credentials included (connectors call this at use)."""
        return reveal(self.url) or ""


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
    shown: list[str] = []  # what the stored config shows in each secret's place

    def collect(value: Any, path: list[PathKey]) -> None:
        if isinstance(value, SecretStr):
            secrets.append((path, value.get_secret_value()))
            shown.append(value.masked() if isinstance(value, SecretUrl) else MASK)
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
    for (path, _), display in zip(secrets, shown, strict=True):
        _set_path(as_json, path, display)
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
