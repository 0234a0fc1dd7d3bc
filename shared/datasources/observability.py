"""Powertools logger and metrics shared by every handler (service name from env).

The tracer lives in `datasources.tracing`: importing it costs ~200 ms of cold start
(the X-Ray SDK builds its clients at import), so only the functions that reach a
source use it; Lambda's active tracing still records every invocation.
"""

from __future__ import annotations

import logging

from aws_lambda_powertools import Logger, Metrics

logger = Logger()
metrics = Metrics()

# Wire-level loggers of the AWS SDK and the HTTP clients print request and response
# bodies and URLs: botocore logs CreateSecret/GetSecretValue payloads at DEBUG, httpx
# logs every URL (a query-string api key included) at INFO and httpcore the response
# headers at DEBUG. Capped at WARNING, they stay silent even when the root logger runs
# at DEBUG (e.g. Lambda's ApplicationLogLevel), so credentials never reach a log line.
WIRE_LOGGERS = ("botocore", "boto3", "s3transfer", "urllib3", "httpx", "httpcore")
for _name in WIRE_LOGGERS:
    logging.getLogger(_name).setLevel(logging.WARNING)
