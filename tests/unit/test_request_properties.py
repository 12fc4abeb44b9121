"""Property: no JSON value of any shape makes the request models raise anything but a 400."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from image_common.errors import InvalidRequest
from image_service.models import ImageGenerationRequest, parse_invoke_event, parse_request

FUZZ = settings(
    max_examples=150,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)

JSON_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


def field(*good: st.SearchStrategy) -> st.SearchStrategy:
    """Mostly plausible values for a field, sometimes any JSON value at all."""
    return st.one_of(*good, JSON_VALUES)


IMAGE_SETTINGS = st.fixed_dictionaries(
    {},
    optional={
        "model": field(st.sampled_from(["openai", "grok", "sd3.5-large", "gemini", "GROK", "x"])),
        "width": field(st.integers(-10, 10_000)),
        "height": field(st.integers(-10, 10_000)),
        "quality": field(st.sampled_from(["low", "HIGH", "hd", "ultra"])),
        "n": field(st.integers(-1, 12)),
        "seed": field(st.integers(-1, 2**33)),
        "aspect_ratio": field(st.sampled_from(["16:9", "1:1", "0:1", "wide"])),
        "output_format": field(st.sampled_from(["png", "JPG", "gif"])),
        "negative_prompt": field(st.text(max_size=10)),
        "style_preset": field(st.text(max_size=10)),
        "input_images": field(st.lists(st.text(max_size=10), max_size=3)),
        "mask": field(st.text(max_size=10)),
        "provider_options": field(st.dictionaries(st.text(max_size=5), JSON_VALUES, max_size=3)),
        "steps": JSON_VALUES,
    },
)
REQUEST_SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "prompt": field(st.text(max_size=30)),
        "customer_id": field(st.integers(-3, 2**64), st.just(123)),
        "save_to_db": field(st.booleans()),
        "settings": field(st.fixed_dictionaries({}, optional={"image": field(IMAGE_SETTINGS)})),
        "callback": JSON_VALUES,
    },
)
ANY_PAYLOAD = st.one_of(REQUEST_SHAPED, JSON_VALUES)


@FUZZ
@given(ANY_PAYLOAD)
def test_any_payload_is_a_request_or_a_400(payload):
    try:
        request = parse_request(payload)
    except InvalidRequest as error:
        assert error.status == 400 and error.message
    else:
        assert isinstance(request, ImageGenerationRequest)
        assert isinstance(request.customer_id, int) and not isinstance(request.customer_id, bool)
        assert request.customer_id > 0


@FUZZ
@given(st.one_of(st.fixed_dictionaries({"input": ANY_PAYLOAD, "customer_id": JSON_VALUES}),
                 ANY_PAYLOAD))  # fmt: skip
def test_any_invoke_event_is_a_request_or_a_400(event):
    try:
        parse_invoke_event(event)
    except InvalidRequest as error:
        assert error.status == 400 and error.message
