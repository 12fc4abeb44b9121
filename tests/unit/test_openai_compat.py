"""The OpenAI-compatible surface's mapping, pure: OpenAI's request fields in the service's
vocabulary, multipart and JSON edits, ImagesResponse, OpenAI's error shape and the model list —
each answer checked against OpenAI's official schemas (tests/specs/openai-openapi.yaml)."""

from __future__ import annotations

import base64
import json

import pytest

from image_common.errors import (
    BudgetExceeded,
    ContentPolicyViolation,
    CustomerRateLimited,
    ImageServiceError,
    InternalError,
    InvalidRequest,
    JobPending,
    PayloadTooLarge,
    ProviderError,
    ProviderRateLimited,
    ProviderTimeout,
    UnknownModel,
)
from image_service.catalog import model_catalog, resolve_model
from image_service.openai_compat import (
    MAX_FORM_PARTS,
    RETRY_ATTACHES_TO_THE_JOB,
    UnknownParameter,
    error_response,
    images_response,
    map_request,
    model_list,
    model_object,
    parse_edit_request,
    parse_openai_request,
)
from tests.conftest import image_bytes
from tests.openai_schemas import assert_openai_schema

PNG = image_bytes("png")


def mapped(enabled_retired: frozenset[str] = frozenset(), inputs=None, **body):
    body.setdefault("prompt", "A lighthouse on a cliff")
    return map_request(
        parse_openai_request(body),
        customer_id=7,
        enabled_retired=enabled_retired,
        inputs=inputs,
    )


def warned(call) -> dict[str, str]:
    return {w.setting: w.message for w in call.warnings}


def param_of(error: ImageServiceError) -> str | None:
    return error_response(error)[1]["error"]["param"]


# --- requests --------------------------------------------------------------------------------


def test_openai_fields_map_onto_the_service_settings():
    call = mapped(model="openai", size="1536x1024", quality="LOW", n=3, output_format="jpg")

    image = call.request.image
    assert (image.width, image.height, image.quality, image.n) == (1536, 1024, "low", 3)
    assert image.output_format == "jpeg"
    assert call.model.id == resolve_model("openai").spec.id
    assert call.warnings == []


def test_size_auto_or_missing_lets_the_model_choose():
    for body in ({"size": "auto"}, {}):
        image = mapped(**body).request.image
        assert (image.width, image.height) == (None, None)


def test_b64_json_is_the_default_and_stores_nothing_while_url_stores_the_image():
    assert mapped().response_format == "b64_json"
    assert mapped().request.save_to_db is False
    call = mapped(response_format="url")
    assert (call.response_format, call.request.save_to_db) == ("url", True)


def test_the_customer_is_the_callers():
    assert mapped().request.customer_id == 7


@pytest.mark.parametrize(
    ("field", "reason"),
    [
        ("customer_id", "token"),
        ("save_to_db", "response_format"),
        ("width", "size"),
        ("input_images", "/v1/images/edits"),
        ("steps", None),
        ("markup", None),
    ],
)
def test_a_field_that_is_not_a_parameter_is_openais_400_unknown_parameter(field, reason):
    with pytest.raises(UnknownParameter) as raised:
        mapped(**{field: 1})

    status, answer, _ = error_response(raised.value)
    assert status == 400
    assert (answer["error"]["code"], answer["error"]["param"]) == ("unknown_parameter", field)
    assert reason is None or reason in answer["error"]["message"]
    assert_openai_schema("ErrorResponse", answer)


def test_openai_only_parameters_reach_openai_models_as_provider_options():
    call = mapped(
        model="openai",
        background="transparent",
        moderation="low",
        output_compression=70,
        user="end-user-1",
    )

    options = call.request.image.provider_options
    assert options == {
        "background": "transparent",
        "moderation": "low",
        "output_compression": 70,
        "user": "end-user-1",
    }
    assert call.background == "transparent"
    assert "background" not in warned(call)


def test_openai_only_parameters_are_warned_about_for_other_providers_unless_default():
    call = mapped(model="stability", background="transparent", moderation="auto", user="u-1")

    assert call.request.image.provider_options == {}
    assert set(warned(call)) == {"background", "user"}  # moderation=auto asks for nothing
    assert "OpenAI parameter" in warned(call)["background"]
    assert call.background is None


def test_style_maps_to_a_style_preset_where_the_model_has_it_else_a_warning():
    retired = frozenset({"dall-e-3"})
    assert mapped(retired, model="dall-e-3", style="natural").request.image.style_preset == (
        "natural"
    )
    call = mapped(model="openai", style="vivid")
    assert call.request.image.style_preset is None
    assert "style" in warned(call)


def test_service_settings_pass_through_as_extension_fields():
    call = mapped(model="stability", seed=42, negative_prompt="fog", aspect_ratio="16:9")

    image = call.request.image
    assert (image.seed, image.negative_prompt, image.aspect_ratio) == (42, "fog", "16:9")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"size": "big"}, "size"),
        ({"size": "0x1024"}, "size"),
        ({"n": 11}, "n"),
        ({"response_format": "png"}, "response_format"),
        ({"background": "green"}, "background"),
        ({"output_compression": 101}, "output_compression"),
        ({"moderation": "off"}, "moderation"),
        ({"quality": "ultra"}, "quality"),  # the service's own check, named as OpenAI's field
        ({"prompt": ""}, "prompt"),
        ({"prompt": None}, "prompt"),
        ({"stream": True}, "stream"),
    ],
)
def test_a_bad_field_is_a_400_naming_the_openai_parameter(body, param):
    with pytest.raises(InvalidRequest) as raised:
        mapped(**body)

    status, answer, _ = error_response(raised.value)
    assert (status, answer["error"]["param"]) == (400, param)
    assert answer["error"]["type"] == "invalid_request_error"
    assert_openai_schema("ErrorResponse", answer)


def test_a_body_that_is_not_an_object_is_a_400():
    with pytest.raises(InvalidRequest):
        parse_openai_request(["prompt"])


def test_an_unknown_model_is_openais_404_model_not_found():
    with pytest.raises(UnknownModel) as raised:
        mapped(model="no-such-model")

    status, answer, _ = error_response(raised.value)
    assert status == 404
    assert answer["error"]["code"] == "model_not_found" and answer["error"]["param"] == "model"
    assert_openai_schema("ErrorResponse", answer)


def test_every_catalog_model_and_alias_maps_to_itself():
    catalog = model_catalog()
    names = [m["id"] for m in catalog["models"]] + [a["alias"] for a in catalog["aliases"]]
    for name in names:
        call = mapped(model=name)
        assert call.model.id == resolve_model(name).spec.id, name
        assert call.request.image.model == name


# --- edits -----------------------------------------------------------------------------------


def form(*parts: tuple[str, bytes, str | None], boundary: str = "b0undary") -> tuple[bytes, str]:
    """A multipart/form-data body: (name, content, filename or None for a text field)."""
    chunks = []
    for name, content, filename in parts:
        disposition = f'form-data; name="{name}"'
        if filename:
            disposition += f'; filename="{filename}"'
        head = f"--{boundary}\r\nContent-Disposition: {disposition}\r\n"
        if filename:
            head += "Content-Type: image/png\r\n"
        chunks.append(head.encode() + b"\r\n" + content + b"\r\n")
    body = b"".join(chunks) + f"--{boundary}--\r\n".encode()
    return body, f"multipart/form-data; boundary={boundary}"


def decoded(reference: str) -> bytes:
    return base64.b64decode(reference.split(",", 1)[1])


def test_a_multipart_edit_reads_repeated_images_a_mask_and_the_fields():
    mask = image_bytes("png", 64, 48)
    body, content_type = form(
        ("prompt", b"Add a red balloon", None),
        ("model", b"openai", None),
        ("n", b"2", None),
        ("image[]", PNG, "a.png"),
        ("image[]", image_bytes("jpeg"), "b.jpg"),
        ("mask", mask, "mask.png"),
    )

    openai, inputs = parse_edit_request(body, content_type, max_part_bytes=1 << 20)

    assert (openai.prompt, openai.model, openai.n) == ("Add a red balloon", "openai", 2)
    assert [decoded(i) for i in inputs.images] == [PNG, image_bytes("jpeg")]
    assert decoded(inputs.mask) == mask
    call = mapped(inputs=inputs, model="openai", prompt="x")
    assert len(call.request.image.input_images) == 2 and call.request.image.mask


def test_a_multipart_edit_takes_a_single_image_field():
    body, content_type = form(("prompt", b"p", None), ("image", PNG, "a.png"))
    _, inputs = parse_edit_request(body, content_type, max_part_bytes=1 << 20)
    assert [decoded(i) for i in inputs.images] == [PNG]


def test_a_json_edit_reads_image_urls():
    body = json.dumps(
        {
            "prompt": "p",
            "images": [{"image_url": "https://example.com/a.png"}],
            "mask": {"image_url": "data:image/png;base64,AAAA"},
        }
    ).encode()

    openai, inputs = parse_edit_request(body, "application/json", max_part_bytes=1 << 20)

    assert openai.prompt == "p"
    assert inputs.images == ["https://example.com/a.png"]
    assert inputs.mask == "data:image/png;base64,AAAA"


@pytest.mark.parametrize(
    ("body", "content_type", "param"),
    [
        (*form(("prompt", b"p", None)), "image"),  # no image
        (b"{}", "text/plain", None),
        (b"--x\r\n", "multipart/form-data", None),  # no boundary
        (b"garbage without any boundary", "multipart/form-data; boundary=zz", None),
        (json.dumps({"prompt": "p"}).encode(), "application/json", "images"),
        (
            json.dumps({"prompt": "p", "images": [{"file_id": "f"}]}).encode(),
            "application/json",
            "images",
        ),  # fmt: skip
        (b"{nope", "application/json", None),
        (*form(("prompt", b"\xff\xfe", None), ("image", PNG, "a.png")), "prompt"),
    ],
)
def test_a_malformed_edit_is_a_400(body, content_type, param):
    with pytest.raises(InvalidRequest) as raised:
        parse_edit_request(body, content_type, max_part_bytes=1 << 20)
    assert error_response(raised.value)[0] == 400
    assert param_of(raised.value) == param


def test_an_edit_part_over_the_limit_is_a_413():
    body, content_type = form(("prompt", b"p", None), ("image", PNG, "a.png"))
    with pytest.raises(PayloadTooLarge):
        parse_edit_request(body, content_type, max_part_bytes=len(PNG) - 1)


def test_an_edit_with_too_many_parts_is_a_413():
    parts = [("image[]", PNG, f"{i}.png") for i in range(MAX_FORM_PARTS + 1)]
    body, content_type = form(("prompt", b"p", None), *parts)
    with pytest.raises(PayloadTooLarge) as raised:
        parse_edit_request(body, content_type, max_part_bytes=1 << 20)
    assert error_response(raised.value)[0] == 413


# --- answers ---------------------------------------------------------------------------------


def service_data(**overrides) -> dict:
    data = {
        "image_url": "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "provider": "openai",
        "model": "gpt-image-1",
        "settings": {"width": 1536, "height": 1024, "quality": "high", "n": 1},
        "warnings": [{"type": "adjusted-setting", "setting": "n", "message": "m"}],
        "cost_usd": 0.25,
        "content_type": "image/png",
        "revised_prompt": "A lighthouse, revised",
        "usage": {
            "input_tokens": 50,
            "output_tokens": 100,
            "total_tokens": 150,
            "input_tokens_details": {"text_tokens": 50, "image_tokens": 0},
        },
    }
    return data | overrides


def test_the_answer_is_an_images_response_with_base64_and_extension_fields():
    call = mapped(model="openai", background="opaque", user="u")
    answer = images_response(service_data(job_id="j1"), call, created=1_800_000_000)

    assert_openai_schema("ImagesResponse", answer)
    assert answer["created"] == 1_800_000_000
    assert base64.b64decode(answer["data"][0]["b64_json"]) == PNG
    assert answer["data"][0]["revised_prompt"] == "A lighthouse, revised"
    assert (answer["size"], answer["quality"], answer["output_format"]) == (
        "1536x1024",
        "high",
        "png",
    )
    assert answer["background"] == "opaque"
    assert answer["usage"]["total_tokens"] == 150
    assert (answer["provider"], answer["model"], answer["cost_usd"]) == (
        "openai",
        "gpt-image-1",
        0.25,
    )
    assert answer["job_id"] == "j1"
    assert answer["warnings"] == service_data()["warnings"]


def test_sizes_and_qualities_outside_openais_enums_are_left_out_not_invalid():
    data = service_data(
        settings={"aspect_ratio": "16:9", "quality": "auto", "n": 1}, usage={"input_tokens": 1}
    )
    answer = images_response(data, mapped(model="stability"), created=1)

    assert_openai_schema("ImagesResponse", answer)
    assert not {"size", "quality", "usage", "background"} & set(answer)


def test_several_images_and_stored_urls_each_become_a_data_item():
    images = [
        {"image_url": "https://bucket.example/1.png", "content_type": "image/png"},
        {"image_url": "https://bucket.example/2.png", "content_type": "image/png"},
    ]
    data = service_data(image_url=images[0]["image_url"], images=images)
    answer = images_response(data, mapped(response_format="url"), created=1)

    assert_openai_schema("ImagesResponse", answer)
    assert [item["url"] for item in answer["data"]] == [i["image_url"] for i in images]


def test_the_adapters_own_warnings_come_first():
    call = mapped(model="stability", user="u")
    answer = images_response(service_data(), call, created=1)
    assert [w["setting"] for w in answer["warnings"]] == ["user", "n"]


# --- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "kind", "code"),
    [
        (InvalidRequest("bad"), 400, "invalid_request_error", "invalid_request"),
        (ContentPolicyViolation("no"), 400, "image_generation_user_error", "moderation_blocked"),
        (UnknownModel("?"), 404, "invalid_request_error", "model_not_found"),
        (PayloadTooLarge("big"), 413, "invalid_request_error", "payload_too_large"),
        (ProviderRateLimited("slow down", retry_after=7), 429, "requests", "rate_limit_exceeded"),
        (CustomerRateLimited("too many", retry_after=3), 429, "requests", "rate_limit_exceeded"),
        (
            BudgetExceeded("spent", retry_after=3600),
            429,
            "insufficient_quota",
            "insufficient_quota",
        ),
        (ProviderError("down"), 502, "server_error", "provider_error"),
        (ProviderTimeout("late"), 504, "server_error", "provider_timeout"),
        (InternalError(), 500, "server_error", "internal_error"),
    ],
)
def test_errors_take_openais_shape_and_the_status_the_sdk_maps(error, status, kind, code):
    got_status, answer, headers = error_response(error)

    assert got_status == status
    param = "model" if isinstance(error, UnknownModel) else None
    assert answer == {
        "error": {"message": error.message, "type": kind, "param": param, "code": code}
    }
    assert_openai_schema("ErrorResponse", answer)
    if error.retry_after is not None:
        assert headers["Retry-After"] == str(error.retry_after)
    else:
        assert "Retry-After" not in headers
    # A provider timeout may have been billed: the SDK must not retry it on its own.
    assert headers.get("x-should-retry") == ("false" if status == 504 else None)


def test_a_job_still_running_is_a_retryable_503_naming_the_job():
    error = JobPending("still running", retry_after=1, details={"job_id": "abc"})

    status, answer, headers = error_response(error)

    assert status == 503
    retry = "true" if RETRY_ATTACHES_TO_THE_JOB else "false"
    assert headers == {"Retry-After": "1", "x-should-retry": retry}
    assert answer["error"]["job_id"] == "abc" and answer["error"]["code"] == "job_pending"
    assert_openai_schema("ErrorResponse", answer)


# --- models ----------------------------------------------------------------------------------


def test_the_model_list_is_openais_and_holds_every_model_served_as_itself():
    catalog = model_catalog()
    listing = model_list(catalog)

    assert_openai_schema("ListModelsResponse", listing)
    served = {m["id"] for m in catalog["models"] if m["served_by"] == m["id"]}
    assert {m["id"] for m in listing["data"]} == served
    assert {m["owned_by"] for m in listing["data"]} == {"openai", "stability", "flux", "google",
                                                         "xai"}  # fmt: skip


def test_a_model_an_alias_and_a_retired_model_can_be_retrieved():
    catalog = model_catalog()
    for name in ("openai", "OpenAI", "stability", "dall-e-3", resolve_model("grok").spec.id):
        model = model_object(name, catalog)
        assert_openai_schema("Model", model)
        assert model["id"] == name.lower() and model["object"] == "model"
    assert model_object("openai", catalog)["served_by"] == resolve_model("openai").spec.id
    assert model_object("dall-e-3", catalog)["served_by"] == resolve_model("dall-e-3").spec.id


def test_retrieving_an_unknown_model_is_a_404():
    with pytest.raises(UnknownModel) as raised:
        model_object("gpt-9000", model_catalog())
    assert error_response(raised.value)[0] == 404


def test_a_release_date_in_the_catalog_becomes_created():
    entry = {"id": "m", "provider": "openai", "served_by": "m", "released": "2026-04-21"}
    model = model_object("m", {"models": [entry], "aliases": []})
    assert model["created"] == 1776729600  # 2026-04-21T00:00:00Z
