"""SQS worker: continues sync units chunk by chunk and chains itself through the queue."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord

from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.syncs import CLIENTS, preload
from datasources.services.worker import continue_unit
from datasources.tracing import tracer

preload()  # at init: see preload()

# A failed record is retried by SQS; the batch (of one) must not raise as a whole, or
# Lambda would treat it as an invocation error instead of a partial batch failure.
processor = BatchProcessor(event_type=EventType.SQS, raise_on_entire_batch_failure=False)


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    def record_handler(record: SQSRecord) -> None:
        continue_unit(record, context)

    return process_partial_response(
        event=event, record_handler=record_handler, processor=processor, context=context
    )


end_init(*CLIENTS)
