"""`make bench`: cold start, warm latency, sync throughput and memory of the Data Sources API.

Entry point: `python -m bench.run` (see bench/run.py). Every measured leg runs in a
fresh subprocess, so one leg's imports, caches and heap never colour another's numbers.
"""
