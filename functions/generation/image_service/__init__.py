"""The generation function's domain: request models, model registry, providers, storage, service."""
