"""Input images for image-to-image and edits: data URLs, https URLs, or the caller's assets."""

from __future__ import annotations

from image_common.settings import ServiceSettings
from image_service.http import DOWNLOAD_TIMEOUT_SECONDS, download
from image_service.images import ImageBytes, decode_data_url, image_from_bytes, is_data_url
from image_service.storage import ImageStore


def load_input_image(
    reference: str,
    *,
    customer_id: int,
    store: ImageStore,
    settings: ServiceSettings,
    what: str,
    timeout_seconds: float = DOWNLOAD_TIMEOUT_SECONDS,
) -> ImageBytes:
    """``timeout_seconds``: what is left of the request's time for fetching a URL."""
    limit = settings.max_input_image_bytes
    if is_data_url(reference):
        return decode_data_url(reference, max_bytes=limit, what=what)
    if reference.lower().startswith(("https://", "http://")):
        data = download(
            reference,
            max_bytes=limit,
            trusted_origins=settings.trusted_origins,
            timeout_seconds=min(DOWNLOAD_TIMEOUT_SECONDS, timeout_seconds),
            what=what,
        )
        return image_from_bytes(data, what=what)
    return store.read_asset(customer_id, reference.lstrip("/"), max_bytes=limit)
