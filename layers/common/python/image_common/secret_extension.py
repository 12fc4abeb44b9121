"""Read a Secrets Manager secret through the AWS Parameters and Secrets Lambda Extension.

The extension is a local HTTP server (a Lambda layer) that calls Secrets Manager and caches the
answer, so a function needs no boto3 — and none of its import time — to read a secret. Shared by
the authorizer (its HS256 secret) and the generation functions (the provider keys). Standard
library only: the authorizer imports it. It answers only during the INVOKE phase, which is why
secrets are read on a container's first request rather than at import.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from collections.abc import Mapping
from urllib.parse import quote

FETCH_TIMEOUT_SECONDS = 3.0
MAX_RESPONSE_BYTES = 128 * 1024
PORT_VARIABLE = "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT"  # set by the extension's CDK config
DEFAULT_PORT = 2773
SESSION_TOKEN_VARIABLE = "AWS_SESSION_TOKEN"  # the extension's proof that the caller is us
# Never send the session token through an HTTP(S)_PROXY from the environment.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class SecretUnavailable(Exception):
    """The extension did not return the secret. The message never contains secret material."""


def read_secret_string(
    secret_id: str, *, port: int, session_token: str, timeout: float = FETCH_TIMEOUT_SECONDS
) -> str:
    url = f"http://localhost:{port}/secretsmanager/get?secretId={quote(secret_id, safe='')}"
    request = urllib.request.Request(url, headers={"X-Aws-Parameters-Secrets-Token": session_token})
    try:
        with _OPENER.open(request, timeout=timeout) as response:
            body = response.read(MAX_RESPONSE_BYTES + 1)
    except urllib.error.HTTPError as error:
        error.close()
        raise SecretUnavailable(f"extension answered {error.code}") from None
    except Exception as error:  # connection refused, timeout
        raise SecretUnavailable(f"extension unreachable ({type(error).__name__})") from None
    if len(body) > MAX_RESPONSE_BYTES:
        raise SecretUnavailable("extension response too large")
    try:
        document = json.loads(body)
    except ValueError:
        raise SecretUnavailable("extension response is not JSON") from None
    secret = document.get("SecretString") if isinstance(document, dict) else None
    if not isinstance(secret, str) or not secret:
        raise SecretUnavailable("the secret has no SecretString (binary secrets are not supported)")
    return secret


def extension_port(environ: Mapping[str, str] | None = None) -> int:
    """The extension's port from its variable; a bad value is named, never guessed around."""
    raw = (os.environ if environ is None else environ).get(PORT_VARIABLE, "").strip()
    if not raw:
        return DEFAULT_PORT
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise SecretUnavailable(f"{PORT_VARIABLE} must be a port number, got {raw[:16]!r}")
    return int(raw)


def read_secret_from_environment(secret_id: str, environ: Mapping[str, str] | None = None) -> str:
    """The secret, with the port and session token this Lambda environment provides."""
    env = os.environ if environ is None else environ
    session_token = env.get(SESSION_TOKEN_VARIABLE, "")
    if not session_token:
        raise SecretUnavailable(
            f"{SESSION_TOKEN_VARIABLE} is not set; the Parameters and Secrets extension needs it"
        )
    return read_secret_string(secret_id, port=extension_port(env), session_token=session_token)
