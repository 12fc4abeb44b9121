"""JWT verification for the API Gateway HTTP API Lambda authorizer.

`settings` reads the environment once, `verifier` turns a token into a `Principal` or a
`Denial`, `jwks` and `secret_extension` fetch keys with the standard library only.
"""
