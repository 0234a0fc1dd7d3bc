"""The landing bucket's read-back rule at unit level: prefixes, dot segments, failing closed."""

from __future__ import annotations

import pytest

from datasources.errors import ConnectionFailed
from datasources.lake import LakeAllowance, confine, named_source, s3_key, source_prefix

LANDING = "datasources-landing"
SOURCE = "src_" + "a" * 20
ALLOWED = LakeAllowance(("uploads/acme/", source_prefix("acme", "ws1", SOURCE)))


@pytest.mark.parametrize(
    "key",
    [
        "uploads/acme/orders.csv",
        "uploads/acme/2024/",
        f"org=acme/workspace=ws1/source={SOURCE}/",
        f"org=acme/workspace=ws1/source={SOURCE}/stream=orders/job=job_1/part-00000.parquet",
    ],
)
def test_keys_under_an_allowed_prefix_are_readable(key: str) -> None:
    confine(ALLOWED, LANDING, LANDING, key)


@pytest.mark.parametrize(
    "key",
    [
        "",
        "uploads/",
        "uploads/acme",  # not the folder itself: uploads/acme-evil/ shares the spelling
        "uploads/acme-evil/x.csv",
        "uploads/globex/x.csv",
        "uploads/acme/../globex/x.csv",
        "uploads/acme/./x.csv",
        "uploads/acme//x.csv",
        "org=acme/",
        "org=acme/workspace=ws1/",
        f"org=acme/workspace=ws1/source={SOURCE}",
        f"org=acme/workspace=ws2/source={SOURCE}/",
        "org=acme/workspace=ws1/source=src_" + "b" * 20 + "/",
        f"org=globex/workspace=ws1/source={SOURCE}/",
    ],
)
def test_every_other_key_of_the_landing_bucket_is_refused(key: str) -> None:
    with pytest.raises(ConnectionFailed) as raised:
        confine(ALLOWED, LANDING, LANDING, key)
    assert raised.value.stage == "permission"


def test_without_an_allowance_nothing_in_the_landing_bucket_is_readable() -> None:
    with pytest.raises(ConnectionFailed):
        confine(None, LANDING, LANDING, "uploads/acme/orders.csv")
    with pytest.raises(ConnectionFailed):  # bucket names compare without case
        confine(None, LANDING, LANDING.upper(), "uploads/acme/orders.csv")


def test_other_buckets_are_governed_by_their_own_keys() -> None:
    confine(None, LANDING, "someone-elses-bucket", "org=acme/anything")


def test_the_named_source_comes_from_the_folder_and_ids_must_be_well_formed() -> None:
    assert named_source(f"org=acme/workspace=ws1/source={SOURCE}/stream=x/") == (
        "acme",
        "ws1",
        SOURCE,
    )
    assert named_source(f"org=acme/workspace=ws1/source={SOURCE}") is None
    assert named_source("org=acme/workspace=ws#1/source=src_x/") is None
    assert s3_key("s3://b/org%3Dacme/x", "*.csv") == ("b", "org=acme/x/", True)
