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
from typing import Any

import httpx

from server.errors import (
    BadResponse,
    ErrorText,
    InsufficientCredits,
    ProviderRejected,
    RateLimited,
    snake_code,
)
from server.http import error_body, json_object
from server.models import JobError, RemoteOutput
from server.policy import Limits, RateWindow
from server.providers.base import (
    Balance,
    OperationSpec,
    Provider,
    RemoteState,
    StatusReport,
    Submission,
)
from server.providers.fashn.operations import OPERATIONS

LIMITS = Limits(
    windows={
        "run": (RateWindow(50, 60.0),),
        "status": (RateWindow(50, 10.0),),
        "credits": (RateWindow(30, 10.0),),
        "cancel": (RateWindow(50, 10.0),),
    },
    max_in_flight=6,
)
"""FASHN's documented limits: /run 50 per 60 s, /status 50 per 10 s, /credits 30 per 10 s, 6 in flight."""

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


class Fashn(Provider):
    name = "fashn"
    title = "FASHN"
    webhooks = True
    badge = ("F", "#111827")
    key_var = "FASHN_API_KEY"
    url_var = "FASHN_BASE_URL"
    default_base_url = "https://api.fashn.ai/v1"
    fixed_operations = tuple(OPERATIONS.values())
    emulator_path = "server.providers.fashn.emulator:FashnEmulator"

    def limits(self) -> Limits:
        return LIMITS

    def describe_error(self, response: httpx.Response) -> ErrorText:
        """Both documented shapes: `{"error": "text"}` and `{"error": {"name", "message"}}`."""
        body = error_body(response)
        if isinstance(body, str):
            return ErrorText(body)
        error = body.get("error")
        if isinstance(error, dict):
            name, message = error.get("name"), error.get("message")
            text = f"{name}: {message}" if name and message else str(message or name or error)
            return ErrorText(text, str(name) if name else None)
        return ErrorText(str(error) if error else str(body)[:300])

    def payload(self, spec: OperationSpec, wire: dict[str, Any]) -> dict[str, Any]:
        return {"model_name": spec.route, "inputs": wire}

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        try:
            # FASHN's documented webhook: it POSTs the prediction's final state there (unsigned).
            params = {"webhook_url": webhook_url} if webhook_url else None
            response = await self.http.request("run", "POST", "/run", json=payload, params=params)
        except RateLimited as exc:
            raise _credits_or(exc) from None
        body = _json(response)
        if body.get("error"):
            described = self.describe_error(response)
            raise ProviderRejected(
                f"FASHN refused the request: {described.message}",
                provider=self.name,
                provider_code=described.code,
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
    if "credit" in (exc.provider_code or "").lower() or "credit" in exc.message.lower():
        return InsufficientCredits(
            exc.message + " Top up FASHN credits, then call again.",
            provider="fashn",
            status_code=429,
            provider_code=exc.provider_code,
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
