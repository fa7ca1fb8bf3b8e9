"""FASHN adapter: `POST /run`, `GET /status/{id}`, `GET /cancel/{id}`, `GET /credits`.

Built on the documents in provider-docs/fashn-* with plain httpx rather than the official SDK:
the engine needs to tell "never connected" from "may have been accepted" on `/run`, and to read
the `x-fashn-credits-used` header, and three endpoints are little code. Both documented error
shapes are accepted (`"error": "text"` and `"error": {"name", "message"}`), as are prediction
ids with a suffix after the UUID, and insufficient credits as 402 or as a 429 about credits.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from pydantic import BaseModel
from starlette.types import ASGIApp

from server.errors import (
    BadResponse,
    InsufficientCredits,
    ProviderRejected,
    RateLimited,
    snake_code,
)
from server.http import error_body, json_object
from server.media import ImageResolver
from server.models import JobError
from server.policy import FASHN_LIMITS
from server.providers.base import (
    Balance,
    OperationSpec,
    Prepared,
    Provider,
    Registration,
    RemoteOutput,
    RemoteState,
    StatusReport,
    Submission,
    lookup_operation,
    validate_inputs,
)
from server.providers.fashn.operations import MODELS, FashnInputs, FashnModel

_STATES = {
    "starting": RemoteState.PENDING,
    "in_queue": RemoteState.PENDING,
    "processing": RemoteState.RUNNING,
    "completed": RemoteState.SUCCEEDED,
    "failed": RemoteState.FAILED,
    "canceled": RemoteState.CANCELED,
    "cancelled": RemoteState.CANCELED,
}

# Job-level failures worth trying again as they are; the others need different input.
_RETRYABLE_FAILURES = {"PipelineError", "ThirdPartyError", "InternalServerError"}
_FAILURE_HINTS = {
    "ImageLoadError": "Check that every image URL is public and really an image, or pass a local file.",
    "ContentModerationError": "The inputs or result were flagged by moderation; use other images or prompt.",
    "NSFWError": "The inputs were flagged as unsafe; use other images.",
    "PoseError": "The pose in the model image could not be read; use a clearer full-body photo.",
    "InputValidationError": "An input value is not allowed; check the arguments against the tool schema.",
    "PhotoTypeError": "Set garment_photo_type (flat-lay or model) to match the garment photo.",
    "PipelineError": "A transient failure at FASHN; try again (failed predictions are not charged).",
    "ThirdPartyError": "A transient failure at FASHN; try again (failed predictions are not charged).",
    "InternalServerError": "A transient failure at FASHN; try again (failed predictions are not charged).",
}


def fashn_error_message(response: httpx.Response) -> str:
    """Both documented shapes: `{"error": "text"}` and `{"error": {"name", "message"}}`."""
    body = error_body(response)
    if isinstance(body, str):
        return body
    error = body.get("error")
    if isinstance(error, dict):
        name, message = error.get("name"), error.get("message")
        return f"{name}: {message}" if name and message else str(message or name or error)
    if error:
        return str(error)
    return str(body)[:300]


class Fashn(Provider):
    name = "fashn"

    @classmethod
    def operations(cls) -> list[OperationSpec]:
        return [
            OperationSpec(op, spec.title, spec.description, spec.inputs, credits=_estimator(spec))
            for op, spec in MODELS.items()
        ]

    async def prepare(self, operation: str, args: dict[str, Any], images: ImageResolver) -> Prepared:
        spec = lookup_operation(MODELS, "FASHN", operation)
        inputs = validate_inputs(spec.inputs, args, f"fashn_{operation}")
        payload = inputs.model_dump(exclude_none=True, mode="json")
        key = dict(payload)
        summary = dict(payload)
        for name in spec.image_fields:
            if name in payload:
                image = await images.resolve(name, payload[name])
                payload[name] = image.url or image.data_uri()
                key[name] = image.key()
                summary[name] = image.origin
        for name in spec.image_list_fields:
            if name in payload:
                resolved = [await images.resolve(f"{name}[{i}]", ref) for i, ref in enumerate(payload[name])]
                payload[name] = [i.url or i.data_uri() for i in resolved]
                key[name] = [i.key() for i in resolved]
                summary[name] = [i.origin for i in resolved]
        return Prepared(
            operation=operation,
            payload={"model_name": spec.model_name, "inputs": payload},
            key_material=key,
            credits_estimate=spec.credits(inputs),
            typical_seconds=spec.typical_seconds(inputs) * self.time_scale,
            summary=summary,
        )

    async def submit(self, operation: str, payload: dict[str, Any]) -> Submission:
        try:
            response = await self.http.request("run", "POST", "/run", json=payload)
        except RateLimited as exc:
            raise _credits_or(exc) from None
        body = _json(response)
        if body.get("error"):
            raise ProviderRejected(
                f"FASHN refused the request: {fashn_error_message(response)}", provider=self.name
            )
        prediction_id = body.get("id")
        if not isinstance(prediction_id, str) or not prediction_id:
            raise BadResponse("FASHN's answer to /run carried no prediction id.", provider=self.name)
        return Submission(provider_job_id=prediction_id, credits_used=_credits_header(response))

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        response = await self.http.request("status", "GET", f"/status/{provider_job_id}")
        body = _json(response)
        state = _STATES.get(str(body.get("status")))
        if state is None:
            raise BadResponse(f"FASHN reported an unknown status {body.get('status')!r}.", provider=self.name)
        credits = _credits_header(response)
        if state is RemoteState.FAILED:
            return StatusReport(state=state, error=_job_error(body.get("error")), credits_used=0)
        if state is not RemoteState.SUCCEEDED:
            return StatusReport(state=state)
        raw = body.get("output")
        if not isinstance(raw, list) or not raw:
            raise BadResponse("FASHN reported completed without outputs.", provider=self.name)
        return StatusReport(state=state, outputs=[_output(str(item)) for item in raw], credits_used=credits)

    async def cancel(self, provider_job_id: str, operation: str) -> bool:
        response = await self.http.request("cancel", "GET", f"/cancel/{provider_job_id}")
        return _json(response).get("status") in ("canceled", "cancelled")

    async def balance(self) -> Balance:
        response = await self.http.request("credits", "GET", "/credits")
        credits = _json(response).get("credits")
        if not isinstance(credits, dict):
            raise BadResponse("FASHN's /credits answer has no credits object.", provider=self.name)
        total = credits.get("total")
        return Balance(credits=float(total) if isinstance(total, int | float) else None, detail=credits)

    def price_list(self) -> dict[str, str]:
        return {f"fashn_{op}": spec.price_text for op, spec in MODELS.items()}


def _estimator(spec: FashnModel) -> Callable[[BaseModel], float | None]:
    def estimate(inputs: BaseModel) -> float | None:
        return spec.credits(inputs) if isinstance(inputs, FashnInputs) else None

    return estimate


def _json(response: httpx.Response) -> dict[str, Any]:
    return json_object(response, "fashn", "FASHN")


def _credits_header(response: httpx.Response) -> float | None:
    value = response.headers.get("x-fashn-credits-used")
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _credits_or(exc: RateLimited) -> Exception:
    """FASHN may report an empty balance as a 429; that is not worth retrying."""
    if "credit" in exc.message.lower():
        return InsufficientCredits(
            exc.message + " Top up FASHN credits, then call again.", provider="fashn", status_code=429
        )
    return exc


def _job_error(raw: object) -> JobError:
    if isinstance(raw, dict):
        name, message = str(raw.get("name") or "PipelineError"), str(raw.get("message") or "")
    else:
        name, message = "PipelineError", str(raw or "The prediction failed.")
    hint = _FAILURE_HINTS.get(name, "")
    return JobError(
        code=snake_code(name),
        message=f"FASHN {name}: {message} {hint}".strip(),
        retryable=name in _RETRYABLE_FAILURES,
    )


def _output(item: str) -> RemoteOutput:
    if item.startswith("data:"):
        header, _, data = item.partition(",")
        mime = header[5:].split(";")[0] or "application/octet-stream"
        try:
            return RemoteOutput(data=base64.b64decode(data, validate=True), mime_type=mime)
        except (binascii.Error, ValueError):
            raise BadResponse(
                "FASHN returned a base64 output that does not decode.", provider="fashn"
            ) from None
    return RemoteOutput(url=item)


def _sandbox(time_scale: float, state_dir: Path) -> ASGIApp:
    from server.providers.fashn.emulator import FashnEmulator

    app: ASGIApp = FashnEmulator(time_scale=time_scale, state_dir=state_dir).app
    return app


REGISTRATION = Registration(
    adapter=Fashn,
    limits=lambda settings: FASHN_LIMITS,
    auth_headers=lambda key: {"Authorization": f"Bearer {key}"},
    error_message=fashn_error_message,
    sandbox_app=_sandbox,
)
