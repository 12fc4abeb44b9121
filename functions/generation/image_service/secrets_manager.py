"""Provider keys read from Secrets Manager with botocore: the reader SnapStart functions use.

Under SnapStart Lambda sets no ``AWS_SESSION_TOKEN``, which the Parameters and Secrets
extension (``image_common.secret_extension``) needs from its callers, so ``snapstart`` points
``image_common.credentials.provider_secrets`` here instead. The schedule (max age, retry, stale
grace) stays the ``SecretCache``'s. Lives in image_service, not image_common: the authorizer
shares image_common and must not import botocore.
"""

from __future__ import annotations

from image_common.secret_extension import SecretUnavailable
from image_service import aws


def read_secret_string(secret_id: str) -> str:
    """The secret's ``SecretString``. Any failure is ``SecretUnavailable`` whose reason is the
    AWS error code or the kind of failure — never AWS's message (it names the ARN and the
    account) nor anything of the secret."""
    client = aws.client("secretsmanager")
    try:
        answer = client.get_secret_value(SecretId=secret_id)
    except Exception as error:  # botocore's client, endpoint, credential and validation errors
        raise SecretUnavailable(f"Secrets Manager: {aws.failure_name(error)}") from None
    secret = answer.get("SecretString")
    if not isinstance(secret, str) or not secret:
        raise SecretUnavailable("the secret has no SecretString (binary secrets are not supported)")
    return secret
