"""Today's models over the local stack (the stack's calendar pinned to 2026-11-30): a request
with no model and with every seed alias produces a real image from a live model, with the
retirement warning where the asked model is dead; each new model makes an image end to end;
and no emulator — each judging by its provider's own lifecycle table — ever saw a dead id."""

from __future__ import annotations

import base64
import io
import time
from urllib.parse import unquote

import httpx
import pytest
from PIL import Image

from image_service.registry import ALIASES, DEFAULT_MODEL
from local.emulators.lifecycle import is_shut_down
from tests.e2e.conftest import E2E_DATE

pytestmark = pytest.mark.e2e

SEED_NAMES = (None, "openai", "dall-e", "gpt-image-1", "stability", "sd3.5-large", "core",
              "flux-dev", "flux-pro-1.1", "flux-kontext-pro", "gemini", "imagen", "grok",
              "grok-2-image")  # fmt: skip
PROVIDER_OF = {"openai": "openai", "stability": "stability", "flux": "flux", "google": "google",
               "xai": "xai"}  # fmt: skip


def png_data_url(width: int = 64, height: int = 64, colour=(200, 40, 40)) -> str:
    out = io.BytesIO()
    Image.new("RGB", (width, height), colour).save(out, format="PNG")
    return "data:image/png;base64," + base64.b64encode(out.getvalue()).decode()


def generate(api, local_stack, customer_id: int, prompt: str = "A lighthouse at dusk", **image):
    """POST /image/generate; a job (202) is followed to its final answer. The final response."""
    body = {"prompt": prompt, "settings": {"image": image}, "customer_id": customer_id}
    headers = local_stack.auth(customer_id)
    response = api.post("/image/generate", json=body, headers=headers)
    deadline = time.monotonic() + 30
    while response.status_code == 202:
        assert time.monotonic() < deadline, "the job never finished"
        time.sleep(0.2)
        response = api.get(response.json()["data"]["status_url"], headers=headers)
    return response


def fetched_image(data: dict) -> Image.Image:
    image = httpx.get(data["image_url"], timeout=10)
    assert image.status_code == 200
    picture = Image.open(io.BytesIO(image.content))
    picture.load()
    return picture


def models_sent(provider: str, emulator) -> set[str]:
    """Every model id the emulator was asked for, read off the wire as the provider reads it."""
    sent = set()
    for request in emulator.requests:
        if request.method != "POST":
            continue
        if provider == "google":
            sent.add(unquote(request.path.rsplit("/", 1)[-1].split(":")[0]))
        elif provider == "flux":
            sent.add(unquote(request.path.removeprefix("/v1/")))
        elif provider == "stability":
            form = {p.name: p.text for p in request.form() if p.filename is None}
            sent.add(form.get("model") or request.path.rsplit("/", 1)[-1])
        elif request.headers.get("content-type", "").startswith("multipart/"):
            sent |= {p.text for p in request.form() if p.name == "model"}
        else:
            sent.add(request.json().get("model"))
    return sent


@pytest.mark.parametrize("name", SEED_NAMES, ids=lambda n: n or "no-model")
def test_every_seed_name_makes_an_image_from_a_live_model(api, local_stack, name):
    customer = 9100 + SEED_NAMES.index(name)  # customers no other e2e module uses
    response = generate(api, local_stack, customer, **({"model": name} if name else {}))

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert not is_shut_down(data["provider"], data["model"], E2E_DATE)
    assert fetched_image(data).size[0] > 0
    asked = ALIASES.get(name or DEFAULT_MODEL, name or DEFAULT_MODEL)
    retired = [w for w in data["warnings"] if w["type"] == "model-retired"]
    if is_shut_down(data["provider"], asked, E2E_DATE):
        assert len(retired) == 1 and asked in retired[0]["message"]
        assert data["model"] in retired[0]["message"]
    else:
        assert retired == [] and data["model"] == asked


def test_flux_2_pro_takes_eight_reference_images(api, local_stack):
    references = [png_data_url(64, 64, (i * 30, 90, 200 - i * 20)) for i in range(8)]
    response = generate(api, local_stack, 9201, "Combine the eight swatches",
                        model="flux-2-pro", input_images=references, width=1024, height=1024)  # fmt: skip

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert (data["provider"], data["model"]) == ("flux", "flux-2-pro")
    submitted = local_stack.stack.emulators["flux"].submissions()[-1].json()
    assert [k for k in submitted if k.startswith("input_image")] == [
        "input_image",
        *(f"input_image_{i}" for i in range(2, 9)),
    ]
    assert (submitted["width"], submitted["height"]) == (1024, 1024)
    # BFL's submit answer: 3 credits for the first megapixel + 1.5 per further one (inputs too)
    assert data["cost_usd"] == pytest.approx(0.045)
    assert fetched_image(data).format == "JPEG"


def test_gpt_image_2_6_flare_at_xhigh(api, local_stack):
    response = generate(api, local_stack, 9202, model="gpt-image-2.6-flare", quality="xhigh",
                        width=1536, height=864)  # fmt: skip

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["model"] == "gpt-image-2.6-flare" and data["settings"]["quality"] == "xhigh"
    sent = local_stack.stack.emulators["openai"].requests[-1].json()
    assert (sent["quality"], sent["size"]) == ("xhigh", "1536x864")
    assert data["warnings"] == []
    assert fetched_image(data).size == (1536, 864)


def test_grok_imagine_image_2_0_at_low_quality(api, local_stack):
    response = generate(api, local_stack, 9203, model="grok-imagine-image-2.0", quality="low")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["model"] == "grok-imagine-image-2.0" and data["settings"]["quality"] == "low"
    assert data["cost_usd"] == pytest.approx(0.02)  # usage.cost_in_usd_ticks
    assert fetched_image(data).format == "JPEG"


def test_gemini_3_1_flash_image_at_one_to_eight(api, local_stack):
    response = generate(api, local_stack, 9204, model="gemini-3.1-flash-image", aspect_ratio="1:8")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["model"] == "gemini-3.1-flash-image" and data["settings"]["aspect_ratio"] == "1:8"
    width, height = fetched_image(data).size
    assert height == 8 * width


def test_a_deprecated_model_is_served_with_the_date_and_its_successor(api, local_stack):
    response = generate(api, local_stack, 9205, model="gpt-image-1.5")

    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["model"] == "gpt-image-1.5"
    [warning] = [w for w in data["warnings"] if w["type"] == "model-deprecated"]
    assert "2026-12-01" in warning["message"] and "gpt-image-2.6-flare" in warning["message"]


def test_the_models_listing_shows_status_shutdown_date_and_successor(api, local_stack):
    response = api.get("/image/models", headers=local_stack.auth(9206))

    assert response.status_code == 200
    models = {m["id"]: m for m in response.json()["data"]["models"]}
    assert models["gpt-image-1"]["status"] == "retired"
    assert models["gpt-image-1"]["shutdown_date"] == "2026-10-23"
    assert models["gpt-image-1"]["successor"] == "gpt-image-2.5-flare"
    assert models["gpt-image-1.5"]["status"] == "deprecated"
    assert models["flux-2-pro"]["status"] == "active"


def test_no_emulator_ever_received_a_dead_model_id(api, local_stack):
    """Runs last in this module: every request above (and every earlier e2e test's)."""
    for provider, emulator in local_stack.stack.emulators.items():
        dead = {m for m in models_sent(provider, emulator) if is_shut_down(provider, m, E2E_DATE)}
        assert dead == set(), f"{provider} was sent {dead}"
