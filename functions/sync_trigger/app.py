"""Trigger queue consumer: starts the syncs that schedules and uploads ask for."""

import gc

gc.disable()  # until end_init(): init makes no garbage (datasources.runtime)

import json

from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.data_classes import SQSEvent

from datasources.observability import logger, metrics
from datasources.runtime import end_init
from datasources.sync.engine import CLIENTS, preload
from datasources.sync.triggers import TriggerMessage, group_size, handle_messages, retry_later
from datasources.tracing import tracer

preload()  # at init: see preload()


@logger.inject_lambda_context(clear_state=True)
@metrics.log_metrics
@tracer.capture_lambda_handler
def handler(event: dict, context: object) -> dict:
    records = list(SQSEvent(event).records)
    messages = []
    for record in records:
        try:
            body = json.loads(record.body)
        except json.JSONDecodeError:
            body = {}
        messages.append(TriggerMessage(record.message_id, body if isinstance(body, dict) else {}))
    logger.info("trigger batch", extra={"messages": len(messages), "kinds": group_size(messages)})
    metrics.add_metric(name="TriggerMessages", unit=MetricUnit.Count, value=len(messages))
    retry = handle_messages(messages)
    retry_later([r for r in records if r.message_id in retry])
    return {"batchItemFailures": [{"itemIdentifier": message_id} for message_id in sorted(retry)]}


end_init(*CLIENTS, "events")
