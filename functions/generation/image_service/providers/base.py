"""The two interfaces a provider adapter implements, and the types they speak.

A synchronous adapter (``ImageProvider``) takes a normalised ``ProviderRequest`` (settings
already mapped to what the model supports, see ``normalize.py``) and returns image bytes, what
it actually sent, warnings and cost. An asynchronous one (``AsynchronousImageProvider``: Flux)
splits the same work into steps a job runs one by one — build the body, submit, poll, fetch the
result — because its provider answers with a task to poll. Neither knows anything of S3, of
this API's status codes, or of the other providers.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from image_common import settings as common_settings
from image_common.errors import (
    ContentPolicyViolation,
    ImageServiceError,
    PayloadTooLarge,
    ProviderError,
)
from image_service.http import download
from image_service.images import ImageBytes, check_base64, sniff_mime
from image_service.registry import ModelSpec

WarningType = Literal[
    "unsupported-setting", "adjusted-setting", "model-retired", "model-deprecated", "other"
]


@dataclass(frozen=True)
class SettingWarning:
    """A setting that was adjusted, mapped or ignored for this provider — never a silent drop."""

    type: WarningType
    setting: str | None
    message: str

    def to_dict(self) -> dict[str, Any]:
        return {"type": self.type, "setting": self.setting, "message": self.message}


@dataclass(frozen=True)
class GenerationSettings:
    """The service's settings vocabulary, already fitted to one model's capabilities."""

    n: int = 1
    width: int | None = None  # set when the model takes pixel sizes
    height: int | None = None
    aspect_ratio: str | None = None  # set when the model takes a ratio
    resolution: str | None = None  # size tier sent beside a ratio (Gemini, xAI)
    quality: str | None = None
    complexity: str | None = None  # gpt-image-2.6
    output_format: str | None = None
    seed: int | None = None
    negative_prompt: str | None = None
    style_preset: str | None = None

    @property
    def size(self) -> str | None:
        return f"{self.width}x{self.height}" if self.width and self.height else None

    def reported(self) -> dict[str, Any]:
        """What was sent, in the service's vocabulary (the answer's ``settings``)."""
        values = {
            "width": self.width,
            "height": self.height,
            "aspect_ratio": self.aspect_ratio,
            "resolution": self.resolution,
            "quality": self.quality,
            "complexity": self.complexity,
            "output_format": self.output_format,
            "seed": self.seed,
            "negative_prompt": self.negative_prompt,
            "style_preset": self.style_preset,
        }
        return {k: v for k, v in values.items() if v is not None} | {"n": self.n}


@dataclass(frozen=True)
class ProviderRequest:
    prompt: str
    model: ModelSpec
    settings: GenerationSettings
    input_images: tuple[ImageBytes, ...] = ()
    mask: ImageBytes | None = None
    provider_options: Mapping[str, Any] = field(default_factory=dict)
    timeout_seconds: float = 25.0


@dataclass(frozen=True)
class GeneratedImage:
    image: ImageBytes
    revised_prompt: str | None = None
    seed: int | None = None


@dataclass
class ProviderResult:
    images: list[GeneratedImage]
    sent: dict[str, Any]  # the provider's own field names and values (for logs and debugging)
    warnings: list[SettingWarning] = field(default_factory=list)
    cost_usd: float | None = None  # from the provider's own usage or cost fields, when given
    usage: dict[str, Any] | None = None  # the provider's token usage, in OpenAI's shape


class ImageProvider(Protocol):
    name: str

    def generate(self, request: ProviderRequest) -> ProviderResult:
        """Generate ``request.settings.n`` images (at most the model's images per call)."""
        ...


PollStatus = Literal["Pending", "Ready", "Moderated", "Error"]


@dataclass
class SubmitBody:
    """What ``submit`` sends (prompt and base64 images included) and the warnings of fitting it."""

    body: dict[str, Any]
    warnings: list[SettingWarning] = field(default_factory=list)


@dataclass(frozen=True)
class Submission:
    task_id: str
    polling_url: str
    cost_usd: float | None  # from the provider's submit answer, when it says


@dataclass(frozen=True)
class PollResult:
    """One poll, reduced to what the job branches on (``status``) and what it needs next."""

    status: PollStatus
    provider_status: str  # the provider's own word, for the job record
    result_url: str | None = None
    seed: int | None = None
    progress: float | None = None
    message: str | None = None

    def error(self) -> ImageServiceError | None:
        """The typed error of a poll that ended the task unsuccessfully."""
        if self.status == "Moderated":
            return ContentPolicyViolation(self.message or "The provider refused the request.")
        if self.status == "Error":
            return ProviderError(self.message or "The provider could not make the image.")
        return None


class AsynchronousImageProvider(ABC):
    """A provider that answers with a task to poll. A job calls these steps in this order:
    ``build_body`` and ``submit`` once, ``poll`` every interval until the task ends, then
    ``fetch_result`` — one loop for every such provider (the job's state machine)."""

    name: str

    @abstractmethod
    def build_body(self, request: ProviderRequest) -> SubmitBody:
        """The submit body for one image of ``request``; a bad option is an ``InvalidRequest``."""

    @abstractmethod
    def submit(self, model_id: str, body: dict[str, Any]) -> Submission: ...

    @abstractmethod
    def poll(self, task_id: str, polling_url: str) -> PollResult:
        """One look at the task. A transient failure reads as ``Pending``: the job's budget,
        not one unlucky poll, decides when to give up."""

    @abstractmethod
    def fetch_result(self, result_url: str) -> ImageBytes:
        """Download the finished image (with no credentials: a delivery host, not the API)."""


def merge_provider_options(
    body: dict[str, Any], options: Mapping[str, Any], *, reserved: frozenset[str]
) -> list[SettingWarning]:
    """Pass provider-only parameters through, except those the service itself controls."""
    warnings = []
    for key, value in options.items():
        if key in reserved:
            warnings.append(
                SettingWarning(
                    "unsupported-setting",
                    f"provider_options.{key}",
                    f"'{key}' is set by the service from the request; the provider option "
                    "was ignored.",
                )
            )
        else:
            body[key] = value
    return warnings


def provider_image(data: bytes, provider: str) -> ImageBytes:
    """Image bytes a provider returned; anything but PNG/JPEG/WebP is the provider's fault."""
    mime = sniff_mime(data)
    if mime is None:
        raise ProviderError(f"The {provider} provider returned data that is not an image.")
    return ImageBytes(data, mime)


RESULT_DOWNLOAD_LIMIT = 50 * 1024 * 1024


def provider_base64_image(text: Any, provider: str) -> ImageBytes:
    """A base64 image inside a provider's JSON answer, kept as that text: checked (bad base64 or
    non-image bytes are a 502) but not decoded, so a data URL answer passes it through as is."""
    if not isinstance(text, str) or not text:
        raise ProviderError(f"The {provider} provider returned an item without an image.")
    try:
        head, size = check_base64(text)
    except ValueError:
        raise ProviderError(f"The {provider} provider sent an image that is not base64.") from None
    mime = sniff_mime(head)
    if mime is None:
        raise ProviderError(f"The {provider} provider returned data that is not an image.")
    return ImageBytes.from_checked_base64(text, mime, size)


def download_provider_image(url: str, provider: str) -> ImageBytes:
    """A provider's result URL, fetched with the same SSRF guard as a caller's URL (no key sent)."""
    try:
        data = download(
            url,
            max_bytes=RESULT_DOWNLOAD_LIMIT,
            trusted_origins=common_settings.get_settings().trusted_origins,
            what=f"{provider} provider's image",
            error=ProviderError,
        )
    except PayloadTooLarge as error:  # the provider's oversized result is not the caller's 413
        raise ProviderError(error.message) from None
    return provider_image(data, provider)
