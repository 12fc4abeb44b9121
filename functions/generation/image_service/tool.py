"""``ImageGenerationService``: the service as an agent's ``generate_image`` tool.

A direct ``lambda:Invoke`` gets a tool-shaped result an LLM can read — a success flag, one short
sentence, the URL, provider, model and settings — and a typed error instead of an exception.
The tool's JSON schema is exported from the same pydantic model that validates the request.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import ImageServiceError, InternalError
from image_service.models import ImageGenerationRequest, parse_request
from image_service.service import Caller, ImageService

TOOL_NAME = "generate_image"
TOOL_DESCRIPTION = (
    "Generate an image from a text prompt (optionally from input images) with OpenAI, "
    "Stability AI, Black Forest Labs Flux, Google Gemini or xAI Grok, and return its URL."
)
logger = Logger(child=True)


def generate_image_tool() -> dict[str, Any]:
    """The tool definition an agent registers: name, description, JSON schema of the input."""
    schema = ImageGenerationRequest.model_json_schema()
    return {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": schema}


class ImageGenerationService:
    def __init__(self, images: ImageService) -> None:
        self.images = images

    def generate_image(self, payload: Any, *, timeout_seconds: float) -> dict[str, Any]:
        try:
            request = parse_request(payload)
            data = self.images.generate(
                request,
                caller=Caller.trusted(),
                timeout_seconds=timeout_seconds,
                wait_for_job=True,  # no 30 s limit here: a Flux job's finished image, not a 202
            )
        except ImageServiceError as error:
            return tool_failure(error)
        except Exception as error:  # an invoke answer must never carry a stack trace
            logger.error("unexpected error", extra={"error_class": type(error).__name__})
            return tool_failure(InternalError())
        return tool_success(data)


def tool_success(data: dict[str, Any]) -> dict[str, Any]:
    count = len(data.get("images") or [data])
    text = (
        f"Generated {count} image{'s' if count > 1 else ''} with {data['provider']} {data['model']}"
    )
    if data.get("revised_prompt"):
        text += f' (the provider revised the prompt to: "{data["revised_prompt"]}")'
    if data.get("warnings"):
        text += f"; {len(data['warnings'])} setting(s) adjusted, see warnings"
    return {"success": True, "text": text + ".", **data}


def tool_failure(error: ImageServiceError) -> dict[str, Any]:
    return {
        "success": False,
        "text": f"Image generation failed: {error.message}",
        "error": {"code": error.status, **error.to_dict()},
    }


if __name__ == "__main__":  # `make tool-schema` writes docs/generate_image.tool.json
    import json

    print(json.dumps(generate_image_tool(), indent=2, sort_keys=True))
