"""The request contract of ``POST /image/generate`` and of a direct invoke (pydantic v2).

The seed contract is kept exactly (``prompt``, ``settings.image.{model,width,height,quality}``,
``customer_id``, ``save_to_db``); the optional additions of DESIGN.md sit beside it.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from image_common.errors import InvalidRequest

MAX_PROMPT_CHARS = 32000
MAX_INPUT_IMAGES = 16
MAX_SEED = 4_294_967_294
OutputFormat = Literal["png", "jpeg", "webp"]


class ImageSettings(BaseModel):
    # Unknown keys are kept (not rejected, not dropped) so the answer can warn about each one.
    model_config = ConfigDict(extra="allow", str_strip_whitespace=True)

    model: str | None = Field(default=None, max_length=100, description="Model name or alias.")
    width: int | None = Field(default=None, ge=64, le=8192)
    height: int | None = Field(default=None, ge=64, le=8192)
    quality: Literal["low", "medium", "high", "auto", "standard", "hd"] | None = None
    negative_prompt: str | None = Field(default=None, max_length=10000)
    seed: int | None = Field(default=None, ge=0, le=MAX_SEED)
    style_preset: str | None = Field(default=None, max_length=64)
    output_format: OutputFormat | None = None
    n: int = Field(default=1, ge=1, le=10, description="How many images.")
    aspect_ratio: str | None = Field(default=None, pattern=r"^[1-9]\d?:[1-9]\d?$")
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

    @field_validator("quality", "style_preset", mode="before")
    @classmethod
    def _lower(cls, value: Any) -> Any:
        return value.strip().lower() if isinstance(value, str) else value

    @model_validator(mode="after")
    def _mask_needs_an_image(self) -> ImageSettings:
        if self.mask and not self.input_images:
            raise ValueError("mask needs an input image to edit")
        return self

    def unknown_fields(self) -> list[str]:
        return sorted((self.model_extra or {}).keys())


class RequestSettings(BaseModel):
    model_config = ConfigDict(extra="allow")  # other sections (e.g. "text") belong to others

    image: ImageSettings = Field(default_factory=ImageSettings)


class ImageGenerationRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    prompt: str = Field(min_length=1, max_length=MAX_PROMPT_CHARS)
    settings: RequestSettings = Field(default_factory=RequestSettings)
    customer_id: int = Field(gt=0)
    save_to_db: bool = True

    @field_validator("prompt")
    @classmethod
    def _prompt_not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("prompt must not be empty")
        return value

    @property
    def image(self) -> ImageSettings:
        return self.settings.image


def parse_request(payload: Any) -> ImageGenerationRequest:
    """Validate a request body; any problem is one 400 that names every bad field."""
    if not isinstance(payload, dict):
        raise InvalidRequest("The request body must be a JSON object.")
    try:
        return ImageGenerationRequest.model_validate(payload)
    except ValidationError as exc:
        raise InvalidRequest(
            "Invalid request: " + "; ".join(_describe(e) for e in exc.errors()),
            details={"fields": [_field_name(e) for e in exc.errors()]},
        ) from None


def _field_name(error: dict) -> str:
    return ".".join(str(part) for part in error["loc"]) or "body"


def _describe(error: dict) -> str:
    # The message only, never the input value: a prompt or an image may be large or private.
    return f"{_field_name(error)}: {error['msg']}"
