"""AWS clients: botocore's own, from one session per container.

Not boto3: the service uses no boto3 resource or transfer manager, and importing boto3 costs a
cold start its own modules (s3transfer, and what that pulls in) on top of botocore's. One
session: each new session loads botocore's endpoint, partition and retry data again. Every
function that uses AWS creates its clients here, once per container (each module caches its
own client); ``AWS_ENDPOINT_URL_<SERVICE>`` still points a client elsewhere (local stack,
tests, the bench).
"""

from __future__ import annotations

from functools import cache
from typing import Any


@cache
def session():
    from botocore.session import get_session

    return get_session()


def client(service: str, **config: Any):
    """A new client of ``service`` with botocore ``Config(**config)``; callers cache it."""
    from botocore.config import Config

    return session().create_client(service, config=Config(**config))
