"""The official ``openai`` Python SDK against the local stack, as a user would point it at the
service: ``OpenAI(base_url=<api>/v1, api_key=<JWT>)``. Every request goes through the local API
Gateway, the real authorizer and generation handlers, moto's S3 server and the emulators; every
answer body is checked against OpenAI's official schemas."""

from __future__ import annotations

import base64
import io

import httpx
import openai
import pytest
from openai import OpenAI
from PIL import Image

from image_service.catalog import model_catalog, resolve_model
from tests.conftest import image_bytes
from tests.openai_schemas import assert_openai_schema

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def client(local_stack):
    with OpenAI(base_url=f"{local_stack.base_url}/v1", api_key=local_stack.token(1)) as sdk:
        yield sdk


def raw_json(response) -> dict:
    """The body as the wire carried it (the SDK's models would hide unknown or missing keys)."""
    return response.http_response.json()


def calls(local_stack, provider: str) -> int:
    return len(local_stack.stack.emulators[provider].requests)


# --- images.generate -------------------------------------------------------------------------


def test_images_generate_returns_base64_images_by_default(client, local_stack):
    response = client.images.with_raw_response.generate(
        model="openai", prompt="A serene mountain landscape at sunset", size="1536x1024", n=2
    )

    assert_openai_schema("ImagesResponse", raw_json(response))
    result = response.parse()
    assert len(result.data) == 2 and all(item.url is None for item in result.data)
    image = Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json)))
    assert image.format == "PNG" and image.size == (1536, 1024)
    assert result.size == "1536x1024" and result.output_format == "png"
    assert result.usage is not None and result.usage.output_tokens > 0
    extras = result.model_extra
    assert extras["provider"] == "openai" and extras["model"] == resolve_model("openai").spec.id
    assert extras["cost_usd"] > 0 and extras["warnings"] == []


def test_images_generate_with_url_on_another_provider_serves_the_stored_image(client):
    response = client.images.with_raw_response.generate(
        model="grok", prompt="A lighthouse at dawn", size="1024x1536", response_format="url"
    )

    assert_openai_schema("ImagesResponse", raw_json(response))
    result = response.parse()
    assert result.data[0].b64_json is None and "/customers/1/assets/image/" in result.data[0].url
    fetched = httpx.get(result.data[0].url, timeout=10)  # the presigned URL, from moto's S3
    assert fetched.status_code == 200 and fetched.headers["content-type"] == "image/jpeg"
    assert result.model_extra["provider"] == "xai"
    assert any(w["setting"] == "width/height" for w in result.model_extra["warnings"])


CATALOG = model_catalog()


@pytest.mark.parametrize(
    "name",
    sorted(m["id"] for m in CATALOG["models"] if m["served_by"] == m["id"])
    + sorted(a["alias"] for a in CATALOG["aliases"]),
)
def test_every_catalog_model_and_alias_is_reachable_through_the_sdk(client, name):
    response = client.images.with_raw_response.generate(
        model=name, prompt="A small red boat [polls=0]", size="1024x1024"
    )

    assert_openai_schema("ImagesResponse", raw_json(response))
    result = response.parse()
    assert result.model_extra["model"] == resolve_model(name).spec.id
    assert len(base64.b64decode(result.data[0].b64_json)) > 100


# --- images.edit -----------------------------------------------------------------------------


def test_images_edit_with_two_images_and_a_mask(client, local_stack):
    first, second = image_bytes("png", 128, 128), image_bytes("webp", 128, 128)
    mask = image_bytes("png", 128, 128)
    before = calls(local_stack, "openai")

    response = client.images.with_raw_response.edit(
        model="openai",
        image=[("first.png", first, "image/png"), ("second.webp", second, "image/webp")],
        mask=("mask.png", mask, "image/png"),
        prompt="Put both objects on one table",
        quality="low",
    )

    assert_openai_schema("ImagesResponse", raw_json(response))
    result = response.parse()
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).format == "PNG"
    assert calls(local_stack, "openai") == before + 1
    parts = local_stack.stack.emulators["openai"].requests[-1].form()
    assert [p.data for p in parts if p.name == "image[]"] == [first, second]
    assert [p.data for p in parts if p.name == "mask"] == [mask]


# --- models ----------------------------------------------------------------------------------


def test_models_list_and_retrieve(client):
    listing = client.models.with_raw_response.list()
    assert_openai_schema("ListModelsResponse", raw_json(listing))
    ids = {model.id for model in listing.parse()}
    assert resolve_model("openai").spec.id in ids and resolve_model("flux").spec.id in ids

    retrieved = client.models.with_raw_response.retrieve("stability")
    assert_openai_schema("Model", raw_json(retrieved))
    model = retrieved.parse()
    assert (model.id, model.owned_by) == ("stability", "stability")


# --- errors: each exception class the SDK raises ---------------------------------------------


def assert_openai_error(error: openai.APIStatusError, code: str | None) -> None:
    assert_openai_schema("ErrorResponse", error.response.json())
    assert error.code == code


def test_a_request_without_a_token_raises_authentication_error(client):
    with pytest.raises(openai.AuthenticationError) as raised:
        client.models.list(extra_headers={"Authorization": openai.omit})
    assert raised.value.status_code == 401
    # API Gateway's own answer when the Authorization header is missing
    assert raised.value.response.json() == {"message": "Unauthorized"}


def test_an_expired_token_raises_permission_denied_error(client, local_stack):
    expired = client.with_options(api_key=local_stack.token(1, ttl_seconds=-60))
    with pytest.raises(openai.PermissionDeniedError) as raised:
        expired.images.generate(prompt="anything")
    # API Gateway's own answer to a rejected token: {"message": "Forbidden"} (docs/decisions.md)
    assert raised.value.response.json() == {"message": "Forbidden"}


def test_a_moderated_prompt_raises_bad_request_error_with_moderation_blocked(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="openai", prompt="Something refused [moderate]")
    assert_openai_error(raised.value, "moderation_blocked")


def test_a_bad_size_raises_bad_request_error_naming_the_parameter(client):
    with pytest.raises(openai.BadRequestError) as raised:
        client.images.generate(model="openai", prompt="p", size="huge")
    assert_openai_error(raised.value, "invalid_request")
    assert raised.value.param == "size"


def test_an_unknown_model_raises_not_found_error(client):
    with pytest.raises(openai.NotFoundError) as raised:
        client.models.retrieve("gpt-9000")
    assert_openai_error(raised.value, "model_not_found")
    with pytest.raises(openai.NotFoundError):
        client.images.generate(model="gpt-9000", prompt="p")


def test_a_provider_rate_limit_raises_rate_limit_error_with_retry_after(client, local_stack):
    before = calls(local_stack, "openai")
    with pytest.raises(openai.RateLimitError) as raised:
        client.with_options(max_retries=0).images.generate(model="openai", prompt="[rate-limit]")
    assert_openai_error(raised.value, "rate_limit_exceeded")
    assert raised.value.response.headers["retry-after"] == "7"
    assert calls(local_stack, "openai") == before + 1


# --- slow models: the SDK's own retries fetch the image -----------------------------------------


def test_a_slow_generation_completes_through_the_sdks_default_retries_with_one_provider_call(
    local_stack,
):
    # Compressed time (tests/e2e/conftest.py): the request waits 6 s for its job, the provider
    # takes 10 s — the 20 s / 40 s case. The first attempt gets a retryable 503 with
    # Retry-After: 1; the SDK's default retry (max_retries=2) attaches to the same job.
    prompt = "A cathedral in fog, every stone drawn [delay=10] #sdk-retry"
    with OpenAI(base_url=f"{local_stack.base_url}/v1", api_key=local_stack.token(1)) as sdk:
        assert sdk.max_retries == 2  # the SDK's default, untouched
        response = sdk.images.with_raw_response.generate(
            model="gpt-image-2", prompt=prompt, quality="high"
        )

    assert response.retries_taken >= 1  # it did not finish inside the first request
    assert_openai_schema("ImagesResponse", raw_json(response))
    result = response.parse()
    assert Image.open(io.BytesIO(base64.b64decode(result.data[0].b64_json))).format == "PNG"
    assert local_stack.openai_calls(prompt) == 1  # paid once, however often it was asked

    # The answer was delivered: the same request again is a new image — a new job, not a replay.
    with OpenAI(base_url=f"{local_stack.base_url}/v1", api_key=local_stack.token(1)) as sdk:
        with pytest.raises(openai.InternalServerError) as pending:
            sdk.with_options(max_retries=0).images.generate(
                model="gpt-image-2", prompt=prompt, quality="high"
            )
    error = pending.value.response.json()["error"]
    assert pending.value.status_code == 503 and error["code"] == "job_pending"
    assert error["job_id"] != result.model_extra["job_id"]
