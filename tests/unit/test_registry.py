"""The model catalog: names resolve by date, shut-down models go to live successors, every
alias keeps working on every side of every shutdown date, unknowns are 400.

Every test passes its own date: none depends on the real calendar."""

import datetime
import json

import pytest

from image_common.errors import UnknownModel
from image_service.registry import (
    ALIASES,
    CATALOG_FILE,
    DEFAULT_MODEL,
    MODELS,
    SHIPPED_CATALOG,
    family_of,
    parse_catalog,
    shipped_document,
)

TODAY = datetime.date(2026, 11, 30)
DAY = datetime.timedelta(days=1)
SHUTDOWN_DATES = sorted({m.shutdown_date for m in MODELS.values() if m.shutdown_date})
# Today, and the day before and the day of every shutdown date in the catalog.
DATES = sorted({TODAY} | {d - DAY for d in SHUTDOWN_DATES} | set(SHUTDOWN_DATES))
SEED_ALIASES = ("openai", "dall-e", "gpt-image-1", "stability", "sd3.5-large", "core", "flux-dev",
                "flux-pro-1.1", "flux-kontext-pro", "gemini", "imagen", "grok", "grok-2-image")  # fmt: skip


def resolve(name, today=TODAY, **kwargs):
    return SHIPPED_CATALOG.resolve(name, today=today, **kwargs)


@pytest.mark.parametrize("today", DATES, ids=str)
@pytest.mark.parametrize("name", [None, *MODELS, *ALIASES])
def test_every_name_resolves_to_a_model_alive_on_that_day(name, today):
    resolved = resolve(name, today)
    assert resolved.spec.status_on(today) != "retired"
    asked = MODELS[ALIASES.get(name or DEFAULT_MODEL, name or DEFAULT_MODEL)]
    assert resolved.spec.provider == asked.provider  # never billed by another provider
    if asked.status_on(today) == "retired":
        assert resolved.retired == asked
        kinds = [kind for kind, _ in resolved.lifecycle_notes()]
        assert kinds[0] == "model-retired"
    else:
        assert resolved.spec == asked and resolved.retired is None


@pytest.mark.parametrize("name", SEED_ALIASES)
def test_every_seed_name_still_resolves_today(name):
    assert resolve(name).spec.status_on(TODAY) in ("active", "preview", "deprecated")


@pytest.mark.parametrize(
    ("name", "model_id"),
    [
        (None, "gpt-image-2.5-flare"),
        ("", "gpt-image-2.5-flare"),
        ("OpenAI", "gpt-image-2.5-flare"),
        ("gpt-image-2", "gpt-image-2"),
        ("gpt-image-2-2026-04-21", "gpt-image-2-2026-04-21"),
        ("gpt-image-2.6-flare", "gpt-image-2.6-flare"),
        ("stability", "sd3.5-large"),
        ("ULTRA", "ultra"),
        ("flux", "flux-2-pro"),
        ("flux-dev", "flux-dev"),
        ("flux-kontext", "flux-kontext-pro"),
        ("gemini", "gemini-3.1-flash-image"),
        ("gemini-pro-image", "gemini-3-pro-image"),
        ("grok", "grok-imagine-image"),
        ("  grok-imagine-image-2.0 ", "grok-imagine-image-2.0"),
    ],
)
def test_names_and_aliases_resolve_to_live_models_today(name, model_id):
    resolved = resolve(name)
    assert resolved.spec.id == model_id
    assert resolved.retired is None and not resolved.deprecated


@pytest.mark.parametrize(
    ("name", "retired", "successor"),
    [
        ("dall-e", "dall-e-3", "gpt-image-2"),
        ("dall-e-2", "dall-e-2", "gpt-image-2"),
        ("gpt-image-1", "gpt-image-1", "gpt-image-2.5-flare"),
        ("imagen", "imagen-4.0-generate-001", "gemini-3.1-flash-image"),
        ("imagen-3", "imagen-3.0-generate-002", "gemini-3.1-flash-image"),
        ("gemini-2.5-flash-image", "gemini-2.5-flash-image", "gemini-3.1-flash-image"),
        ("gemini-3-pro-image-preview", "gemini-3-pro-image-preview", "gemini-3-pro-image"),
        ("grok-2-image", "grok-2-image", "grok-imagine-image"),
        ("grok-imagine-image-pro", "grok-imagine-image-quality", "grok-imagine-image-2.0"),
    ],
)
def test_shut_down_models_resolve_to_their_successor_with_a_dated_warning(name, retired, successor):
    resolved = resolve(name)
    assert (resolved.spec.id, resolved.retired.id) == (successor, retired)
    [(kind, message)] = resolved.lifecycle_notes()
    assert kind == "model-retired"
    assert retired in message and successor in message
    assert MODELS[retired].shutdown_date.isoformat() in message


def test_gpt_image_1_5_serves_with_a_deprecation_warning_until_its_shutdown_date():
    before = resolve("gpt-image-1.5", datetime.date(2026, 11, 30))
    assert before.spec.id == "gpt-image-1.5" and before.retired is None
    [(kind, message)] = before.lifecycle_notes()
    assert kind == "model-deprecated"
    assert "2026-12-01" in message and "gpt-image-2.6-flare" in message

    on_the_day = resolve("gpt-image-1.5", datetime.date(2026, 12, 1))
    assert on_the_day.spec.id == "gpt-image-2.6-flare"
    assert [k for k, _ in on_the_day.lifecycle_notes()] == ["model-retired"]


def test_gpt_image_1_was_served_directly_the_day_before_its_shutdown():
    resolved = resolve("gpt-image-1", datetime.date(2026, 10, 22))
    assert resolved.spec.id == "gpt-image-1" and resolved.deprecated
    assert resolve("gpt-image-1", datetime.date(2026, 10, 23)).spec.id == "gpt-image-2.5-flare"


def test_status_is_computed_from_dates():
    spec = MODELS["gpt-image-1.5"]
    assert spec.status_on(datetime.date(2026, 11, 30)) == "deprecated"
    assert spec.status_on(datetime.date(2026, 12, 1)) == "retired"
    assert MODELS["gpt-image-2"].status_on(TODAY) == "active"
    preview = MODELS["gemini-3-pro-image-preview"]
    assert preview.status_on(datetime.date(2026, 6, 24)) == "deprecated"
    assert preview.status_on(datetime.date(2026, 6, 25)) == "retired"


def test_a_deployment_can_keep_serving_a_shut_down_model():
    resolved = resolve("dall-e-3", enabled_retired=frozenset({"dall-e-3"}))
    assert resolved.spec.id == "dall-e-3" and resolved.retired is None


@pytest.mark.parametrize(
    ("name", "provider", "must_list"),
    [
        ("flux-schnell-9", "flux", "flux-2-pro"),
        ("gpt-image-9", "openai", "gpt-image-2"),
        ("sdxl-turbo", "stability", "sd3.5-large"),
        ("midjourney", None, "core"),
    ],
)
def test_unknown_model_is_a_400_listing_accepted_names(name, provider, must_list):
    with pytest.raises(UnknownModel) as caught:
        resolve(name)
    error = caught.value
    assert error.status == 400 and error.type == "unknown_model"
    assert must_list in error.details["accepted_models"]
    assert must_list in error.message
    if provider:  # a known family lists only its own models: no silent cross-provider billing
        assert all(
            family_of(n) == provider or n in ALIASES for n in error.details["accepted_models"]
        )


def test_catalog_names_belong_to_their_provider_family():
    assert MODELS[DEFAULT_MODEL].status_on(TODAY) == "active"
    for alias, target in ALIASES.items():
        assert family_of(alias) == MODELS[target].provider, alias
    for spec in MODELS.values():
        assert family_of(spec.id) == spec.provider, spec.id


def _document_with(change):
    document = shipped_document()
    change(document)
    return document


def _model(document, model_id):
    return next(m for m in document["models"] if m["id"] == model_id)


@pytest.mark.parametrize(
    ("change", "complaint"),
    [
        (lambda d: _model(d, "gpt-image-2").update(successor="gpt-image-2",
                                                   shutdown_date="2027-01-01"), "loops"),
        (lambda d: _model(d, "gpt-image-2").update(shutdown_date="2027-01-01"), "successor"),
        (lambda d: _model(d, "gpt-image-2").update(shutdown_date="2027-01-01",
                                                   successor="no-such-model"), "no-such-model"),
        (lambda d: _model(d, "gpt-image-2").update(shutdown_date="2027-01-01",
                                                   successor="flux-2-pro"), "provider"),
        (lambda d: d["aliases"].update(openai="gpt-image-7"), "gpt-image-7"),
        (lambda d: d.update(default_model="gpt-image-7"), "default_model"),
        (lambda d: _model(d, "flux-2-pro").update(api="flux-3"), "flux-3"),
        (lambda d: _model(d, "gemini-3-pro-image").update(capabilities={"sizes": ["1024x1024"]}),
         "one"),
        (lambda d: _model(d, "gpt-image-2").update(shutdown_date="soon"), "shutdown_date"),
        (lambda d: d["models"].append(dict(_model(d, "core"))), "twice"),
    ],
)  # fmt: skip
def test_an_inconsistent_catalog_is_refused_naming_the_fault(change, complaint):
    with pytest.raises(ValueError, match=complaint):
        parse_catalog(_document_with(change))


def test_a_loop_of_successors_is_refused():
    def loop(document):
        _model(document, "gpt-image-2").update(successor="gpt-image-2.5-flare",
                                               shutdown_date="2027-01-01")  # fmt: skip
        _model(document, "gpt-image-2.5-flare").update(successor="gpt-image-2",
                                                       shutdown_date="2027-02-01")  # fmt: skip

    with pytest.raises(ValueError, match="loops"):
        parse_catalog(_document_with(loop))


def test_the_shipped_catalog_file_is_plain_json_ops_can_read():
    document = json.loads(CATALOG_FILE.read_text(encoding="utf-8"))
    assert {m["id"] for m in document["models"]} == set(MODELS)


def test_pricing_lookup_prefers_the_most_specific_entry():
    pricing = MODELS["gpt-image-1"].pricing
    assert pricing.image_price(quality="high", size="1536x1024") == 0.25
    assert pricing.image_price(quality="high", size="1024x1024") == 0.167
    assert MODELS["gemini-3-pro-image"].pricing.image_price(
        quality=None, size=None, resolution="4K"
    ) == 0.24  # fmt: skip
    assert MODELS["grok-imagine-image-2.0"].pricing.image_price(quality="low", size=None) is None


def test_flux_2_list_price_counts_megapixels_input_included():
    pricing = MODELS["flux-2-pro"].pricing
    assert pricing.megapixel_price(output_pixels=1024 * 1024) == 0.045  # 2 MP (1.05 MP → 2)
    assert pricing.megapixel_price(output_pixels=1_000_000) == 0.03
    assert pricing.megapixel_price(output_pixels=1_000_000, input_pixels=2_000_000) == 0.06


def test_token_cost_is_unknown_when_a_counted_kind_has_no_price():
    pricing = MODELS["gpt-image-2"].pricing
    assert pricing.token_cost(text_input=1_000_000, image_input=0, image_output=0) == 5.0
    assert pricing.token_cost(text_input=100, image_input=200, image_output=1000) == round(
        (100 * 5 + 200 * 8 + 1000 * 30) / 1_000_000, 6
    )
    assert MODELS["grok-imagine-image"].pricing.token_cost(image_output=10) is None


# --- the admission estimate: what a request reserves against the customer's budget ---------------


@pytest.mark.parametrize(
    "model_id", [m for m, spec in MODELS.items() if spec.status_on(TODAY) != "retired"]
)
def test_every_servable_model_reserves_a_positive_estimate_for_a_bare_request(model_id):
    """A model added without any price fails here: it would reserve $0 and let a customer just
    under its budget start any number of jobs."""
    spec = MODELS[model_id]
    assert spec.admission_estimate(quality="auto", size=None, resolution=None) > 0
    assert spec.admission_estimate(quality=None, size=None, resolution=None) > 0


def test_a_megapixel_model_with_no_size_is_estimated_at_the_size_it_is_sent_at():
    flux = MODELS["flux-2-pro"]
    assert flux.capabilities.default_size == "1024x1024"
    assert flux.admission_estimate(quality=None, size=None) == 0.045  # 1.05 MP → 2 MP
    assert flux.admission_estimate(quality=None, size="2048x2048") == 0.03 + 4 * 0.015


def test_the_reserve_figure_applies_only_where_no_list_price_does_and_is_never_a_list_price():
    grok = MODELS["grok-imagine-image-2.0"]
    assert grok.admission_estimate(quality="medium", size=None) == grok.pricing.reserve_usd == 0.08
    assert grok.pricing.image_price(quality="medium", size=None) is None  # cost stays unknown
    gpt = MODELS["gpt-image-1.5"]
    assert gpt.admission_estimate(quality="low", size=None) == 0.009  # the list price wins
    assert gpt.admission_estimate(quality="auto", size=None) == gpt.pricing.reserve_usd


def test_a_reserve_figure_must_be_positive():
    with pytest.raises(ValueError, match="reserve_usd"):
        parse_catalog(
            _document_with(
                lambda d: _model(d, "grok-imagine-image-2.0").update(pricing={"reserve_usd": 0})
            )
        )
