"""Settings are read once from the environment and fail at cold start naming the variable."""

import pytest

from image_common.settings import ConfigurationError, load_settings

MINIMAL = {"IMAGE_BUCKET": "images-bucket"}


def test_defaults_from_a_minimal_environment():
    settings = load_settings(MINIMAL)
    assert settings.image_bucket == "images-bucket"
    assert settings.image_url_mode == "presigned"
    assert settings.presign_expires_seconds == 3600
    assert settings.trusted_origins == frozenset()  # every URL goes through the guard
    assert settings.provider_timeout_seconds < 30  # inside API Gateway's limit


def test_values_are_typed_from_strings():
    settings = load_settings(
        MINIMAL | {"PRESIGN_EXPIRES_SECONDS": "600",
                   "TRUSTED_URL_ORIGINS": "http://127.0.0.1:9000, HTTPS://Emulator.test/",
                   "ENABLED_RETIRED_MODELS": "DALL-E-3, imagen-3.0-generate-002"}
    )  # fmt: skip
    assert settings.presign_expires_seconds == 600
    assert settings.trusted_origins == {"http://127.0.0.1:9000", "https://emulator.test:443"}
    assert settings.retired_models_enabled == {"dall-e-3", "imagen-3.0-generate-002"}


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({}, "IMAGE_BUCKET"),
        (MINIMAL | {"IMAGE_URL_MODE": "ftp"}, "IMAGE_URL_MODE"),
        (MINIMAL | {"PRESIGN_EXPIRES_SECONDS": "ten"}, "PRESIGN_EXPIRES_SECONDS"),
        (MINIMAL | {"PRESIGN_EXPIRES_SECONDS": "9999999"}, "PRESIGN_EXPIRES_SECONDS"),
        (MINIMAL | {"IMAGE_URL_MODE": "cloudfront"}, "IMAGE_CDN_DOMAIN"),
        (MINIMAL | {"TRUSTED_URL_ORIGINS": "http://127.0.0.1:9000/images"}, "TRUSTED_URL_ORIGINS"),
        (MINIMAL | {"TRUSTED_URL_ORIGINS": "127.0.0.1"}, "TRUSTED_URL_ORIGINS"),
    ],
)
def test_misconfiguration_names_the_variable(environ, variable):
    with pytest.raises(ConfigurationError, match=variable):
        load_settings(environ)
