"""Emulated AWS provisioned from template.yaml, for the local stack's own tests."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from moto import mock_aws

from local.provision import LocalResources, provision
from tests.support.template import TEMPLATE_PATH


@pytest.fixture
def emulated_aws(aws_credentials: None) -> Iterator[LocalResources]:
    with mock_aws():
        yield provision(template_path=TEMPLATE_PATH, secret_values={"JwtSigningSecret": "s3cr3t"})
