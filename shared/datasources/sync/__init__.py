"""The sync engine: plans work units, writes parts, checkpoints and chains via SQS."""
