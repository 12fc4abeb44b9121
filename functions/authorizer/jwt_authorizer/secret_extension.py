"""Read a Secrets Manager secret through the AWS Parameters and Secrets Lambda Extension.

The extension is a local HTTP server (a Lambda layer) that calls Secrets Manager and caches the
answer, so the authorizer needs no boto3. It answers only during the INVOKE phase, which is why
the secret is read on the container's first request rather than at import.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from urllib.parse import quote

FETCH_TIMEOUT_SECONDS = 3.0
MAX_RESPONSE_BYTES = 128 * 1024


class SecretUnavailable(Exception):
    """The extension did not return the secret. The message never contains secret material."""


def read_secret_string(
    secret_id: str, *, port: int, session_token: str, timeout: float = FETCH_TIMEOUT_SECONDS
) -> str:
    url = f"http://localhost:{port}/secretsmanager/get?secretId={quote(secret_id, safe='')}"
    request = urllib.request.Request(url, headers={"X-Aws-Parameters-Secrets-Token": session_token})
    # Never send the session token through an HTTP(S)_PROXY from the environment.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=timeout) as response:
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
