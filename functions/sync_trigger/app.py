"""Trigger queue consumer: starts the syncs that schedules and uploads ask for."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.services.syncs import CLIENTS, preload
from datasources.services.triggers import handle_batch
from datasources.tracing import tracer

preload()  # at init: see preload()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    records = list(SQSEvent(event).records)
    metrics.add_metric(name="TriggerMessages", unit=MetricUnit.Count, value=len(records))
    retry = handle_batch(records)
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(retry)]}


end_init(*CLIENTS, "events")
