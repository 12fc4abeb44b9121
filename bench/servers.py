"""The servers a benchmark talks to, all on 127.0.0.1 in the benchmark's own process.

- an OpenAI-shaped provider: the local OpenAI emulator (its routes, checks and answer shape),
  answering every generation with one prepared ~1.5 MB PNG (incompressible noise, like a photo),
  rendered once so that the server's work is the same for every contender and every run;
- the AWS Parameters and Secrets extension's endpoint (``/secretsmanager/get``), serving the
  provider keys or the JWT secret as the extension does in Lambda;
- S3: moto's server (for the stored mode).
"""

from __future__ import annotations

import base64
import io
import json
import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from local.emulators.base import EmulatorResponse
from local.emulators.openai import OpenAIEmulator

IMAGE_SIDE = 720  # 720 × 720 RGB noise: a PNG of about 1.5 MB


def noise_png(side: int = IMAGE_SIDE, seed: int = 14) -> bytes:
    from PIL import Image

    pixels = random.Random(seed).randbytes(side * side * 3)
    out = io.BytesIO()
    Image.frombytes("RGB", (side, side), pixels).save(out, "PNG")
    return out.getvalue()


class BenchProvider(OpenAIEmulator):
    """The OpenAI emulator, answering generations with the prepared image."""

    def __init__(self, image: bytes) -> None:
        super().__init__()
        self.image = image
        self._b64 = base64.b64encode(image).decode("ascii")

    def route(self, request):
        response = super().route(request)
        if response.status != 200 or not request.path.endswith("/images/generations"):
            return response
        answer = json.loads(response.body)
        for item in answer["data"]:
            item["b64_json"] = self._b64
        return EmulatorResponse.json(200, answer)


class SecretsExtension:
    """``GET /secretsmanager/get?secretId=…`` → ``{"SecretString": …}``, as the extension."""

    def __init__(self, secret_string: str) -> None:
        body = json.dumps({"ARN": "arn:bench", "SecretString": secret_string}).encode()

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
