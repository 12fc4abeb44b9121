"""Per-stage settings from cdk.json: every stage validates, and mistakes fail with a clear name."""

from __future__ import annotations

import pytest

from infra.application import cdk_json_context
from infra.settings import SettingsError, StageSettings, load_stage_settings

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:image/jwt-AbCdEf"


def _load(stage_settings: dict, stage: str = "test") -> StageSettings:
    return load_stage_settings({"stage": stage, "stages": {stage: stage_settings}})


def test_every_stage_in_cdk_json_is_valid():
    context = cdk_json_context()
    assert context["stage"] in context["stages"]
    for stage in context["stages"]:
        settings = load_stage_settings(context, stage)
        assert settings.name == stage
        assert settings.stack_name == f"ImageService-{stage}"


def test_dev_and_prod_differ_where_they_should():
    context = cdk_json_context()
    dev, prod = load_stage_settings(context, "dev"), load_stage_settings(context, "prod")
    assert (dev.image_url.mode, prod.image_url.mode) == ("presigned", "cloudfront")
    assert (dev.storage.retain_data, prod.storage.retain_data) == (False, True)
    assert prod.log_retention_days > dev.log_retention_days
    assert not prod.jobs.log_execution_data  # prompts stay out of prod logs


def test_unknown_stage_lists_the_defined_ones():
    with pytest.raises(
        SettingsError, match=r"unknown stage 'staging'; cdk.json defines: dev, prod"
    ):
        load_stage_settings(cdk_json_context(), "staging")


def test_missing_stages_object_is_reported():
    with pytest.raises(SettingsError, match='no "stages" object'):
        load_stage_settings({"stage": "dev"})


def test_a_bad_value_names_its_path():
    with pytest.raises(SettingsError) as error:
        _load({"image_url": {"presign_expires_seconds": 10}})
    assert "stages.test.image_url.presign_expires_seconds" in str(error.value)


def test_a_misspelt_setting_is_rejected_not_ignored():
    with pytest.raises(SettingsError, match=r"stages.test.functions.memroy"):
        _load({"functions": {"memroy": 512}})


def test_the_catalog_overlay_retry_interval_cannot_be_zero():
    # 0 would read the parameter on every request again while SSM fails or throttles.
    with pytest.raises(SettingsError, match=r"stages.test.catalog.overlay_retry_seconds"):
        _load({"catalog": {"overlay_retry_seconds": 0}})
    assert _load({}).catalog.overlay_retry_seconds == 30


def test_log_retention_must_be_a_cloudwatch_period():
    with pytest.raises(SettingsError, match="log_retention_days must be one of"):
        _load({"log_retention_days": 10})


def test_jwks_mode_needs_url_issuer_and_audience():
    with pytest.raises(SettingsError, match="jwks mode needs jwks_url, issuer, audience"):
        _load({"jwt": {"mode": "jwks"}})


def test_jwks_url_must_be_https():
    with pytest.raises(SettingsError, match="jwt.jwks_url"):
        _load({"jwt": {"mode": "jwks", "jwks_url": "http://x/", "issuer": "i", "audience": ["a"]}})


def test_secret_mode_rejects_asymmetric_algorithms_and_jwks_fields():
    with pytest.raises(SettingsError, match="secret mode accepts only HS256"):
        _load({"jwt": {"algorithms": ["RS256"]}})
    with pytest.raises(SettingsError, match="only used in jwks mode"):
        _load({"jwt": {"issuer": "https://issuer/"}})


def test_an_existing_secret_needs_its_complete_arn():
    assert _load({"jwt": {"secret_arn": SECRET_ARN}}).jwt.secret_arn == SECRET_ARN
    with pytest.raises(SettingsError, match="jwt.secret_arn"):
        _load({"jwt": {"secret_arn": SECRET_ARN.removesuffix("-AbCdEf")}})


def test_generation_must_outlive_the_job_budget():
    with pytest.raises(SettingsError, match="must exceed jobs.max_budget_seconds"):
        _load({"functions": {"generation": {"memory_mb": 1024, "timeout_seconds": 60}}})


def test_generation_must_outlive_the_jobs_deadline_not_just_its_budget():
    # A direct invoke waits until budget + the finalize grace (60 + 30 s), and stops 10 s
    # before its own timeout: 80 s would give up on jobs that are still going to succeed.
    jobs = {"max_budget_seconds": 60}
    with pytest.raises(SettingsError, match="at least 100"):
        _load(
            {"jobs": jobs, "functions": {"generation": {"memory_mb": 1024, "timeout_seconds": 80}}}
        )
    assert _load(
        {"jobs": jobs, "functions": {"generation": {"memory_mb": 1024, "timeout_seconds": 100}}}
    )


def test_the_run_task_must_outlive_the_job_budget():
    with pytest.raises(SettingsError, match="functions.job_run.timeout_seconds"):
        _load({"functions": {"job_run": {"memory_mb": 1024, "timeout_seconds": 200}}})


def test_the_wait_for_a_job_fits_api_gateway():
    with pytest.raises(SettingsError, match="jobs.wait_seconds"):
        _load({"jobs": {"wait_seconds": 29}})


def test_the_finalize_grace_matches_the_generation_code():
    from image_service.job_records import FINALIZE_GRACE_SECONDS
    from infra.settings import JOB_FINALIZE_GRACE_SECONDS

    assert JOB_FINALIZE_GRACE_SECONDS == FINALIZE_GRACE_SECONDS


def test_the_http_path_provider_timeout_fits_api_gateway():
    with pytest.raises(SettingsError, match="provider_timeout_seconds"):
        _load({"functions": {"provider_timeout_seconds": 29}})


def test_a_custom_cdn_domain_needs_its_certificate_and_cloudfront_mode():
    with pytest.raises(SettingsError, match="go together"):
        _load({"image_url": {"mode": "cloudfront", "cdn_domain_name": "img.example.com"}})
    certificate = "arn:aws:acm:us-east-1:123456789012:certificate/0000-1111"
    with pytest.raises(SettingsError, match="only used in cloudfront mode"):
        _load(
            {
                "image_url": {
                    "cdn_domain_name": "img.example.com",
                    "cdn_certificate_arn": certificate,
                }
            }
        )


def test_alarm_emails_are_checked():
    with pytest.raises(SettingsError, match="not an email address: ops"):
        _load({"monitoring": {"alarm_emails": ["ops"]}})


def test_stage_names_become_resource_names_so_they_are_restricted():
    with pytest.raises(SettingsError, match="stages.Prod_1.name"):
        _load({}, stage="Prod_1")


def test_a_stage_that_requires_alarm_subscribers_refuses_to_have_none():
    with pytest.raises(SettingsError, match="requires alarm_emails or alarm_topic_arn"):
        _load({"monitoring": {"require_subscriber": True}})
    assert _load({"monitoring": {"require_subscriber": True, "alarm_emails": ["a@b.io"]}})


def test_a_created_web_acl_needs_cloudfront_mode_and_a_pinned_region():
    with pytest.raises(SettingsError, match="cloudfront mode"):
        _load({"edge": {"rate_limit_per_5_minutes": 1000}})
    with pytest.raises(SettingsError, match="set the stage's region"):
        _load({"image_url": {"mode": "cloudfront"}, "edge": {"rate_limit_per_5_minutes": 1000}})
    settings = _load(
        {
            "region": "eu-west-1",
            "image_url": {"mode": "cloudfront"},
            "edge": {"rate_limit_per_5_minutes": 1000},
        }
    )
    assert settings.edge.creates_web_acl


def test_an_existing_web_acl_must_be_a_cloudfront_acl_in_us_east_1():
    arn = "arn:aws:wafv2:{region}:123456789012:{scope}/webacl/edge/0123abcd-0123-4567-89ab-0123"
    with pytest.raises(SettingsError, match="edge.web_acl_arn"):
        _load(
            {
                "image_url": {"mode": "cloudfront"},
                "edge": {"web_acl_arn": arn.format(region="eu-west-1", scope="regional")},
            }
        )
    settings = _load(
        {
            "image_url": {"mode": "cloudfront"},
            "edge": {"web_acl_arn": arn.format(region="us-east-1", scope="global")},
        }
    )
    assert not settings.edge.creates_web_acl


def test_provider_secret_arns_name_known_providers_and_complete_arns():
    with pytest.raises(SettingsError, match="unknown provider"):
        _load({"provider_secret_arns": {"dalle": SECRET_ARN}})
    with pytest.raises(SettingsError, match="not a complete secret ARN"):
        _load({"provider_secret_arns": {"openai": "arn:aws:secretsmanager:x"}})
    assert _load({"provider_secret_arns": {"openai": SECRET_ARN}}).provider_secret_arns


def test_limits_and_deploys_differ_between_dev_and_prod():
    context = cdk_json_context()
    dev, prod = load_stage_settings(context, "dev"), load_stage_settings(context, "prod")
    assert dev.deploy.generation_traffic_shifting == "all_at_once"
    assert prod.deploy.generation_traffic_shifting.startswith("canary")
    assert prod.deploy.termination_protection and not dev.deploy.termination_protection
    with pytest.raises(SettingsError, match="monthly_budget_usd must be at least"):
        _load({"limits": {"daily_budget_usd": 10, "monthly_budget_usd": 5}})


def test_snapstart_is_on_by_default_and_in_every_shipped_stage():
    assert StageSettings(name="x").functions.snap_start
    context = cdk_json_context()
    for stage in context["stages"]:
        assert load_stage_settings(context, stage).functions.snap_start, stage


@pytest.mark.parametrize(
    ("region", "name"),
    [("ap-southeast-6", "Asia Pacific (New Zealand)"), ("ap-east-2", "Asia Pacific (Taipei)")],
)
def test_a_stage_in_a_region_without_snapstart_must_turn_it_off(region, name):
    with pytest.raises(SettingsError) as error:
        _load({"region": region})
    message = str(error.value)
    assert "functions.snap_start" in message and region in message and name in message
    assert not _load({"region": region, "functions": {"snap_start": False}}).functions.snap_start


def test_snapstart_stays_on_in_a_region_that_has_it_or_an_unpinned_stage():
    assert _load({"region": "eu-west-1"}).functions.snap_start
    assert _load({}).functions.snap_start  # environment-agnostic: the region is not known
