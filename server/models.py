"""The project's own data models: the public `Job` and `Shoot` results and the stored records.

Job, shoot and step status are `str` Enums with named state sets (as in arq/saq); only the engine
writes jobs (through `Engine._write`) and only the shoot runner writes shoots.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import AliasChoices, BaseModel, Field


class JobStatus(StrEnum):
    QUEUED = "queued"
    SUBMITTED = "submitted"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELED = "canceled"


ACTIVE = frozenset({JobStatus.QUEUED, JobStatus.SUBMITTED, JobStatus.RUNNING})
TERMINAL = frozenset({JobStatus.SUCCEEDED, JobStatus.FAILED, JobStatus.CANCELED})
# States that hold an idempotency key: a repeat of the same call returns this job.
HOLDS_KEY = frozenset({*ACTIVE, JobStatus.SUCCEEDED})


def credits_text(amount: float) -> str:
    """`1 credit`, `2 credits`, `0.5 credits`: an amount of credits as a user reads it."""
    return f"{amount:g} credit{'' if amount == 1 else 's'}"


def utcnow() -> datetime:
    return datetime.now(UTC)


def new_job_id() -> str:
    """Time-sortable id (ms since epoch in base 36, then random): newest-first is reverse key order."""
    millis = int(time.time() * 1000)
    return "j" + _base36(millis).rjust(9, "0") + os.urandom(5).hex()


def _base36(n: int) -> str:
    digits = "0123456789abcdefghijklmnopqrstuvwxyz"
    out = ""
    while n:
        n, r = divmod(n, 36)
        out = digits[r] + out
    return out or "0"


@dataclass(frozen=True)
class RemoteOutput:
    """An output as a provider gives it: a URL to download, or inline bytes."""

    url: str | None = None
    data: bytes | None = None
    mime_type: str | None = None


class Output(BaseModel):
    """One downloaded output file."""

    uri: str = Field(description="Resource URI of the file: callsheet://jobs/{job_id}/outputs/{n}.")
    path: str = Field(description="Absolute path of the downloaded file on the server's disk.")
    source_url: str | None = Field(
        default=None,
        description="The provider's own URL of the file (may expire; FASHN CDN links last 72 h). "
        "Null when the provider returned the file inline.",
    )
    mime_type: str = Field(description="MIME type, e.g. image/png or video/mp4.")
    width: int | None = Field(default=None, description="Width in pixels (images and videos when known).")
    height: int | None = Field(default=None, description="Height in pixels.")
    bytes: int = Field(description="File size in bytes.")
    sha256: str = Field(description="SHA-256 of the file content, hex.")
    download_url: str | None = Field(
        default=None,
        description="A signed https link to the file that anyone holding it can open until it expires "
        "(with CALLSHEET_PUBLIC_URL); null otherwise.",
    )


class JobError(BaseModel):
    """Why a job failed, in a form an assistant can act on."""

    code: str = Field(description="Machine-readable error code, e.g. image_load_error or submission_lost.")
    message: str = Field(description="What went wrong and what to do about it.")
    retryable: bool = Field(description="True when the same call may succeed if tried again later.")


class NextStep(BaseModel):
    """The call that carries a still-running job on, for clients that read only `structuredContent`."""

    tool: str = Field(description="The tool to call, e.g. job_wait.")
    arguments: dict[str, Any] = Field(description="Its arguments.")


class Job(BaseModel):
    """A generation job: the structured result of every generation and job tool."""

    job_id: str = Field(description="Identifier of this job; pass it to job_status, job_wait or job_cancel.")
    provider: str = Field(description="Provider that runs the job: fashn, autotoon, neofashion or genapi.")
    operation: str = Field(description="The tool name without its provider prefix, e.g. tryon_max.")
    status: JobStatus = Field(
        description="queued (stored, not yet accepted), submitted (accepted by the provider), running, "
        "or terminal: succeeded, failed, canceled."
    )
    progress: float = Field(default=0.0, ge=0.0, le=1.0, description="Estimated progress from 0 to 1.")
    outputs: list[Output] = Field(default_factory=list, description="Downloaded outputs, once succeeded.")
    credits_estimate: float | None = Field(default=None, description="Credits this job is expected to cost.")
    credits_used: float | None = Field(default=None, description="Credits the provider reported as used.")
    error: JobError | None = Field(default=None, description="Why the job failed or was canceled.")
    sandbox: bool = Field(default=False, description="True when the job ran against the sandbox emulator.")
    created_at: datetime = Field(description="When the job was created (UTC).")
    updated_at: datetime = Field(description="When the job last changed (UTC).")
    next_step: NextStep | None = Field(
        default=None, description="While the job runs: the call that waits for it (job_wait with its id)."
    )


class JobRecord(Job):
    """A `Job` plus what the engine needs to drive it; persisted as JSON, never returned to clients."""

    key: str = ""
    payload: dict[str, Any] | None = None
    """The provider request, kept only until the provider accepts it (it may hold base64 images)."""
    summary: dict[str, Any] = Field(default_factory=dict)
    """The arguments as given (references, prompts), for listings and contact sheets."""
    provider_job_id: str | None = None
    submit_started_at: datetime | None = None
    """Set just before a submission is sent, cleared when it was surely not accepted."""
    submitted_at: datetime | None = None
    shoot_id: str | None = None
    caller: str | None = Field(default=None, validation_alias=AliasChoices("caller", "owner"))
    """Whose job it is (None: the local user); records written before the rename call it owner."""
    caller_label: str | None = None
    """How the caller is named in the audit trail (an OAuth subject, a token's short hash)."""
    status_calls: int = 0
    typical_seconds: float = 30.0
    parent_job_id: str | None = None
    """Set on the items of a batch job (e.g. neofashion_bulk)."""
    children: list[str] = Field(default_factory=list)
    """Job ids of a batch job's items; the batch ends when they all have."""

    def public(self) -> Job:
        job = Job.model_validate(self.model_dump(include=set(Job.model_fields) - {"next_step"}))
        if self.active:
            job.next_step = NextStep(tool="job_wait", arguments={"job_ids": [self.job_id]})
        return job

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


# --- Shoots -------------------------------------------------------------------------------------


class ShootStatus(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELED = "canceled"
    OVER_BUDGET = "over_budget"


SHOOT_ACTIVE = frozenset({ShootStatus.RUNNING})
SHOOT_TERMINAL = frozenset(set(ShootStatus) - SHOOT_ACTIVE)


class StepStatus(StrEnum):
    WAITING = "waiting"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELED = "canceled"


STEP_ACTIVE = frozenset({StepStatus.WAITING, StepStatus.RUNNING})
STEP_TERMINAL = frozenset(set(StepStatus) - STEP_ACTIVE)


class StepView(BaseModel):
    id: str = Field(description="Step id.")
    tool: str = Field(description="The step's generation tool.")
    status: StepStatus = Field(description="waiting, running, succeeded, failed, skipped or canceled.")
    jobs: list[Job] = Field(description="The step's jobs with their outputs and errors.")
    note: str | None = Field(default=None, description="Why the step was skipped or failed.")


class ContactSheet(BaseModel):
    path: str | None = Field(description="The PNG grid on disk (null until the first outputs exist).")
    html: str | None = Field(description="The HTML page on disk.")
    uri: str = Field(description="Resource URI of the PNG: callsheet://shoots/{id}/contact-sheet.")
    download_url: str | None = Field(
        default=None, description="A signed https link to the HTML page (with CALLSHEET_PUBLIC_URL)."
    )


class Shoot(BaseModel):
    """A shoot's state: what `shoot_status`, `shoot_cancel` and `shoots_list` return."""

    shoot_id: str = Field(description="Shoot id; pass it to shoot_status or shoot_cancel.")
    name: str = Field(description="The plan's name.")
    status: ShootStatus = Field(description="running, succeeded, partial, failed, canceled or over_budget.")
    steps: list[StepView] = Field(description="Per step: its state and jobs.")
    credits_used: float = Field(description="Credits the providers reported as used so far.")
    credits_estimate: float = Field(description="The plan's estimate when it started.")
    progress: float = Field(description="Share of the planned jobs that have finished, 0 to 1.")
    folder: str = Field(description="The shoot folder: manifest.json, outputs, contact sheet.")
    folder_url: str | None = Field(
        default=None, description="A signed https link to the folder's listing (with CALLSHEET_PUBLIC_URL)."
    )
    contact_sheet: ContactSheet = Field(description="The contact sheet (PNG grid and HTML page).")
    note: str | None = Field(default=None, description="Why the shoot stopped, when it did early.")
    created_at: datetime = Field(description="When the shoot started (UTC).")
    updated_at: datetime = Field(description="When it last changed (UTC).")


class StepState(BaseModel):
    id: str = Field(description="Step id from the plan.")
    status: StepStatus = Field(
        default=StepStatus.WAITING, description="waiting, running, succeeded, failed, skipped."
    )
    job_ids: list[str] = Field(default_factory=list, description="The step's jobs, in item order.")
    note: str | None = Field(default=None, description="Why the step was skipped or failed.")
    force: bool = Field(default=False, description="Its jobs are fresh generations (a repeat with force).")


class ShootRecord(BaseModel):
    shoot_id: str
    name: str
    status: ShootStatus
    plan: dict[str, Any]
    steps: list[StepState]
    folder: str
    credits_used: float = 0.0
    credits_estimate: float = 0.0
    note: str | None = None
    caller: str | None = Field(default=None, validation_alias=AliasChoices("caller", "owner"))
    """Whose shoot it is (None: the local user); records written before the rename call it owner."""
    caller_label: str | None = None
    created_at: datetime
    updated_at: datetime
