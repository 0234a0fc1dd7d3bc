"""Batch calls retry what AWS left undone, after growing jittered waits, a bounded number
of times: DynamoDB's unprocessed items and keys, SQS's failed entries, S3's errors."""

from __future__ import annotations

from typing import Any

import pytest

from datasources import aws
from datasources.aws import s3, sqs
from datasources.backoff import Backoff, send_until_done
from datasources.dal.table import Table
from datasources.errors import StorageError


def test_the_waits_grow_exponentially_up_to_the_cap_with_full_jitter() -> None:
    policy = Backoff(attempts=8, base_seconds=0.1, cap_seconds=1.0)
    assert [policy.delay(n, rand=lambda: 1.0) for n in range(1, 7)] == [
        0.1,
        0.2,
        0.4,
        0.8,
        1.0,
        1.0,
    ]
    assert policy.delay(3, rand=lambda: 0.25) == pytest.approx(0.1)
    assert policy.delay(3, rand=lambda: 0.0) == 0.0


def test_what_is_left_is_sent_again_after_a_wait_until_nothing_is() -> None:
    sent: list[list[int]] = []
    waits: list[float] = []

    def send(batch: list[int]) -> list[int]:
        sent.append(batch)
        return batch[1:]  # one entry goes through per call

    left = send_until_done(send, [1, 2, 3], sleep=waits.append, rand=lambda: 1.0)
    assert left is None
    assert sent == [[1, 2, 3], [2, 3], [3]]
    assert waits == [0.05, 0.1]  # no wait before the first call


def test_attempts_are_bounded_and_what_is_still_left_is_returned() -> None:
    calls: list[list[int]] = []
    waits: list[float] = []
    left = send_until_done(
        lambda b: calls.append(b) or b, [7], policy=Backoff(attempts=3), sleep=waits.append
    )
    assert left == [7] and len(calls) == 3 and len(waits) == 2


class FakeDynamo:
    """Leaves the first item of each call unprocessed, `stubborn` calls in a row."""

    def __init__(self, stubborn: int) -> None:
        self.stubborn = stubborn
        self.calls: list[int] = []

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        requests = RequestItems["t"]
        self.calls.append(len(requests))
        if len(self.calls) <= self.stubborn:
            return {"UnprocessedItems": {"t": requests[:1]}}
        return {}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        keys = RequestItems["t"]["Keys"]
        self.calls.append(len(keys))
        if len(self.calls) <= self.stubborn:
            return {
                "Responses": {"t": keys[1:]},
                "UnprocessedKeys": {"t": {**RequestItems["t"], "Keys": keys[:1]}},
            }
        return {"Responses": {"t": keys}}


@pytest.fixture
def no_sleep(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    waits: list[float] = []
    monkeypatch.setattr("datasources.backoff.time.sleep", waits.append)
    return waits


def test_unprocessed_items_are_written_again_after_a_wait(no_sleep: list[float]) -> None:
    client = FakeDynamo(stubborn=2)
    with Table(client, "t").batch_writer() as batch:
        for i in range(3):
            batch.put_item(Item={"pk": "p", "sk": str(i)})
    assert client.calls == [3, 1, 1] and len(no_sleep) == 2


def test_items_never_processed_end_in_a_storage_error(no_sleep: list[float]) -> None:
    client = FakeDynamo(stubborn=100)
    with pytest.raises(StorageError), Table(client, "t").batch_writer() as batch:
        batch.put_item(Item={"pk": "p", "sk": "0"})
    assert len(client.calls) == Backoff().attempts


def test_unprocessed_keys_are_read_again_after_a_wait(no_sleep: list[float]) -> None:
    client = FakeDynamo(stubborn=1)
    keys = [{"pk": "p", "sk": str(i)} for i in range(3)]
    assert len(Table(client, "t").batch_get(keys)) == 3
    assert client.calls == [3, 1] and len(no_sleep) == 1


class FakeSqs:
    def __init__(self, fail_first: int, sender_fault: bool = False) -> None:
        self.fail_first = fail_first
        self.sender_fault = sender_fault
        self.batches: list[list[str]] = []

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:
        self.batches.append([e["MessageBody"] for e in Entries])
        if len(self.batches) <= self.fail_first:
            failed = {"Id": Entries[0]["Id"], "SenderFault": self.sender_fault, "Code": "x"}
            return {"Successful": [], "Failed": [failed]}
        return {"Successful": [{"Id": e["Id"]} for e in Entries], "Failed": []}


def test_failed_queue_entries_are_sent_again_and_batches_stay_within_limits(
    no_sleep: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSqs(fail_first=1)
    monkeypatch.setattr(aws, "client", lambda service: fake)
    bodies = [f"m{i}" for i in range(12)]
    sqs.send_batch("url", bodies)
    # 10 per call; the entry failed on SQS's side goes again, alone, after a wait.
    assert fake.batches == [bodies[:10], ["m0"], bodies[10:]] and len(no_sleep) == 1
    big = ["x" * 100_000] * 3  # 256 KiB per call at most
    fake.fail_first, fake.batches = 0, []
    sqs.send_batch("url", big)
    assert [len(b) for b in fake.batches] == [2, 1]


def test_a_sender_fault_is_not_retried_and_is_a_storage_error(
    no_sleep: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeSqs(fail_first=1, sender_fault=True)
    monkeypatch.setattr(aws, "client", lambda service: fake)
    with pytest.raises(StorageError):
        sqs.send_batch("url", ["a", "b"])
    assert len(fake.batches) == 1


class FakeS3:
    def __init__(self, errors_first: int) -> None:
        self.errors_first = errors_first
        self.calls: list[list[str]] = []

    def delete_objects(self, Bucket: str, Delete: dict[str, Any]) -> dict[str, Any]:
        keys = [o["Key"] for o in Delete["Objects"]]
        self.calls.append(keys)
        if len(self.calls) <= self.errors_first:
            return {"Errors": [{"Key": keys[-1], "Code": "InternalError"}]}
        return {}


def test_keys_s3_did_not_delete_are_deleted_again_after_a_wait(
    no_sleep: list[float], monkeypatch: pytest.MonkeyPatch
) -> None:
    fake = FakeS3(errors_first=1)
    monkeypatch.setattr(aws, "client", lambda service: fake)
    s3.delete_keys("b", ["k1", "k2"])
    assert fake.calls == [["k1", "k2"], ["k2"]] and len(no_sleep) == 1
    fake.errors_first, fake.calls = 100, []
    with pytest.raises(StorageError):
        s3.delete_keys("b", ["k1"])
    s3.delete_keys("b", [])  # nothing to delete: no call
    assert len(fake.calls) == Backoff().attempts
