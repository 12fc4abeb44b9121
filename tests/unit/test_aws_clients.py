"""The AWS clients' one table (``image_service.aws``): each client's settings, one client per
service per container, and ``forget`` as a new container. Offline: making a client calls no AWS."""

from __future__ import annotations

import threading
import time

import pytest

from image_service import aws

# What each module's own getter gave its client before the table: a change here is a change
# of behaviour (timeouts a request waits on, attempts it pays for), not a refactor.
SETTINGS_BEFORE_THE_TABLE = {
    "dynamodb": {"connect_timeout": 3, "read_timeout": 5, "max_attempts": 4},
    "s3": {"connect_timeout": 5, "read_timeout": 30, "max_attempts": 3},
    "stepfunctions": {"connect_timeout": 3, "read_timeout": 5, "max_attempts": 3},
    "ssm": {"connect_timeout": 2, "read_timeout": 3, "max_attempts": 2},
    "secretsmanager": {"connect_timeout": 2, "read_timeout": 3, "max_attempts": 2},
}


@pytest.fixture(autouse=True)
def new_container():
    aws.forget()
    yield
    aws.forget()


def test_the_table_has_a_client_for_each_service_the_code_uses():
    assert set(aws.CLIENT_CONFIG) == set(SETTINGS_BEFORE_THE_TABLE)


@pytest.mark.parametrize("service", sorted(SETTINGS_BEFORE_THE_TABLE))
def test_each_client_has_the_timeouts_and_retries_its_module_gave_it(service):
    expected = SETTINGS_BEFORE_THE_TABLE[service]
    config = aws.client(service).meta.config

    assert config.connect_timeout == expected["connect_timeout"]
    assert config.read_timeout == expected["read_timeout"]
    # botocore counts the first attempt too: ``max_attempts`` retries are that many plus one
    assert config.retries == {
        "mode": "standard",
        "total_max_attempts": expected["max_attempts"] + 1,
    }


def test_the_s3_client_signs_with_sigv4_and_does_not_hash_the_payload():
    config = aws.client("s3").meta.config

    assert config.signature_version == "s3v4"
    assert config.s3 == {"payload_signing_enabled": False}


@pytest.mark.parametrize("service", sorted(set(SETTINGS_BEFORE_THE_TABLE) - {"s3"}))
def test_only_the_s3_client_has_s3_settings(service):
    assert aws.client(service).meta.config.s3 is None


def test_a_service_has_one_client_per_container_from_one_session():
    first = aws.client("dynamodb")

    assert aws.client("dynamodb") is first
    assert aws.client("s3") is not first
    assert aws.session() is aws.session()


def test_forget_is_a_new_container_session_clients_and_how_credentials_are_looked_up():
    aws.look_up_credentials_on_first_use()  # what SnapStart's hook does to the session
    old_session, old_client = aws.session(), aws.client("ssm")
    lookup = type(old_session.get_component("credential_provider"))

    aws.forget()

    assert aws.session() is not old_session
    assert aws.client("ssm") is not old_client
    assert not isinstance(aws.session().get_component("credential_provider"), lookup)
    assert aws.client("ssm").meta.config.read_timeout == 3  # still from the table


def test_threads_asking_for_a_new_client_at_once_get_one_client_made_once(monkeypatch):
    """A request's parallel uploads ask for the S3 client together on a new container."""
    made = []
    create_client = type(aws.session()).create_client
    both_asking = threading.Barrier(2)

    def slow_create_client(self, service, **kwargs):
        made.append(service)
        time.sleep(0.05)  # long enough for the other thread to ask in the meantime
        return create_client(self, service, **kwargs)

    monkeypatch.setattr(type(aws.session()), "create_client", slow_create_client)
    got = []

    def ask():
        both_asking.wait()
        got.append(aws.client("s3"))

    threads = [threading.Thread(target=ask) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert made == ["s3"] and got[0] is got[1]
