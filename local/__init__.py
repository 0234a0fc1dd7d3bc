"""The local stack: template.yaml run on one machine, without Docker or an AWS account.

`cfn` reads the template and evaluates its intrinsic functions, `provision` builds its
storage resources in moto, `functions` lists its functions and loads their handlers,
`context` is the Lambda context they are handed (the tests and the bench use it too),
`tokens` mints the bearer tokens the stack accepts, `gateway` serves the template's
API routes with real API Gateway proxy events, `worker_loop` feeds the SQS queues to
their functions with real SQS events, `stack` (`python -m local.stack`, what
`make dev` runs) puts them together.

The constants below are the emulated account every module works in. Standard library
only: the bench imports this package inside a cold-start measurement.
"""

from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
LOCAL_REGION = "us-east-1"
# moto's default account: ARNs built here match the ones moto returns.
LOCAL_ACCOUNT_ID = "123456789012"
DEFAULT_STACK_NAME = "datasources-local"
FAKE_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing"}
