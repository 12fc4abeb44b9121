"""The request contract of ``POST /image/generate`` and of a direct invoke (pydantic v2).

The seed contract is kept exactly (``prompt``, ``settings.image.{model,width,height,quality}``,
``customer_id``, ``save_to_db``); the optional additions of DESIGN.md sit beside it.

Strict on purpose: a field we do not know is a 400 that names it (a typo such as
``save_to_bd`` or an OpenAI-shaped ``size`` must not be served as defaults), provider-only
parameters go in ``provider_options``, and numbers and flags are JSON numbers and booleans —
``true`` is not customer 1, ``"1024"`` is not a width.
"""

from __future__ import annotations

from typing import Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from image_common.errors import InvalidRequest
from image_common.json_body import check_json_value

MAX_PROMPT_CHARS = 32000
MAX_INPUT_IMAGES = 16
MAX_SEED = 4_294_967_294
MAX_CUSTOMER_ID = 2**63 - 1  # a signed 64-bit id: what any store of customers can hold
OutputFormat = Literal["png", "jpeg", "webp"]
M = TypeVar("M", bound=BaseModel)


class StrictModel(BaseModel):
    """Unknown fields are errors, JSON types are exact, and ``null`` means "not given"
    (strict tool schemas make an agent send ``null`` for every setting it leaves out)."""

    model_config = ConfigDict(extra="forbid", strict=True)

    @model_validator(mode="before")
    @classmethod
    def _null_is_absent(cls, data: Any) -> Any:
        if isinstance(data, dict):
            return {key: value for key, value in data.items() if value is not None}
        return data


class ImageSettings(StrictModel):
    model_config = ConfigDict(str_strip_whitespace=True)

    model: str | None = Field(default=None, max_length=100, description="Model name or alias.")
    width: int | None = Field(default=None, ge=64, le=8192)
    height: int | None = Field(default=None, ge=64, le=8192)
    quality: Literal["low", "medium", "high", "xhigh", "max", "auto", "standard", "hd"] | None = (
        None
    )
    complexity: Literal["low", "medium", "high"] | None = Field(
        default=None, description="gpt-image-2.6 only: how much effort the layout gets."
    )
    negative_prompt: str | None = Field(default=None, max_length=10000)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    style_preset: str | None = Field(default=None, max_length=64)
    output_format: OutputFormat | None = None
    n: int = Field(default=1, ge=1, le=10, description="How many images.")
    # "16:9"; xAI's 2.0 also takes halves ("9:19.5")
    aspect_ratio: str | None = Field(default=None, pattern=r"^[1-9]\d?(\.5)?:[1-9]\d?(\.5)?$")
    input_images: list[str] = Field(
        default_factory=list,
        max_length=MAX_INPUT_IMAGES,
        description="Images for image-to-image or edits: data URLs, https URLs, or keys of the "
        "caller's stored assets (customers/{id}/assets/image/…).",
    )
    mask: str | None = Field(default=None, description="Edit mask (PNG, alpha 0 = area to edit).")
    provider_options: dict[str, Any] = Field(
        default_factory=dict, description="Provider-only parameters, passed through as given."
    )

    @field_validator("output_format", mode="before")
    @classmethod
    def _jpg_is_jpeg(cls, value: Any) -> Any:
        if isinstance(value, str) and value.strip().lower() in ("jpg", "jpeg"):
            return "jpeg"
        return value.lower() if isinstance(value, str) else value

    @field_validator("quality", "complexity", "style_preset", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _mask_needs_an_image(self) -> ImageSettings:
        if self.mask and not self.input_images:
            raise ValueError("mask needs an input image to edit")
        return self


class RequestSettings(StrictModel):
    # Only the image section: another key (a typo such as "imgae", or a chat app's "text"
    # section forwarded whole) is a 400 rather than an image made with silent defaults.
    image: ImageSettings = Field(default_factory=ImageSettings)


class GenerateImageInput(StrictModel):
    """What the caller chooses: the ``generate_image`` tool's input (an LLM may fill it in)."""

    prompt: str = Field(
        min_length=1, max_length=MAX_PROMPT_CHARS, description="What the image should show."
    )
    settings: RequestSettings = Field(default_factory=RequestSettings)
    save_to_db: bool = Field(
        default=True,
        description="true: store the image and return its URL; false: return a data: URL.",
    )

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value

    @property
    def image(self) -> ImageSettings:
        return self.settings.image


class ImageGenerationRequest(GenerateImageInput):
    """A whole request: the input and whose space it runs in (never chosen by an LLM)."""

    customer_id: int = Field(gt=0, le=MAX_CUSTOMER_ID)
    callback_url: str | None = Field(
        default=None,
        max_length=2048,
        description="An https URL that receives a signed POST (Standard Webhooks) when the "
        "job ends: {type: image.job.succeeded | image.job.failed, data}.",
    )


class ToolInvocation(StrictModel):
    """A tool executor's direct invoke: the customer from its trusted session, beside the
    tool input the model produced — never merged into it, so the model cannot choose it."""

    customer_id: int = Field(gt=0, le=MAX_CUSTOMER_ID)
    input: GenerateImageInput


def parse_request(payload: Any) -> ImageGenerationRequest:
    """Validate a request body; any problem is one 400 that names every bad field."""
    return _validate(ImageGenerationRequest, payload)


def parse_invoke_event(payload: Any) -> ImageGenerationRequest:
    """A direct invoke: a tool invocation ``{"customer_id", "input"}``, or a plain request."""
    if isinstance(payload, dict) and "input" in payload:
        invocation = _validate(ToolInvocation, payload)
        fields = {name: getattr(invocation.input, name) for name in GenerateImageInput.model_fields}
        return ImageGenerationRequest.model_validate(
            fields | {"customer_id": invocation.customer_id}
        )
    return parse_request(payload)


def _validate(model: type[M], payload: Any) -> M:
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    check_json_value(payload)  # bounded depth, valid Unicode: before pydantic walks it
    try:
        return model.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(
            "Invalid request: " + "; ".join(_describe(e) for e in exc.errors()),
            details={"fields": [_field_name(e) for e in exc.errors()]},
        ) from None


def _field_name(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "body"


def _describe(error: dict) -> str:
    # The message only, never the input value: a prompt or an image may be large or private.
    if error["type"] == "extra_forbidden":
        return f"{_field_name(error)}: {_UNKNOWN_FIELD}"
    return f"{_field_name(error)}: {error['msg']}"


_UNKNOWN_FIELD = (
    "unknown field (provider-only parameters go in settings.image.provider_options; "
    "GET /image/models lists what each model supports)"
)
