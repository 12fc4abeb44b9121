"""The Flux adapter on the wire: submit bodies checked against BFL's OpenAPI excerpt, then submit,
poll and sample download through the BFL emulator."""

from __future__ import annotations

import base64
import io
from pathlib import Path

import httpx
import jsonschema
import pytest
import yaml
from PIL import Image

from image_common.errors import (
    ContentPolicyViolation,
    InvalidRequest,
    ProviderError,
    ProviderNotConfigured,
    ProviderRateLimited,
    ProviderTimeout,
)
from image_service import http as service_http
from image_service.models import parse_request
from image_service.providers import flux
from tests.conftest import PROVIDER_KEYS, generate, request_body

SPEC_NAME = "bfl-openapi-excerpt.yaml"
SPEC_PATH = Path(__file__).parents[1] / "specs" / SPEC_NAME  # vendored
SCHEMAS = {
    "flux-dev": "FluxDevInputs",
    "flux-pro-1.1": "FluxPro11Inputs",
    "flux-pro-1.1-ultra": "FluxUltraInput",
    "flux-kontext-pro": "FluxKontextProInputs",
    "flux-kontext-max": "FluxKontextProInputs",
}


@pytest.fixture(scope="module")
def bfl_spec() -> dict:
    with SPEC_PATH.open() as handle:
        return yaml.safe_load(handle)


def assert_matches_spec(spec: dict, model: str, body: dict) -> None:
    schema_name = SCHEMAS[model]
    schema = spec["components"]["schemas"][schema_name]
    unknown = set(body) - set(schema["properties"])
    assert not unknown, f"fields not in BFL's {schema_name}: {unknown}"
    jsonschema.Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": spec["components"]}
    ).validate(body)


def prepared_body(image_service, prompt: str = "A lighthouse at dawn", **image) -> flux.FluxBody:
    request = parse_request(request_body(prompt, **image))
    prepared = image_service.prepare(request, timeout_seconds=5)
    return flux.build_body(prepared.provider_request)


def png_data_url(width: int = 64, height: int = 48) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), (200, 30, 30)).save(out, "PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


@pytest.fixture
def bfl(emulators):
    return emulators["flux"]


# --- request bodies ---------------------------------------------------------------------------


def test_dev_body_snaps_pixels_to_multiples_of_32_and_passes_options(image_service, bfl_spec):
    body = prepared_body(
        image_service,
        model="flux-dev",
        width=1000,
        height=700,
        seed=7,
        output_format="png",
        provider_options={"safety_tolerance": 4, "prompt_upsampling": True, "steps": 30,
                          "guidance": 3.5},
    )  # fmt: skip
    assert_matches_spec(bfl_spec, "flux-dev", body.body)
    assert body.body == {
        "prompt": "A lighthouse at dawn", "width": 992, "height": 704, "seed": 7,
        "output_format": "png", "safety_tolerance": 4, "prompt_upsampling": True, "steps": 30,
        "guidance": 3.5,
    }  # fmt: skip
    assert body.warnings == []
    assert "prompt" not in body.sent


def test_pro_takes_an_image_prompt_and_warns_about_dev_only_options(image_service, bfl_spec):
    body = prepared_body(
        image_service,
        model="flux-pro-1.1",
        input_images=[png_data_url()],
        provider_options={"steps": 20, "webhook_url": "https://example.com/hook"},
    )
    assert_matches_spec(bfl_spec, "flux-pro-1.1", body.body)
    decoded = base64.b64decode(body.body["image_prompt"], validate=True)
    assert decoded.startswith(b"\x89PNG")
    assert "steps" not in body.body and "webhook_url" not in body.body
    warned = {w.setting for w in body.warnings}
    assert warned == {"provider_options.steps", "provider_options.webhook_url"}
    assert body.sent["image_prompt"].startswith("<") and "base64" in body.sent["image_prompt"]


def test_ultra_sends_an_aspect_ratio_instead_of_pixels(image_service, bfl_spec):
    body = prepared_body(
        image_service, model="flux-pro-1.1-ultra", width=1920, height=1080,
        provider_options={"raw": True},
    )  # fmt: skip
    assert_matches_spec(bfl_spec, "flux-pro-1.1-ultra", body.body)
    assert body.body["aspect_ratio"] == "16:9" and body.body["raw"] is True
    assert "width" not in body.body and "height" not in body.body


@pytest.mark.parametrize("model", ["flux-kontext-pro", "flux-kontext-max"])
def test_kontext_sends_input_image_and_the_numbered_extra_images(image_service, bfl_spec, model):
    images = [png_data_url(64 + i, 48) for i in range(3)]
    body = prepared_body(image_service, model=model, input_images=images, aspect_ratio="3:4")
    assert_matches_spec(bfl_spec, model, body.body)
    assert {"input_image", "input_image_2", "input_image_3"} <= set(body.body)
    assert "input_image_4" not in body.body and "image_prompt" not in body.body
    assert body.body["aspect_ratio"] == "3:4"


def test_kontext_accepts_at_most_four_input_images(image_service):
    with pytest.raises(InvalidRequest, match="at most 4"):
        prepared_body(image_service, model="flux-kontext-max", input_images=[png_data_url()] * 5)


@pytest.mark.parametrize(
    ("option", "value"),
    [("safety_tolerance", 7), ("safety_tolerance", "2"), ("prompt_upsampling", "yes"),
     ("steps", 0)],
)  # fmt: skip
def test_provider_options_out_of_range_are_a_400(image_service, option, value):
    with pytest.raises(InvalidRequest, match=option):
        prepared_body(image_service, model="flux-dev", provider_options={option: value})


# --- submit -----------------------------------------------------------------------------------


def test_submit_sends_x_key_and_turns_credits_into_usd(image_service, bfl):
    body = prepared_body(image_service, model="flux-pro-1.1-ultra")
    submission = flux.submit("flux-pro-1.1-ultra", body.body)
    sent = bfl.submissions()[-1]
    assert sent.path == "/v1/flux-pro-1.1-ultra"
    assert sent.headers["x-key"] == PROVIDER_KEYS["flux"]
    assert sent.json() == body.body
    assert submission.cost_usd == pytest.approx(0.06)  # 6 credits
    assert submission.polling_url == f"{bfl.base_url}/v1/get_result?id={submission.task_id}"


@pytest.mark.parametrize(
    ("prompt", "error", "status"),
    [("[no-credits]", ProviderError, 502), ("[rate-limit]", ProviderRateLimited, 429),
     ("[server-error]", ProviderError, 502), ("[garbage]", ProviderError, 502)],
)  # fmt: skip
def test_submit_failures_map_to_typed_errors(bfl, prompt, error, status):
    with pytest.raises(error) as raised:
        flux.submit("flux-pro-1.1", {"prompt": prompt, "width": 512, "height": 512})
    assert raised.value.status == status
    assert PROVIDER_KEYS["flux"] not in raised.value.message
    if error is ProviderRateLimited:
        assert raised.value.retry_after == 3


def test_a_provider_validation_error_is_a_400_naming_the_field_not_the_input(bfl):
    with pytest.raises(InvalidRequest) as raised:
        flux.submit("flux-dev", {"prompt": "secret prompt text", "width": 1000, "height": 512})
    assert "width" in raised.value.message and "multiple of 32" in raised.value.message
    assert "secret prompt text" not in raised.value.message


def test_submit_without_a_key_is_not_configured(bfl, monkeypatch):
    monkeypatch.delenv("BFL_API_KEY")
    with pytest.raises(ProviderNotConfigured):
        flux.submit("flux-dev", {"prompt": "x"})
    assert bfl.requests == []


# --- poll -------------------------------------------------------------------------------------


def test_poll_is_pending_then_ready_with_a_sample_and_seed(bfl):
    submission = flux.submit("flux-dev", {"prompt": "a fox [polls=2]", "seed": 99})
    first, second, third = (flux.poll(submission.task_id, submission.polling_url) for _ in range(3))
    assert [first.status, second.status] == ["Pending", "Pending"]
    assert first.progress is not None and first.progress < 1
    assert third.status == "Ready" and third.seed == 99
    assert third.result_url.startswith(f"{bfl.base_url}/delivery/")
    assert all(r.headers["x-key"] == PROVIDER_KEYS["flux"] for r in bfl.polls())


def test_poll_follows_the_returned_polling_url(bfl):
    bfl.polling_prefix = "/us1"  # a regional polling URL, not {base}/v1/get_result
    submission = flux.submit("flux-dev", {"prompt": "a fox [polls=0]"})
    assert flux.poll(submission.task_id, submission.polling_url).status == "Ready"
    assert bfl.polls()[-1].path == "/us1/v1/get_result"


def test_a_polling_url_on_a_foreign_host_never_gets_the_key(bfl):
    submission = flux.submit("flux-dev", {"prompt": "a fox [polls=0]"})
    result = flux.poll(submission.task_id, "https://collector.example/v1/get_result?id=x")
    assert result.status == "Ready"  # polled at the API's own get_result instead
    assert bfl.polls()[-1].url == f"{bfl.base_url}/v1/get_result?id={submission.task_id}"


@pytest.mark.parametrize(
    ("prompt", "status", "provider_status", "error"),
    [("[moderate]", "Moderated", "Request Moderated", ContentPolicyViolation),
     ("[moderate-output] [polls=1]", "Moderated", "Content Moderated", ContentPolicyViolation),
     ("[error] [polls=0]", "Error", "Error", ProviderError),
     ("[lost]", "Error", "Task not found", ProviderError)],
)  # fmt: skip
def test_poll_outcomes_map_to_the_workflow_statuses(bfl, prompt, status, provider_status, error):
    submission = flux.submit("flux-pro-1.1", {"prompt": prompt, "width": 512, "height": 512})
    results = [flux.poll(submission.task_id, submission.polling_url) for _ in range(3)]
    final = next(r for r in results if r.status != "Pending")
    assert (final.status, final.provider_status) == (status, provider_status)
    assert isinstance(final.error(), error)
    if error is ContentPolicyViolation:
        assert final.error().status == 422 and final.error().type == "content_policy_violation"


def test_a_transient_poll_failure_reads_as_pending(emulators):
    service_http.set_http_client(service_http.new_http_client(httpx.MockTransport(
        lambda request: httpx.Response(503, json={"detail": "Service Unavailable"}))))  # fmt: skip
    result = flux.poll("task-1", "https://flux.emulator.test/v1/get_result?id=task-1")
    assert (result.status, result.provider_status) == ("Pending", "HTTP 503")


def test_a_refused_poll_is_a_provider_error(emulators):
    service_http.set_http_client(service_http.new_http_client(httpx.MockTransport(
        lambda request: httpx.Response(403, json={"detail": "Not authenticated"}))))  # fmt: skip
    with pytest.raises(ProviderError, match="credentials"):
        flux.poll("task-1", "https://flux.emulator.test/v1/get_result?id=task-1")


# --- the sample -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "body", "size"),
    [
        ("flux-dev", {"width": 768, "height": 512}, (768, 512)),
        ("flux-pro-1.1", {"width": 1440, "height": 256}, (1440, 256)),
        ("flux-pro-1.1-ultra", {"aspect_ratio": "16:9"}, (1024, 576)),
        ("flux-kontext-pro", {"aspect_ratio": "9:21"}, (438, 1024)),
    ],
)
def test_the_sample_has_the_size_or_shape_that_was_asked_for(bfl, model, body, size):
    submission = flux.submit(model, {"prompt": "a fox [polls=0]", **body})
    sample = flux.poll(submission.task_id, submission.polling_url).result_url
    assert Image.open(io.BytesIO(flux.fetch_sample(sample).data)).size == size


def ready_sample(bfl, output_format: str = "png") -> str:
    body = {"prompt": "a fox [polls=0]", "output_format": output_format}
    submission = flux.submit("flux-dev", body)
    return flux.poll(submission.task_id, submission.polling_url).result_url


def test_the_sample_is_downloaded_without_the_x_key_header(bfl):
    image = flux.fetch_sample(ready_sample(bfl, "jpeg"))
    assert image.mime_type == "image/jpeg"
    assert Image.open(io.BytesIO(image.data)).size == (1024, 768)  # flux-dev's default size
    download = bfl.requests[-1]
    assert download.path.startswith("/delivery/")
    assert "x-key" not in download.headers and "authorization" not in download.headers
    assert bfl.key_leaks == []


def test_the_emulator_refuses_a_sample_request_that_carries_the_key(bfl):
    url = ready_sample(bfl)
    response = service_http.get_http_client().get(url, headers={"x-key": PROVIDER_KEYS["flux"]})
    assert response.status_code == 400 and len(bfl.key_leaks) == 1


def test_an_expired_sample_url_is_a_provider_error(bfl):
    bfl.sample_ttl_seconds = -1
    with pytest.raises(ProviderError, match="HTTP 403"):
        flux.fetch_sample(ready_sample(bfl))


def test_a_tampered_sample_url_is_a_provider_error(bfl):
    url = ready_sample(bfl).replace("sig=", "sig=0")
    with pytest.raises(ProviderError):
        flux.fetch_sample(url)


def test_a_sample_url_that_is_not_https_is_refused(bfl, monkeypatch, settings):
    import image_common.settings as settings_module

    strict = settings.model_copy(update={"trusted_url_origins": ""})
    monkeypatch.setattr(settings_module, "get_settings", lambda: strict)
    url = ready_sample(bfl).replace("https://", "http://")
    with pytest.raises(ProviderError, match="https"):
        flux.fetch_sample(url)
    assert not any(r.path.startswith("/delivery/") for r in bfl.requests)


# --- the whole exchange, as a job ------------------------------------------------------------


def test_a_flux_job_chains_submit_poll_and_download(service_with, bfl):
    service = service_with(job_poll_interval_seconds=0.01)
    data = generate(service, "a fox [polls=2]", model="flux-pro-1.1", seed=5)
    assert data["seed"] == 5 and data["content_type"] == "image/jpeg"
    assert data["cost_usd"] == pytest.approx(0.04)
    assert len(bfl.submissions()) == 1 and len(bfl.polls()) == 3 and bfl.key_leaks == []


def test_a_flux_job_gives_up_after_its_budget(service_with, bfl):
    service = service_with(job_poll_interval_seconds=0.05, job_max_budget_seconds=1.0)
    with pytest.raises(ProviderTimeout, match="1 s budget"):
        generate(service, "a fox [pending]", model="flux-dev")
    assert len(bfl.submissions()) == 1 and len(bfl.polls()) >= 1  # submitted once, polled
