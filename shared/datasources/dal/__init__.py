"""The only code that talks to DynamoDB. Keys begin with the tenant (DESIGN §4)."""
