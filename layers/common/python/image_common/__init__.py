"""Code shared by the service's Lambda functions: error taxonomy, response envelope, settings."""
