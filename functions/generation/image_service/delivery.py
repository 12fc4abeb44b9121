"""Delivery: a provider's images become the answer's ``data`` — stored, or kept for inlining.

Used by every job, whichever way its provider works: a synchronous provider's worker delivers
what the call returned, a submit/poll provider's store step what it downloaded. ``deliver``
writes the bytes and returns the data a record keeps (keys, never URLs or bytes);
``present`` turns that into what a reader gets, with fresh URLs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from image_common.settings import ServiceSettings
from image_service.models import ImageGenerationRequest
from image_service.providers.base import (
    GeneratedImage,
    ProviderRequest,
    ProviderResult,
    SettingWarning,
)
from image_service.registry import ModelSpec
from image_service.storage import ImageStore, prompt_hash

_DATA_URL_OVERHEAD = 64  # "data:image/webp;base64," and JSON quoting, per image


@dataclass(frozen=True)
class PreparedGeneration:
    """A request resolved and fitted to its model, ready for a provider."""

    request: ImageGenerationRequest
    model: ModelSpec
    provider_request: ProviderRequest
    warnings: list[SettingWarning]


def deliver(
    prepared: PreparedGeneration,
    result: ProviderResult,
    *,
    store: ImageStore,
    settings: ServiceSettings,
    job_id: str,
) -> dict[str, Any]:
    """Store the images (or keep them for an inline answer) and shape the answer's ``data``,
    with keys where the URLs will be."""
    request, model = prepared.request, prepared.model
    warnings = unique(prepared.warnings + result.warnings)
    keep = request.save_to_db
    if not keep and inline_size(result.images) > settings.max_response_bytes:
        keep = True
        warnings.append(
            SettingWarning(
                "adjusted-setting",
                "save_to_db",
                "The image is too large to return inline (Lambda's 6 MB response limit); "
                "it was stored and a URL returned instead.",
            )
        )
    metadata = {
        "provider": model.provider,
        "model": model.id,
        "prompt-sha256": prompt_hash(request.prompt),
        "customer-id": str(request.customer_id),
    }
    if keep:  # all of them or none: a part-way failure removes what was stored (no orphans)
        stored = store.store_images(
            request.customer_id, [item.image for item in result.images], metadata=metadata
        )
        entries: list[dict[str, Any]] = [{"image_key": key} for key in stored]
    else:  # not the customer's assets: transient copies under jobs/, inlined when read
        entries = [
            {
                "inline_key": store.put_job_answer_image(
                    request.customer_id, job_id, f"output-{i}", item.image
                )
            }
            for i, item in enumerate(result.images)
        ]
    images = [
        entry | _image_fields(item) for entry, item in zip(entries, result.images, strict=True)
    ]
    settings_sent = prepared.provider_request.settings
    data: dict[str, Any] = {
        **{k: v for k, v in images[0].items() if k in ("image_key", "inline_key")},
        "provider": model.provider,
        "model": model.id,
        "settings": settings_sent.reported(),
        "warnings": [w.to_dict() for w in warnings],
        "cost_usd": _cost(result, model, settings_sent, len(images)),
        **_image_fields(result.images[0]),
        "job_id": job_id,
    }
    if result.usage:
        data["usage"] = result.usage
    if len(images) > 1:
        data["images"] = images
    return data


def present(data: dict[str, Any], store: ImageStore) -> dict[str, Any]:
    """A record's ``data`` as a reader gets it: a fresh URL for every stored key, and the bytes
    of an inline answer as data URLs."""
    urls: dict[str, str] = {}

    def url(entry: dict[str, Any]) -> dict[str, Any]:
        shown = {k: v for k, v in entry.items() if k != "inline_key"}
        if "inline_key" in entry:
            key = entry["inline_key"]
            if key not in urls:
                urls[key] = store.read_job_bytes(key).to_data_url()
            shown["image_url"] = urls[key]
        elif "image_key" in entry:
            shown["image_url"] = store.url_for(entry["image_key"])
        return shown

    answer = url(data)
    answer = {"image_url": answer.pop("image_url", None), **answer}
    if "images" in data:
        answer["images"] = [url(entry) for entry in data["images"]]
    return answer


def _image_fields(item: GeneratedImage) -> dict[str, Any]:
    fields: dict[str, Any] = {"content_type": item.image.mime_type}
    if item.revised_prompt:
        fields["revised_prompt"] = item.revised_prompt
    if item.seed is not None:
        fields["seed"] = item.seed
    return fields


def unique(warnings: list[SettingWarning]) -> list[SettingWarning]:
    return list(dict.fromkeys(warnings))


def inline_size(images: list[GeneratedImage]) -> int:
    """The answer's size with every image inline. With ``n > 1`` the first data URL is in it
    twice: as ``image_url`` and as ``images[0].image_url``."""
    sizes = [i.image.data_url_length + _DATA_URL_OVERHEAD for i in images]
    return sum(sizes) + (sizes[0] if len(sizes) > 1 else 0)


def _cost(result: ProviderResult, model: ModelSpec, settings, count: int) -> float | None:
    """The provider's own figure when it gives one, else the registry's price, else None."""
    if result.cost_usd is not None:
        return result.cost_usd
    price = model.pricing.image_price(
        quality=settings.quality or "auto", size=settings.size, resolution=settings.resolution
    )
    return None if price is None else round(price * count, 6)
