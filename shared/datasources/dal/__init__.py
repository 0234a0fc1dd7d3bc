"""The only code that talks to DynamoDB. Keys begin with the tenant.

The key layout is in docs/architecture.md, "DynamoDB keys".
"""
