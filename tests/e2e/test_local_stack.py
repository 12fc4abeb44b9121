"""The local stack over real HTTP: token → POST /image/generate → image, and the gateway's and
the service's answers around it. Every request goes through the local API Gateway, the real
authorizer and generation handlers, moto's S3 server and the provider emulators."""

from __future__ import annotations

import base64
import io
import time

import httpx
import pytest
from PIL import Image

pytestmark = pytest.mark.e2e

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def generate_body(
    prompt="A serene mountain landscape at sunset", *, customer_id=1, save_to_db=True, **image
):
    image.setdefault("model", "openai")
    return {
        "prompt": prompt,
        "settings": {"image": image},
        "customer_id": customer_id,
        "save_to_db": save_to_db,
    }


def provider_calls(local_stack) -> int:
    return len(local_stack.stack.emulators["openai"].requests)


# --- the happy paths -------------------------------------------------------------------------


def test_health_answers_200_without_a_token(api):
    response = api.get("/health")

    assert response.status_code == 200
    assert response.json()["data"] == {"status": "ok"}
    assert response.headers["apigw-requestid"]


def test_saved_image_url_serves_the_stored_png(api, local_stack):
    response = api.post(
        "/image/generate", json=generate_body(width=1024, height=1024), headers=local_stack.auth(1)
    )

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True and body["code"] == 200
    data = body["data"]
    assert data["provider"] == "openai" and data["model"] == "gpt-image-2.5-flare"
    assert data["image_key"].startswith("customers/1/assets/image/")
    # The presigned URL is fetched over HTTP from moto's S3 server, like a browser would.
    image = httpx.get(data["image_url"], timeout=10)
    assert image.status_code == 200
    assert image.headers["content-type"] == data["content_type"] == "image/png"
    assert image.content.startswith(PNG_SIGNATURE)
    picture = Image.open(io.BytesIO(image.content))
    assert picture.format == "PNG"
    assert picture.size == (data["settings"]["width"], data["settings"]["height"])


def test_unsaved_image_comes_back_as_a_data_url_and_nothing_is_stored(api, local_stack):
    customer = 2
    response = api.post(
        "/image/generate",
        json=generate_body(customer_id=customer, save_to_db=False),
        headers=local_stack.auth(customer),
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    prefix = f"data:{data['content_type']};base64,"
    assert data["image_url"].startswith(prefix)
    raw = base64.b64decode(data["image_url"][len(prefix) :], validate=True)
    picture = Image.open(io.BytesIO(raw))
    picture.verify()
    assert picture.format == "PNG"
    listing = local_stack.s3().list_objects_v2(
        Bucket=local_stack.stack.bucket, Prefix=f"customers/{customer}/"
    )
    assert listing.get("KeyCount", 0) == 0


def test_admin_scope_may_act_for_another_customer(api, local_stack):
    response = api.post(
        "/image/generate",
        json=generate_body(customer_id=42, save_to_db=False),
        headers=local_stack.auth(1, scopes=["images:admin"]),
    )

    assert response.status_code == 200, response.text


# --- the gateway's own answers ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"),
    [("POST", "/image/generate"), ("GET", "/image/jobs/0123abcd"), ("GET", "/image/models")],
)
def test_missing_token_is_401_from_the_gateway_without_calling_the_functions(
    api, local_stack, method, path
):
    before = provider_calls(local_stack)

    response = api.request(method, path, json=generate_body() if method == "POST" else None)

    assert response.status_code == 401
    assert response.json() == {"message": "Unauthorized"}
    assert provider_calls(local_stack) == before


@pytest.mark.parametrize(
    "case",
    ["expired", "wrong_secret", "not_a_jwt", "wrong_scheme"],
)
def test_rejected_token_is_403_forbidden_from_the_gateway(api, local_stack, case):
    # API Gateway HTTP API turns a simple response's isAuthorized=false into 403 (never 401).
    authorization = {
        "expired": f"Bearer {local_stack.token(1, now=time.time() - 7200, ttl_seconds=600)}",
        "wrong_secret": f"Bearer {local_stack.token(1, secret='x' * 40)}",
        "not_a_jwt": "Bearer not-a-jwt",
        "wrong_scheme": f"Basic {base64.b64encode(b'user:password').decode()}",
    }[case]
    before = provider_calls(local_stack)

    response = api.post(
        "/image/generate", json=generate_body(), headers={"authorization": authorization}
    )

    assert response.status_code == 403
    assert response.json() == {"message": "Forbidden"}
    assert provider_calls(local_stack) == before


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nowhere"), ("GET", "/image/generate"), ("POST", "/health")]
)
def test_unknown_route_is_404_not_found_from_the_gateway(api, local_stack, method, path):
    response = api.request(method, path, headers=local_stack.auth(1))

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_body_over_10_mb_is_413_from_the_gateway(api, local_stack):
    response = api.post(
        "/image/generate",
        content=b"x" * (10 * 1024 * 1024 + 1),
        headers=local_stack.auth(1) | {"content-type": "application/json"},
    )

    assert response.status_code == 413
    assert response.json() == {"message": "Request Entity Too Large"}


# --- the service's answers, through the gateway ----------------------------------------------


@pytest.mark.parametrize(
    "content",
    [
        b"{not json",
        b'{"prompt": "", "settings": {"image": {}}, "customer_id": 1, "save_to_db": false}',
    ],
    ids=["invalid-json", "empty-prompt"],
)
def test_bad_body_is_400_in_the_service_envelope(api, local_stack, content):
    response = api.post(
        "/image/generate",
        content=content,
        headers=local_stack.auth(1) | {"content-type": "application/json"},
    )

    assert response.status_code == 400
    body = response.json()
    assert body["success"] is False and body["code"] == 400
    assert body["error"]["type"] == "invalid_request"
    assert body["error"]["message"]


def test_foreign_customer_id_is_403_in_the_service_envelope(api, local_stack):
    response = api.post(
        "/image/generate", json=generate_body(customer_id=2), headers=local_stack.auth(1)
    )

    assert response.status_code == 403
    body = response.json()
    assert body["success"] is False
    assert body["error"]["type"] == "forbidden"


def test_moderated_prompt_is_422_with_content_policy_type(api, local_stack):
    response = api.post(
        "/image/generate", json=generate_body("A picture [moderate]"), headers=local_stack.auth(1)
    )

    assert response.status_code == 422
    assert response.json()["error"]["type"] == "content_policy_violation"


def test_models_listing_answers_with_a_token(api, local_stack):
    response = api.get("/image/models", headers=local_stack.auth(1))

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["success"] is True
    data = body["data"]
    assert data["default_model"] == "gpt-image-2.5-flare"
    providers = {model["provider"] for model in data["models"]}
    assert {"openai", "stability", "google", "xai", "flux"} <= providers


# --- every provider, each on its emulator ----------------------------------------------------


@pytest.mark.parametrize(
    ("model", "provider"),
    [("openai", "openai"), ("stability", "stability"), ("gemini", "google"), ("grok", "xai")],
)
def test_each_provider_without_a_key_is_served_by_its_emulator(api, local_stack, model, provider):
    assert provider in local_stack.stack.emulators
    before = len(local_stack.stack.emulators[provider].requests)

    response = api.post(
        "/image/generate",
        json=generate_body(model=model, save_to_db=False),
        headers=local_stack.auth(1),
    )

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["provider"] == provider
    prefix = f"data:{data['content_type']};base64,"
    Image.open(io.BytesIO(base64.b64decode(data["image_url"][len(prefix) :]))).verify()
    assert len(local_stack.stack.emulators[provider].requests) > before
