"""Mint a development token for the local stack (HS256, signed with ``JWT_SECRET``).

    python -m local.token                                  # customer 1, 12 hours
    python -m local.token --customer 7 --scope images:admin

Prints the token alone on stdout, so ``TOKEN=$(python -m local.token)`` works.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Iterable

import jwt

from local.stack import DEV_JWT_SECRET

DEFAULT_SCOPE = "images:generate"
DEFAULT_TTL_SECONDS = 12 * 3600


def mint_token(
    customer_id: int = 1,
    *,
    scopes: Iterable[str] = (DEFAULT_SCOPE,),
    subject: str | None = None,
    ttl_seconds: int = DEFAULT_TTL_SECONDS,
    secret: str | None = None,
    now: float | None = None,
) -> str:
    """A token the local authorizer accepts: claims sub, customer_id, scope, iat, exp."""
    issued = int(time.time() if now is None else now)
    claims = {
        "sub": subject or f"local-dev-user-{customer_id}",
        "customer_id": customer_id,
        "scope": " ".join(scopes),
        "iat": issued,
        "exp": issued + ttl_seconds,
    }
    key = secret or os.environ.get("JWT_SECRET") or DEV_JWT_SECRET
    return jwt.encode(claims, key, algorithm="HS256")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m local.token", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--customer", type=int, default=1, help="customer_id claim (default 1)")
    parser.add_argument(
        "--scope", action="append", help=f"a scope; repeat for more (default {DEFAULT_SCOPE})"
    )
    parser.add_argument("--sub", help="subject claim (default local-dev-user-<customer>)")
    parser.add_argument(
        "--ttl", type=int, default=DEFAULT_TTL_SECONDS, help="lifetime in seconds (default 12 h)"
    )
    args = parser.parse_args(argv)
    if args.customer <= 0:
        parser.error("--customer must be a positive integer")
    print(
        mint_token(
            args.customer,
            scopes=args.scope or [DEFAULT_SCOPE],
            subject=args.sub,
            ttl_seconds=args.ttl,
        )
    )


if __name__ == "__main__":
    main()
