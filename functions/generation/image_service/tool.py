"""``ImageGenerationService``: the service as an agent's ``generate_image`` tool.

A direct ``lambda:Invoke`` gets a tool-shaped result an LLM can read — a success flag, one short
sentence, the URL, provider, model and settings — and a typed error instead of an exception.

The tool's input schema is exported from the pydantic model that validates it
(``GenerateImageInput``), in the three shapes agents register: Anthropic (``input_schema``),
OpenAI function calling (strict mode) and MCP (``inputSchema``). It has no ``customer_id``: the
executor sends the customer from its own trusted session beside the tool input
(``{"customer_id": 7, "input": {...}}``), so a model can never choose whose space it writes to
or reads input images from.
"""

from __future__ import annotations

import copy
import json
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import ImageServiceError, InternalError, InvalidRequest, ProviderTimeout
from image_service.models import GenerateImageInput, parse_invoke_event
from image_service.registry import accepted_names
from image_service.service import Caller, ImageService

TOOL_NAME = "generate_image"
TOOL_DESCRIPTION = (
    "Generate an image from a text prompt (optionally from input images) with OpenAI, "
    "Stability AI, Black Forest Labs Flux, Google Gemini or xAI Grok, and return its URL."
)
# Keywords OpenAI's strict mode does not take; a default is said in the description instead.
_OPENAI_STRICT_DROPPED = frozenset({"default", "title", "minLength", "maxLength"})
logger = Logger(child=True)


def input_schema() -> dict[str, Any]:
    """JSON Schema (draft 2020-12) of the tool input, the model names as an enum."""
    schema = GenerateImageInput.model_json_schema()
    schema.pop("description", None)  # the tool's description says it, for the model to read
    schema.pop("title", None)
    model = schema["$defs"]["ImageSettings"]["properties"]["model"]
    model["anyOf"] = [{"type": "string", "enum": accepted_names()}, {"type": "null"}]
    model["description"] = (
        "Model name or alias (case-insensitive); leave it out (or null) for the default. "
        "GET /image/models says what each one supports."
    )
    return schema


def tool_definitions() -> dict[str, dict[str, Any]]:
    """``generate_image`` as Anthropic, OpenAI (function calling, strict) and MCP define tools."""
    schema = input_schema()
    return {
        "anthropic": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "input_schema": schema},
        "openai": {
            "type": "function",
            "function": {
                "name": TOOL_NAME,
                "description": TOOL_DESCRIPTION,
                "strict": True,
                "parameters": openai_strict_schema(schema),
            },
        },
        "mcp": {"name": TOOL_NAME, "description": TOOL_DESCRIPTION, "inputSchema": schema},
    }


def openai_strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """The schema as OpenAI's strict mode wants it: every object closed
    (``additionalProperties: false``) with every property required, optional ones nullable
    (null means "not given" to the request model). A free-form object cannot be closed, so
    ``provider_options`` is left out of this shape."""

    def visit(node: Any) -> Any:
        if isinstance(node, list):
            return [visit(item) for item in node]
        if not isinstance(node, dict):
            return node
        out = {
            key: (_visit_mapping(value) if key in ("properties", "$defs") else visit(value))
            for key, value in node.items()
            if key not in _OPENAI_STRICT_DROPPED
        }
        if node.get("default") is not None:
            default = f"Default: {json.dumps(node['default'])}."
            out["description"] = f"{out.get('description', '')} {default}".strip()
        if "properties" in out:
            required = set(node.get("required", ()))
            out["properties"] = {
                name: prop if name in required else _nullable(prop)
                for name, prop in out["properties"].items()
                if not _is_free_form(prop)
            }
            out["required"] = list(out["properties"])
            out["additionalProperties"] = False
        return out

    def _visit_mapping(mapping: dict[str, Any]) -> dict[str, Any]:
        return {name: visit(value) for name, value in mapping.items()}

    return visit(copy.deepcopy(schema))


def _is_free_form(prop: dict[str, Any]) -> bool:
    return prop.get("type") == "object" and "properties" not in prop


def _nullable(prop: dict[str, Any]) -> dict[str, Any]:
    if {"type": "null"} in prop.get("anyOf", ()):
        return prop
    description = prop.pop("description", None)
    wrapped: dict[str, Any] = {"anyOf": [prop, {"type": "null"}]}
    if description:
        wrapped["description"] = description
    return wrapped


class ImageGenerationService:
    def __init__(self, images: ImageService) -> None:
        self.images = images

    def generate_image(self, payload: Any, *, timeout_seconds: float) -> dict[str, Any]:
        """Start (or, with ``idempotency_key`` beside the input, attach to) the job and wait for
        its final answer within ``timeout_seconds`` — no 30 s limit here."""
        try:
            key = None
            if isinstance(payload, dict) and "idempotency_key" in payload:
                payload = dict(payload)
                key = payload.pop("idempotency_key")  # the executor's, beside the input
                if not isinstance(key, str):
                    raise InvalidRequest("idempotency_key must be a string.")
            request = parse_invoke_event(payload)
            started = self.images.generate(
                request,
                caller=Caller.trusted(),
                wait_seconds=timeout_seconds,
                prepare_seconds=timeout_seconds,
                idempotency_key=key,
            )
            record = started.record
            if not record.final:
                raise ProviderTimeout(
                    "The image was not ready in time; the job goes on, read it by its job_id.",
                    details={"job_id": record.job_id, "status": record.status},
                )
            data = self.images.job_answer(record)
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
    print(json.dumps(tool_definitions(), indent=2, sort_keys=True))
