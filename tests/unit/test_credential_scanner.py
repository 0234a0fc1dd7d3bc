"""Every stored URL, parameter and header through the credential scanner, table-driven.

Each kind of credential (userinfo, every known credential parameter name, presigned S3,
GCS and Azure SAS URLs, credential headers) is planted in each field that can hold it;
the field's one behaviour is checked: refused with a 422 saying where the credential
goes (api URLs), or moved to the source's secret, masked in the stored config and
restored for the connector (file url, api params and headers). Benign names are the
control: they stay in the clear.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
from pydantic import ValidationError

from datasources.models.common import MASK
from datasources.models.connection import (
    ApiConfig,
    FileConfig,
    merge_secrets,
    split_secrets,
)
from datasources.models.credentials import CREDENTIAL_PARAMS, url_credentials

PLANTED = "planted-Cr3dential-9d1e"
HOST = "https://files.example.com/export/data.csv"

PARAM_NAMES = [
    *sorted(CREDENTIAL_PARAMS),
    "X-Amz-Signature",
    "X-Amz-Credential",
    "X-Amz-Security-Token",
    "X-Goog-Signature",
    "AWSAccessKeyId",
    "Signature",
    "API_KEY",
    "Api-Key",
    "apiKey",
    "my_api_key",
    "oauth_token",
    "db_password",
    "client_credentials",
]
BENIGN_PARAMS = ["page", "sort", "status", "limit", "keyword", "sort_key", "tokenizer", "signed"]
BENIGN_PARAMS += ["X-Amz-Date", "X-Amz-Expires", "X-Amz-SignedHeaders", "sv", "se", "sp"]

# Whole URLs as issuers hand them out; each hides PLANTED in its credential.
URL_KINDS = {
    "userinfo": f"https://user:{PLANTED}@files.example.com/export/data.csv",
    "userinfo without password": f"https://{PLANTED}@files.example.com/export/data.csv",
    "presigned s3 (sigv4)": (
        f"{HOST}?X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential=AKIAEXAMPLE%2F20240101"
        "%2Fus-east-1%2Fs3%2Faws4_request&X-Amz-Date=20240101T000000Z&X-Amz-Expires=900"
        f"&X-Amz-Security-Token={PLANTED}-st&X-Amz-SignedHeaders=host&X-Amz-Signature={PLANTED}"
    ),
    "presigned s3 (legacy)": f"{HOST}?AWSAccessKeyId=AKIAEXAMPLE&Expires=1&Signature={PLANTED}",
    "gcs signed": (
        f"{HOST}?X-Goog-Algorithm=GOOG4-RSA-SHA256&X-Goog-Credential=svc%2F20240101"
        f"&X-Goog-Date=20240101T000000Z&X-Goog-Expires=900&X-Goog-Signature={PLANTED}"
    ),
    "azure sas": f"{HOST}?sv=2022-11-02&ss=b&srt=o&sp=r&se=2030-01-01&sig={PLANTED}",
    "fragment token": f"{HOST}#access_token={PLANTED}&expires_in=3600",
    **{f"?{name}=": f"{HOST}?page=2&{name}={PLANTED}" for name in PARAM_NAMES},
}


def api_config(**fields: Any) -> dict[str, Any]:
    return {"base_url": "https://api.example.com/v1", **fields}


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_every_credential_parameter_name_is_recognised(name: str) -> None:
    assert url_credentials(f"{HOST}?{name}=x") == [name]


@pytest.mark.parametrize("name", BENIGN_PARAMS)
def test_benign_parameter_names_are_left_alone(name: str) -> None:
    url = f"https://api.example.com/v1/orders?{name}=x"
    assert url_credentials(url) == []
    assert ApiConfig.model_validate(api_config(base_url=url)).base_url == url
    config = FileConfig.model_validate({"url": url, "format": "json"})
    assert split_secrets(config)[1] == []


API_URL_FIELDS = {
    "base_url": lambda url: api_config(base_url=url.replace(HOST, "https://api.example.com")),
    "resources[].path": lambda url: api_config(resources=[{"name": "r", "path": _path(url)}]),
    "health_path": lambda url: api_config(health_path=_path(url)),
}
# A path has no userinfo: those kinds apply to base_url only.
API_URL_CASES = [
    (field, kind)
    for field in API_URL_FIELDS
    for kind in sorted(URL_KINDS)
    if field == "base_url" or not kind.startswith("userinfo")
]


@pytest.mark.parametrize(("field", "kind"), API_URL_CASES)
def test_api_urls_with_credentials_are_refused_with_where_to_put_them(
    field: str, kind: str
) -> None:
    with pytest.raises(ValidationError) as raised:
        ApiConfig.model_validate(API_URL_FIELDS[field](URL_KINDS[kind]))
    message = str(raised.value)
    assert PLANTED not in message
    assert field in message
    where = "basic_auth" if kind.startswith("userinfo") else "api_key_in 'query'"
    assert where in message


def _path(url: str) -> str:
    return url.replace("https://files.example.com", "")


@pytest.mark.parametrize("kind", sorted(URL_KINDS))
def test_a_file_url_with_credentials_moves_to_the_secret_and_comes_back_whole(kind: str) -> None:
    url = URL_KINDS[kind]
    config = FileConfig.model_validate({"url": url, "format": "csv"})
    masked, secrets = split_secrets(config)
    assert PLANTED not in json.dumps(masked)
    assert MASK in masked["url"] and masked["url"].startswith("https://")
    assert masked["url"].split("?")[0].split("#")[0].endswith("/export/data.csv")
    assert secrets == [(["url"], url)]
    restored = merge_secrets("file", masked, secrets)
    assert isinstance(restored, FileConfig) and restored.plain_url == url


@pytest.mark.parametrize("name", PARAM_NAMES)
def test_credential_request_params_move_to_the_secret(name: str) -> None:
    params = {name: PLANTED, "status": "all", "limit": 10}
    config = ApiConfig.model_validate(api_config(resources=[{"name": "r", "params": params}]))
    masked, secrets = split_secrets(config)
    assert masked["resources"][0]["params"] == {name: MASK, "status": "all", "limit": 10}
    assert secrets == [(["resources", 0, "params", name], PLANTED)]
    restored = merge_secrets("api", masked, secrets)
    assert isinstance(restored, ApiConfig)
    assert restored.resources[0].params[name].get_secret_value() == PLANTED  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "header",
    [
        "Authorization",
        "Proxy-Authorization",
        "X-Api-Key",
        "Api-Key",
        "Cookie",
        "X-Auth-Token",
        "X-Session-Token",
        "X-Amz-Security-Token",
        "X-Client-Secret",
        "X-Password",
        "X-Signature",
        "X-Credential",
    ],
)
def test_credential_headers_move_to_the_secret(header: str) -> None:
    headers = {header: PLANTED, "Accept": "application/json", "X-Request-Source": "etl"}
    masked, secrets = split_secrets(ApiConfig.model_validate(api_config(headers=headers)))
    assert masked["headers"] == {
        header: MASK,
        "Accept": "application/json",
        "X-Request-Source": "etl",
    }
    assert secrets == [(["headers", header], PLANTED)]
