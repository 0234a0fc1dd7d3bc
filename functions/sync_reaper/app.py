"""Sync reaper: fails dead-lettered continuations, and on a schedule ends stalled jobs."""

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from datasources.observability import logger, metrics
from datasources.services.reaper import dead_lettered, reap
from datasources.tracing import tracer

processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    if "Records" not in event:  # the EventBridge schedule
        return {"ended_job_ids": reap()}

    def record_handler(record: SQSRecord) -> None:
        dead_lettered(record.body, int(record.attributes.approximate_receive_count or 1))

    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )
