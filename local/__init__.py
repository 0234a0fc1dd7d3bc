"""The local stack: template.yaml run on one machine, without Docker or an AWS account.

`provision` builds the template's storage resources in moto, `gateway` serves the
template's API routes with real API Gateway proxy events, `worker_loop` feeds the SQS
queues to their functions with real SQS events, `stack` (`python -m local.stack`,
what `make dev` runs) puts them together.
"""
