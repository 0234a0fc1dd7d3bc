"""The end of a function's init (Lambda's, once per execution environment)."""

from __future__ import annotations

import gc

from datasources import aws


def end_init(*services: str) -> None:
    """Create the function's AWS clients now, then hand the heap back to the collector.

    Each handler module turns the cyclic garbage collector off before its imports: init
    allocates a great many objects (pydantic schemas, Powertools, botocore's service
    models) and none of them is garbage, yet the collector walks them again and again,
    about a sixth of a light function's cold start (make bench). `gc.freeze()` then
    moves everything init made out of the collector's sight, so requests do not pay for
    it either. Clients are made here, not on the first request, as the baseline does.
    """
    for service in services:
        aws.client(service)
    gc.freeze()
    gc.enable()
