"""The credential scanner: what in a stored `connection_config` looks like a credential.

One rule for every field that is not a declared secret: URLs (userinfo, credential
query parameters, presigned-URL signatures), request parameters and headers. The
connection-config models apply it, each field with one behaviour (see the README's
Security section):

- api `base_url`, resource `path`, `health_path`: refused (422) with a message naming
  the field that takes the credential instead (`basic_auth`, `api_key` + `api_key_in`).
- api `headers` and `resources[].params` with a credential-looking name: moved to the
  source's secret, masked in responses.
- file `url` with any credential (presigned S3, GCS or Azure SAS URLs, userinfo, tokens):
  the whole URL is moved to the secret; responses and DynamoDB keep it with those parts
  masked.

Only names are ever reported, never values.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, quote, urlsplit, urlunsplit

from pydantic import SecretStr

from datasources.models.common import MASK

# Query parameter names that carry a credential, compared lower-case with '-' as '_'.
CREDENTIAL_PARAMS = frozenset(
    {
        "access_token",
        "refresh_token",
        "id_token",
        "auth_token",
        "token",
        "api_key",
        "apikey",
        "key",
        "secret",
        "client_secret",
        "password",
        "passwd",
        "pwd",
        "auth",
        "authorization",
        "session",
        "sessionid",
        "sig",
        "signature",
        # Presigned S3 (SigV4 and the legacy SigV2 form) and GCS signed URLs.
        "x_amz_signature",
        "x_amz_credential",
        "x_amz_security_token",
        "awsaccesskeyid",
        "x_goog_signature",
        "x_goog_credential",
    }
)
# Longer names built on the same words: `my_api_key`, `oauth_token`, `db_password`, ...
_CREDENTIAL_PARAM_SUFFIX = re.compile(
    r"(api_?key|access_?key|secret(_?key)?|password|passwd|token|signature|credentials?)\Z"
)
# Headers: any name with one of these words (Authorization, X-Api-Key, Cookie, ...).
_CREDENTIAL_HEADER = re.compile(
    r"(auth|token|key|secret|passw|cookie|session|signature|credential)", re.IGNORECASE
)


def is_credential_param(name: str) -> bool:
    """True for a query or request parameter name that carries a credential."""
    normalized = name.strip().lower().replace("-", "_")
    return normalized in CREDENTIAL_PARAMS or bool(_CREDENTIAL_PARAM_SUFFIX.search(normalized))


def is_credential_header(name: str) -> bool:
    """True for a header name that looks like it carries a credential."""
    return bool(_CREDENTIAL_HEADER.search(name))


def _query_names(text: str) -> list[str]:
    return [name for name, _ in parse_qsl(text, keep_blank_values=True)]


def url_credentials(url: str) -> list[str]:
    """What in `url` is credential-like: 'userinfo' and the offending parameter names."""
    try:
        parts = urlsplit(url)
        userinfo = "@" in parts.netloc
    except ValueError:
        return []
    found = ["userinfo"] if userinfo else []
    # The fragment too: OAuth implicit flows put `#access_token=...` there.
    for text in (parts.query, parts.fragment):
        found.extend(n for n in _query_names(text) if is_credential_param(n))
    return list(dict.fromkeys(found))


def redact_url(url: str) -> str:
    """`url` with userinfo and credential parameter values replaced by the mask."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{MASK}@{netloc.rsplit('@', 1)[1]}"

    def masked(text: str) -> str:
        pairs = parse_qsl(text, keep_blank_values=True)
        return "&".join(
            f"{quote(name, safe='')}={MASK if is_credential_param(name) else quote(value, safe='')}"
            for name, value in pairs
        )

    query = masked(parts.query) if parts.query else ""
    fragment = masked(parts.fragment) if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


class SecretUrl(SecretStr):
    """A URL kept as a secret because it carries credentials; shown with them masked."""

    def masked(self) -> str:
        return redact_url(self.get_secret_value())


def refuse_url_credentials(url: str, field: str) -> str:
    """Raise (a 422) when an api URL carries a credential, saying where it belongs."""
    found = url_credentials(url)
    if not found:
        return url
    if "userinfo" in found:
        raise ValueError(
            f"{field} must not contain a user name or password: put them in basic_auth "
            "({'username': ..., 'password': ...}), which is stored as a secret"
        )
    names = ", ".join(repr(n) for n in found)
    raise ValueError(
        f"{field} must not carry credentials in its query ({names}): put the key in "
        "api_key with api_key_in 'query' and api_key_name set to the parameter name, or "
        "in resources[].params, headers or bearer_token; those are stored as secrets"
    )
