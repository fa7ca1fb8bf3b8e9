"""The fake provider's adapter: POST /renders, GET /renders/{id}, POST /renders/{id}/cancel, GET /balance."""

from __future__ import annotations

from typing import Any

from server.errors import BadResponse
from server.http import json_object
from server.models import JobError, RemoteOutput
from server.policy import Limits, RateWindow
from server.providers.base import Balance, Provider, RemoteState, StatusReport, Submission
from tests.fake_provider.operations import RENDER

STATES = {"working": RemoteState.RUNNING, "done": RemoteState.SUCCEEDED, "failed": RemoteState.FAILED}


class Fake(Provider):
    name = "fake"
    title = "Fake"
    key_var = "FAKE_API_KEY"
    url_var = "FAKE_BASE_URL"
    default_base_url = "https://fake.example/v1"
    fixed_operations = (RENDER,)
    emulator_path = "tests.fake_provider.emulator:FakeEmulator"

    def limits(self) -> Limits:
        return Limits(windows={"api": (RateWindow(100, 60.0),)}, poll_kind="api")

    async def submit(
        self, operation: str, payload: dict[str, Any], *, webhook_url: str | None = None
    ) -> Submission:
        response = await self.http.request("api", "POST", self.operation(operation).route, json=payload)
        render_id = json_object(response, self.name, self.title).get("id")
        if not isinstance(render_id, str):
            raise BadResponse("Fake answered without an id.", provider=self.name)
        return Submission(render_id, credits_used=float(response.headers.get("x-credits", 0)))

    async def status(self, provider_job_id: str, operation: str) -> StatusReport:
        body = json_object(
            await self.http.request("api", "GET", f"/renders/{provider_job_id}"), self.name, "Fake"
        )
        state = STATES[str(body.get("status"))]
        if state is RemoteState.FAILED:
            error = JobError(code="render_failed", message=str(body.get("error")), retryable=True)
            return StatusReport(state, error=error, credits_used=0)
        outputs = [RemoteOutput(url=str(body["output_url"]))] if state is RemoteState.SUCCEEDED else []
        return StatusReport(state, outputs=outputs)

    async def cancel(self, provider_job_id: str, operation: str) -> bool:
        response = await self.http.request("api", "POST", f"/renders/{provider_job_id}/cancel")
        return json_object(response, self.name, self.title).get("status") == "canceled"

    async def balance(self) -> Balance:
        body = json_object(await self.http.request("api", "GET", "/balance"), self.name, self.title)
        return Balance(credits=float(body["credits"]))
