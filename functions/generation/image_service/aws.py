"""AWS clients: botocore's own, from one session per container.

Not boto3: the service uses no boto3 resource or transfer manager, and importing boto3 costs a
cold start its own modules (s3transfer, and what that pulls in) on top of botocore's. One
session: each new session loads botocore's endpoint, partition and retry data again. Every
client the service uses is made here, once per container, with its settings from
``CLIENT_CONFIG`` (one table, so a new container — ``forget`` — and the SnapStart hook that
makes them all in advance cannot miss one); ``AWS_ENDPOINT_URL_<SERVICE>`` still points a
client elsewhere (local stack, tests, the bench). Importing this module imports no botocore:
that happens with the session.
"""

from __future__ import annotations

import threading
from functools import cache
from typing import Any

# Each client's botocore ``Config``, by botocore's service name.
CLIENT_CONFIG: dict[str, dict[str, Any]] = {
    # Job records and the usage ledger (one client serves both).
    "dynamodb": {
        "connect_timeout": 3,
        "read_timeout": 5,
        "retries": {"max_attempts": 4, "mode": "standard"},
    },
    "s3": {
        "signature_version": "s3v4",
        # The body is not hashed into the signature (S3's UNSIGNED-PAYLOAD, what botocore
        # does by itself over HTTPS with a checksum): every upload carries its CRC32, which
        # S3 checks, so hashing a ~2 MB image again would only cost time and memory.
        "s3": {"payload_signing_enabled": False},
        "connect_timeout": 5,
        "read_timeout": 30,
        "retries": {"max_attempts": 3, "mode": "standard"},
    },
    # The deployed job runner: starts one execution per job.
    "stepfunctions": {
        "connect_timeout": 3,
        "read_timeout": 5,
        "retries": {"max_attempts": 3, "mode": "standard"},
    },
    # The catalog overlay's reader.
    "ssm": {
        "connect_timeout": 2,
        "read_timeout": 3,
        "retries": {"max_attempts": 2, "mode": "standard"},
    },
    # Provider keys under SnapStart. Short timeouts and one retry, like the overlay's SSM
    # client: a request waits on this read, and the ``SecretCache`` decides when to try again.
    "secretsmanager": {
        "connect_timeout": 2,
        "read_timeout": 3,
        "retries": {"max_attempts": 2, "mode": "standard"},
    },
}


@cache
def session():
    from botocore.session import get_session

    return get_session()


_clients: dict[str, Any] = {}
# A request's threads (parallel uploads of n images) may ask for a client first at the same
# moment; a botocore session is not safe to make clients from in parallel, and two would be made.
_clients_lock = threading.Lock()


def client(service: str):
    """The container's one client of ``service`` (a key of ``CLIENT_CONFIG``), made on first use."""
    with _clients_lock:
        made = _clients.get(service)
        if made is None:
            from botocore.config import Config

            config = Config(**CLIENT_CONFIG[service])
            made = _clients[service] = session().create_client(service, config=config)
        return made


def forget() -> None:
    """A new container, as far as AWS goes: no session, no client, no credentials (the
    session holds them, and how it looks them up); the next ``client`` starts over."""
    with _clients_lock:
        _clients.clear()
        session.cache_clear()


def failure_name(error: Exception) -> str:
    """What went wrong in an AWS call, without the message (it may name an ARN or an account):
    the AWS error code (e.g. ``ThrottlingException``) or the kind of failure
    (``EndpointConnectionError``)."""
    response = getattr(error, "response", None)  # botocore's ClientError: the parsed answer
    code = response.get("Error", {}).get("Code") if isinstance(response, dict) else None
    return code if isinstance(code, str) and code else type(error).__name__


# --- credentials looked up on first use (SnapStart) ---------------------------------------------


def look_up_credentials_on_first_use() -> None:
    """From now on the session's clients look their credentials up when they first sign a
    request, not when they are made. botocore otherwise runs its credential chain in
    ``create_client``; under SnapStart that chain ends at Lambda's container credentials
    endpoint — a network call before the snapshot, and credentials kept in it. Call it before
    the session's first client; the chain itself (which providers, in which order) is
    botocore's, unchanged."""
    current = session()
    chain = current.get_component("credential_provider")
    if not isinstance(chain, _LookUpOnFirstUse):
        current.register_component("credential_provider", _LookUpOnFirstUse(chain))


def forget_credentials() -> None:
    """Credentials looked up so far are dropped; the next signed request looks them up again
    (after a SnapStart restore: they belong to the environment that looked them up)."""
    chain = session().get_component("credential_provider")
    if isinstance(chain, _LookUpOnFirstUse):
        chain.credentials.forget()


class _LookUpOnFirstUse:
    """The session's credential resolver: hands out one ``_CredentialsOnFirstUse`` (the
    session asks once, and its clients share what it got)."""

    def __init__(self, chain) -> None:
        self.credentials = _CredentialsOnFirstUse(chain)

    def load_credentials(self) -> _CredentialsOnFirstUse:
        return self.credentials


class _CredentialsOnFirstUse:
    """Stands in for botocore's ``Credentials`` and runs ``chain`` (botocore's resolver) the
    first time one of them is read. botocore reads a client's credentials through ``method``,
    ``get_deferred_property`` and ``get_frozen_credentials`` (when signing); refreshable
    credentials refresh themselves as before."""

    method = "looked-up-on-first-use"

    def __init__(self, chain) -> None:
        self._chain = chain
        self._found = None
        self._lock = threading.Lock()

    def _credentials(self):
        with self._lock:
            if self._found is None:
                found = self._chain.load_credentials()
                if found is None:
                    from botocore.exceptions import NoCredentialsError

                    raise NoCredentialsError()
                self._found = found
            return self._found

    def forget(self) -> None:
        with self._lock:
            self._found = None

    def get_frozen_credentials(self):
        return self._credentials().get_frozen_credentials()

    def get_deferred_property(self, name: str):
        return lambda: getattr(self._credentials(), name, None)

    @property
    def access_key(self) -> str:
        return self._credentials().access_key

    @property
    def secret_key(self) -> str:
        return self._credentials().secret_key

    @property
    def token(self) -> str | None:
        return self._credentials().token

    @property
    def account_id(self) -> str | None:
        return getattr(self._credentials(), "account_id", None)
