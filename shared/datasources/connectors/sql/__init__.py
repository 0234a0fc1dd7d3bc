"""The `database` connector: PostgreSQL (psycopg 3), MySQL and MariaDB (PyMySQL).

`factory.open_database_connector` picks the engine; `base` holds the read skeleton the
engines share, `values` the Arrow and JSON conversions, `connection` TLS and message
sanitising, `engine_probe` asks a server which engine it is. Only `postgres` and
`mysql` import a driver.
"""
