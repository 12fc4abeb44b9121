"""JWT verification for the API Gateway HTTP API Lambda authorizer.

`settings` reads the environment once, `verifier` turns a token into a `Principal` or a
`Denial`, `jwks` fetches keys with the standard library only (the secret comes through
`image_common.secret_extension`, shared with the generation function).
"""
