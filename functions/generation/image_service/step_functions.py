"""The deployed job runner: one execution of the job state machine per job.

The execution name is the job id: Step Functions (Standard) runs one execution per name, so a
job started twice runs once.
"""

from __future__ import annotations

import json
import math
from typing import Any

from aws_lambda_powertools import Logger

from image_common.errors import ProviderError, ProviderNotConfigured
from image_service import aws

logger = Logger(child=True)


class StepFunctionsJobRunner:
    def __init__(self, state_machine_arn: str | None, client=None) -> None:
        self.state_machine_arn = state_machine_arn
        self._client = client

    @property
    def client(self):
        return self._client or aws.client("stepfunctions")

    def start(self, execution_input: dict[str, Any]) -> None:
        if not self.state_machine_arn:
            raise ProviderNotConfigured("Image jobs are not configured on this service.")
        # A Wait state counts whole seconds.
        document = execution_input | {
            "interval_seconds": max(1, math.ceil(execution_input["interval_seconds"]))
        }
        client = self.client
        try:
            client.start_execution(
                stateMachineArn=self.state_machine_arn,
                name=execution_input["job_id"],
                input=json.dumps(document, separators=(",", ":")),
            )
        except client.exceptions.ExecutionAlreadyExists:
            return  # the same job started twice: one execution
        except Exception as error:  # botocore's errors: the caller sees a 502, never AWS detail
            logger.error("job start failed", extra={"error_class": type(error).__name__})
            raise ProviderError("The image job could not be started.") from None
