"""Powertools' HTTP API resolver, imported without the rest of its ``event_handler`` package.

The package's ``__init__`` imports every resolver Powertools has (AppSync, Bedrock agents, VPC
Lattice, Lambda function URLs, …, and asyncio with them): some 65 modules this function never
uses, which take as long to import as the HTTP resolver itself — on every cold start. The
resolver's own module imports what it needs by full name, so it is loaded under a package
module whose ``__init__`` has not run yet. That ``__init__`` still runs, in full, the first
time anything asks the package for a name it does not have (``from …event_handler import X``),
so nothing that relies on it breaks.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys

_PACKAGE = "aws_lambda_powertools.event_handler"


def _package_without_its_init() -> None:
    if _PACKAGE in sys.modules:
        return
    spec = importlib.util.find_spec(_PACKAGE)
    package = importlib.util.module_from_spec(spec)

    def run_init_on_first_unknown_name(name: str) -> object:
        if importlib.util.find_spec(f"{_PACKAGE}.{name}") is not None:  # a submodule: load it
            return importlib.import_module(f"{_PACKAGE}.{name}")
        del package.__getattr__  # once: the real __init__ defines the names from here on
        spec.loader.exec_module(package)
        return getattr(package, name)

    package.__getattr__ = run_init_on_first_unknown_name
    sys.modules[_PACKAGE] = package


_package_without_its_init()

from aws_lambda_powertools.event_handler import content_types  # noqa: E402
from aws_lambda_powertools.event_handler.api_gateway import (  # noqa: E402
    APIGatewayHttpResolver,
    Response,
)

__all__ = ["APIGatewayHttpResolver", "Response", "content_types"]
