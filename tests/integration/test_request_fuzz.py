"""Property: whatever body arrives, the HTTP handler answers with an envelope, never a 500.

Raw bytes (an image upload, other encodings, broken base64), text, deep nesting and
request-shaped JSON with wrong types go through the real handler, with moto S3 and the
provider emulators behind it, so a body that happens to be valid runs the whole path.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_service.models import MAX_SEED
from tests.conftest import http_event
from tests.unit.test_request_properties import JSON_VALUES, REQUEST_SHAPED

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


@pytest.fixture
def generation(s3, emulators):
    import generation as module

    module.image_service.cache_clear()
    yield module
    module.image_service.cache_clear()


def nested(depth: int, opener: str, closer: str) -> str:
    return (
        '{"prompt": "a", "customer_id": 123, "settings": ' + opener * depth + closer * depth + "}"
    )


# Requests that are valid, or nearly: these reach the providers (emulated) and S3.
PLAUSIBLE = st.fixed_dictionaries(
    {"prompt": st.text(min_size=1, max_size=40), "customer_id": st.just(123)},
    optional={
        "save_to_db": st.booleans(),
        "settings": st.fixed_dictionaries(
            {
                "image": st.fixed_dictionaries(
                    {},
                    optional={
                        "model": st.sampled_from(
                            [
                                "openai",
                                "gpt-image-2",
                                "dall-e-3",
                                "sd3.5-large",
                                "core",
                                "ultra",
                                "gemini",
                                "imagen",
                                "grok",
                                "GROK-imagine-image",
                            ]
                        ),  # fmt: skip
                        "width": st.integers(64, 4096),
                        "height": st.integers(64, 4096),
                        "aspect_ratio": st.sampled_from(["16:9", "1:1", "9:21", "3:2", "99:1"]),
                        "quality": st.sampled_from(["low", "medium", "high", "auto", "hd"]),
                        "n": st.integers(1, 3),
                        "seed": st.integers(0, MAX_SEED),
                        "output_format": st.sampled_from(["png", "jpeg", "webp", "jpg"]),
                        "negative_prompt": st.text(max_size=20),
                        "style_preset": st.sampled_from(["anime", "photographic", "none"]),
                        "provider_options": st.dictionaries(
                            st.sampled_from(["background", "moderation", "x"]),
                            JSON_VALUES,
                            max_size=2,
                        ),  # fmt: skip
                    },
                )
            }
        ),
    },
)

RAW_BODIES = st.one_of(
    PLAUSIBLE.map(lambda body: (json.dumps(body), False)),
    st.binary(max_size=200).map(lambda raw: (base64.b64encode(raw).decode(), True)),
    st.text(max_size=200).map(lambda text: (text, False)),
    st.text(max_size=50).map(lambda text: (text, True)),  # flagged base64, maybe not
    st.integers(1, 3000).map(lambda d: (nested(d, "[", "]"), False)),
    st.integers(1, 3000).map(lambda d: (nested(d, '{"a":', "}").replace("}}", "1}}", 1), False)),
    st.one_of(REQUEST_SHAPED, JSON_VALUES).map(lambda body: (json.dumps(body), False)),
    REQUEST_SHAPED.map(lambda body: (base64.b64encode(json.dumps(body).encode()).decode(), True)),
)


@FUZZ
@given(RAW_BODIES)
def test_no_body_makes_the_handler_answer_500(generation, lambda_context, body_and_flag):
    body, is_base64 = body_and_flag
    event = http_event()
    event.update(body=body, isBase64Encoded=is_base64)
    response = generation.handler(event, lambda_context)
    answer = json.loads(response["body"])
    assert response["statusCode"] != 500, answer
    assert answer["code"] == response["statusCode"]
    assert answer["success"] is (response["statusCode"] < 400)
