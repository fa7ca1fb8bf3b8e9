"""The shoot runner: checks, prices and executes a plan in the background, step by step, as jobs.

A step starts as soon as the steps it refers to have finished, as many jobs at once as the
providers' limits allow (the engine queues them). Each job is an ordinary engine job tagged with
the shoot id, so an identical call after a restart is the same job: resuming a shoot never pays
twice. A step whose inputs failed is skipped, independent steps go on, and the budget is never
crossed: the runner stops before the job that would cross it. The shoot folder keeps
`manifest.json`, every output named by step and item, and the contact sheet.

The runner is the only writer of shoot records: a shoot's state changes through `_shoot_to`, a
step's through `_step_to`, and what is not a transition (the jobs a step made) through
`_record_jobs`; all go through `_change`, which applies them to the stored record in one atomic
step, stamps the time and wakes waiters.

With several replicas on one store, a shoot is run by whichever replica holds its lease; the others
take it over when the lease lapses (a replica died), and any replica can follow or cancel it.
"""

from __future__ import annotations

import builtins
import contextlib
import json
import logging
import re
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
from anyio.abc import TaskGroup
from pydantic import ValidationError

from server import paths
from server.config import Settings
from server.contact_sheet import write_contact_sheet
from server.engine import Engine
from server.errors import CallsheetError, InputError, NotFound, StorageError
from server.models import (
    SHOOT_ACTIVE,
    STEP_ACTIVE,
    TERMINAL,
    ContactSheet,
    Job,
    JobRecord,
    JobStatus,
    Shoot,
    ShootRecord,
    ShootStatus,
    StepState,
    StepStatus,
    StepView,
    credits_text,
    new_job_id,
    utcnow,
)
from server.plans import (
    OUTPUT_PLACEHOLDER,
    Problem,
    ShootPlan,
    Step,
    Validation,
    parse_reference,
    substitute,
    validate_plan,
    walk_strings,
    with_item,
)
from server.policy import CONFIRM_ABOVE_CREDITS
from server.providers.base import OperationSpec
from server.signals import Signals, job_topic, shoot_topic
from server.store import ShootStore, Store

log = logging.getLogger("callsheet.shoots")

STORAGE_RETRY_SECONDS = 15.0
"""How long a shoot whose state could not be written waits before it runs again."""

ProgressFn = Callable[[float, str], Awaitable[None]]


class ShootRunner:
    def __init__(
        self,
        *,
        engine: Engine,
        store: ShootStore,
        leases: Store,
        signals: Signals,
        settings: Settings,
        tools: Callable[[], dict[str, tuple[str, OperationSpec]]],
    ) -> None:
        self.engine = engine
        self.store = store
        self.leases = leases
        self.signals = signals
        self.settings = settings
        self._tools = tools
        self._tg: TaskGroup | None = None
        self._running: dict[str, anyio.CancelScope] = {}
        self._files: dict[str, anyio.Lock] = {}

    @property
    def tools(self) -> dict[str, tuple[str, OperationSpec]]:
        """Every generation tool that is live or sandbox now: name -> (provider, operation spec)."""
        return self._tools()

    @asynccontextmanager
    async def running(self) -> AsyncIterator[ShootRunner]:
        """Run shoots in a task group of their own: resume every shoot left running that no live
        process runs, keep the leases of those run here, and take over those whose lease lapses."""
        async with anyio.create_task_group() as tg:
            self._tg = tg
            await self.resume()
            tg.start_soon(self._keep_leases)
            try:
                yield self
            finally:
                self._tg = None
                tg.cancel_scope.cancel()

    async def resume(self) -> None:
        """Start every running shoot that is not run here (its lease decides whether it runs here)."""
        cursor: str | None = None
        while True:
            records, cursor = await self.store.list(status=ShootStatus.RUNNING, limit=100, cursor=cursor)
            for record in records:
                if record.shoot_id not in self._running:
                    self._spawn(record.shoot_id)
            if cursor is None:
                return

    async def _keep_leases(self) -> None:
        """Renew the leases of the shoots run here; stop one whose lease another process took; take up
        shoots whose runner died."""
        ttl = self.engine.lease_ttl
        since_sweep = 0.0
        while True:
            await anyio.sleep(ttl / 3)
            running = dict(self._running)
            try:
                held = set(await self.leases.acquire_leases(list(running), self.engine.lease_holder, ttl))
            except StorageError as exc:
                log.warning("leases of %d shoots not renewed: %s", len(running), exc.message)
                held = set(running)
            for shoot_id, scope in running.items():
                if shoot_id not in held:
                    log.warning("lost the lease on shoot %s; another process runs it now", shoot_id)
                    scope.cancel()
            since_sweep += ttl / 3
            if since_sweep >= ttl / 2:
                since_sweep = 0.0
                try:
                    await self.resume()
                except StorageError as exc:
                    log.warning("running shoots not swept: %s", exc.message)

    # -- checking and pricing a plan -----------------------------------------------------------

    async def validate(
        self, plan_data: object, *, balances: bool = True
    ) -> tuple[ShootPlan | None, Validation]:
        """The plan's own checks, plus its output folder and (with `balances`) each provider's balance
        against its share of the estimate."""
        parsed, validation = validate_plan(plan_data, self.tools, max_jobs=self.settings.max_plan_jobs)
        if parsed is not None:
            try:
                self.folder_for(parsed, "check")
            except CallsheetError as exc:
                validation.problems.append(Problem(step=None, field="output_dir", message=exc.message))
        if balances:
            for provider, amount in validation.estimate.by_provider.items():
                problem = await self._balance_problem(provider, amount)
                if problem is not None:
                    validation.problems.append(problem)
        validation.ok = not validation.problems
        return parsed, validation

    async def _balance_problem(self, provider: str, amount: float) -> Problem | None:
        adapter = self.engine.providers.get(provider)
        if adapter is None or amount <= 0:
            return None
        try:
            balance = (await adapter.balance()).credits
        except CallsheetError:
            return None  # the balance is unknown: the provider will say so at submission
        if balance is None or amount <= balance:
            return None
        return Problem(
            step=None,
            field=f"balance.{provider}",
            message=f"{provider} has {credits_text(balance)}; this plan needs about {amount:g} there. "
            "Top up, or cut steps.",
        )

    @staticmethod
    def needs_confirmation(validation: Validation) -> bool:
        """A shoot estimated above CONFIRM_ABOVE_CREDITS starts only once the user agreed to the price."""
        return validation.ok and validation.estimate.total > CONFIRM_ABOVE_CREDITS

    def folder_for(self, plan: ShootPlan, shoot_id: str) -> Path:
        """The shoot's folder: in the plan's output_dir, or by default in the data folder's shoots/."""
        slug = re.sub(r"[^a-z0-9]+", "-", plan.name.lower()).strip("-")[:40] or "shoot"
        if plan.output_dir is None:
            return self.settings.shoots_dir.resolve() / f"{slug}-{shoot_id}"
        try:
            base = paths.resolve(plan.output_dir)
        except (OSError, RuntimeError, ValueError):
            raise InputError(
                "output_dir", f"{plan.output_dir!r} is not a valid folder path.", "Give a folder path."
            ) from None
        allowed = self._writable()
        if paths.containing_root(base, allowed) is None:
            raise InputError(
                "output_dir",
                f"{plan.output_dir} is outside the folders callsheet may write to.",
                f"Use a folder inside {', '.join(str(r) for r in allowed)}, or leave output_dir null.",
            )
        return base / f"{slug}-{shoot_id}"

    def _writable(self) -> list[Path]:
        """Where shoot folders may be: the input roots and the data folder."""
        return [*self.settings.input_roots, self.settings.home]

    def _root(self, folder: Path) -> Path:
        """The allowed folder a shoot folder lies in; its files are written walking down from there."""
        root = paths.containing_root(folder, self._writable())
        if root is None:
            raise OSError(f"{folder} is no longer inside the folders callsheet may write to")
        return root

    # -- what tools and the command line call --------------------------------------------------

    async def start(
        self,
        plan: ShootPlan,
        validation: Validation,
        *,
        caller: str | None = None,
        caller_label: str | None = None,
    ) -> ShootRecord:
        """Start the shoot in the background; BudgetExceeded when its estimate is over what the caller
        has left today (each job is also taken from the day as it is sent)."""
        if self.engine.ledger is not None:
            await self.engine.ledger.check(caller, validation.estimate.total, f"The shoot {plan.name!r}")
        shoot_id = "s" + new_job_id()[1:]
        folder = self.folder_for(plan, shoot_id)
        now = utcnow()
        record = ShootRecord(
            shoot_id=shoot_id,
            name=plan.name,
            status=ShootStatus.RUNNING,
            plan=plan.model_dump(mode="json"),
            steps=[StepState(id=s.id) for s in plan.steps],
            folder=str(folder),
            credits_estimate=validation.estimate.total,
            caller=caller,
            caller_label=caller_label,
            created_at=now,
            updated_at=now,
        )
        root = self._root(folder)
        try:
            await anyio.to_thread.run_sync(paths.make_dirs, root, folder)
            await anyio.to_thread.run_sync(paths.mark_caller, root, folder, caller)
        except OSError as exc:
            raise InputError(
                "output_dir", f"the shoot folder {folder} cannot be made ({exc}).", "Choose another folder."
            ) from None
        await self.store.put(record)
        await self.signals.notify(shoot_topic(shoot_id))
        self._spawn(shoot_id)
        return record

    async def get(self, shoot_id: str, *, caller: str | None = None) -> ShootRecord:
        record = await self.store.get(shoot_id)
        if record is None or (caller is not None and record.caller != caller):
            raise NotFound(f"Unknown shoot id {shoot_id!r}. shoots_list shows the shoots there are.")
        return record

    async def list(
        self,
        *,
        status: ShootStatus | None = None,
        caller: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> tuple[builtins.list[ShootRecord], str | None]:
        """Shoots, newest first (a caller's own, or every one for the local user)."""
        return await self.store.list(status=status, caller=caller, limit=limit, cursor=cursor)

    async def cancel(self, shoot_id: str, *, caller: str | None = None) -> ShootRecord:
        """Cancel the shoot and its unfinished jobs, whichever replica runs it."""
        record = await self.get(shoot_id, caller=caller)
        if record.status not in SHOOT_ACTIVE:
            return record

        def canceled(current: ShootRecord) -> ShootRecord | None:
            if current.status not in SHOOT_ACTIVE:
                return None
            steps = [
                step.model_copy(update={"status": StepStatus.CANCELED})
                if step.status in STEP_ACTIVE
                else step
                for step in current.steps
            ]
            note = "Canceled; jobs that had finished keep their outputs."
            return current.model_copy(update={"status": ShootStatus.CANCELED, "note": note, "steps": steps})

        # The state first: a runner (here or on another replica) submits nothing more once it reads it.
        record = await self._change(shoot_id, canceled)
        scope = self._running.get(shoot_id)
        if scope is not None:
            scope.cancel()
        for step in record.steps:
            for job_id in step.job_ids:
                with contextlib.suppress(NotFound):  # a job deleted since; finished ones are left as they are
                    await self.engine.cancel(job_id)
        return record

    async def repeat_step(
        self, shoot_id: str, step_id: str, *, force: bool = False, caller: str | None = None
    ) -> ShootRecord:
        """Run a step of an ended shoot again, and the steps after it that did not succeed.

        Its jobs are submitted again: one that failed or was canceled is tried again, one that succeeded
        is the same job at no cost, unless `force` asks for fresh generations (paid again).
        """
        record = await self.get(shoot_id, caller=caller)
        if record.status in SHOOT_ACTIVE:
            raise InputError(
                "shoot_id", "the shoot is still running.", "Wait for it to end (or cancel it), then repeat."
            )
        steps = {s.id: s for s in ShootPlan.model_validate(record.plan).steps}
        if step_id not in steps:
            raise InputError(
                "step_id", f"the shoot has no step {step_id!r}.", f"Its steps: {', '.join(steps)}."
            )
        again = {step_id}
        while True:  # the steps that build on it, directly or not (plan order is free)
            later = {s.id for s in steps.values() if _dependencies(s.args, s.for_each) & again} - again
            if not later:
                break
            again |= later
        done = {s.id for s in record.steps if s.status is StepStatus.SUCCEEDED} - {step_id}

        def repeated(current: ShootRecord) -> ShootRecord | None:
            if current.status in SHOOT_ACTIVE:
                return None
            fresh = [
                StepState(id=s.id, force=force and s.id == step_id) if s.id in again - done else s
                for s in current.steps
            ]
            return current.model_copy(update={"status": ShootStatus.RUNNING, "note": None, "steps": fresh})

        record = await self._change(shoot_id, repeated)
        if record.status in SHOOT_ACTIVE:
            self._spawn(shoot_id)
        return record

    async def view(self, record: ShootRecord) -> Shoot:
        tools = {step.get("id"): step.get("tool") for step in record.plan.get("steps", [])}
        steps = []
        total = finished = 0
        credits = 0.0
        for step in record.steps:
            jobs: list[Job] = []
            for job_id in step.job_ids:
                job = await self.engine.find(job_id)
                if job is None:
                    continue
                jobs.append(self.engine.public(job))
                credits += job.credits_used or 0.0
                finished += job.status in TERMINAL
            total += max(len(step.job_ids), 1)
            tool = str(tools.get(step.id, ""))
            steps.append(StepView(id=step.id, tool=tool, status=step.status, jobs=jobs, note=step.note))
        folder = Path(record.folder)
        png, html = folder / "contact-sheet.png", folder / "contact-sheet.html"
        links = self.engine.links
        done = record.status not in SHOOT_ACTIVE
        return Shoot(
            shoot_id=record.shoot_id,
            name=record.name,
            status=record.status,
            steps=steps,
            credits_used=credits,
            credits_estimate=record.credits_estimate,
            progress=1.0 if done else round(finished / max(total, 1), 3),
            folder=record.folder,
            contact_sheet=ContactSheet(
                path=str(png) if png.exists() else None,
                html=str(html) if html.exists() else None,
                uri=f"callsheet://shoots/{record.shoot_id}/contact-sheet",
                download_url=links.sign(f"shoots/{record.shoot_id}/contact-sheet.html")
                if links and html.exists()
                else None,
            ),
            folder_url=links.sign(f"shoots/{record.shoot_id}/") if links else None,
            note=record.note,
            created_at=record.created_at,
            updated_at=record.updated_at,
        )

    async def wait(
        self,
        shoot_id: str,
        wait_seconds: float,
        on_progress: ProgressFn | None = None,
        *,
        caller: str | None = None,
    ) -> ShootRecord:
        with anyio.move_on_after(wait_seconds), self.signals.watch([shoot_topic(shoot_id)]) as changes:
            while True:
                record = await self.get(shoot_id, caller=caller)
                if record.status not in SHOOT_ACTIVE:
                    return record
                # Woken by a change of the shoot or of its jobs (its progress counts them), here or on
                # another replica; re-read now and then anyway.
                changes.add(job_topic(j) for step in record.steps for j in step.job_ids)
                if on_progress is not None:
                    view = await self.view(record)
                    running = [s.id for s in view.steps if s.status is StepStatus.RUNNING]
                    await on_progress(view.progress, f"steps running: {', '.join(running) or 'none'}")
                await changes.wait(self.engine.reread_seconds)
        return await self.get(shoot_id)

    # -- running a shoot ---------------------------------------------------------------------

    def _spawn(self, shoot_id: str) -> None:
        if self._tg is None:
            raise RuntimeError("the shoot runner is not running")
        scope = anyio.CancelScope()
        self._running[shoot_id] = scope
        self._tg.start_soon(self._run, shoot_id, scope)

    async def _run(self, shoot_id: str, scope: anyio.CancelScope) -> None:
        holder, ttl = self.engine.lease_holder, self.engine.lease_ttl
        try:
            with scope:
                while True:
                    try:
                        if not await self.leases.acquire_leases([shoot_id], holder, ttl):
                            return  # another process runs it
                        try:
                            await self._run_once(shoot_id)
                        finally:
                            with anyio.CancelScope(shield=True), contextlib.suppress(StorageError):
                                await self.leases.release_leases([shoot_id], holder)
                        return
                    except* StorageError as group:
                        # The store cannot be written (a full disk, Redis away): the shoot keeps its last
                        # stored state and runs again a little later. Its jobs are found again by their
                        # keys, so nothing is paid twice.
                        log.warning("shoot %s paused: %s", shoot_id, group.exceptions[0])
                    await anyio.sleep(STORAGE_RETRY_SECONDS)
        finally:
            if self._running.get(shoot_id) is scope:
                del self._running[shoot_id]

    async def _run_once(self, shoot_id: str) -> None:
        record = await self.get(shoot_id)
        plan = ShootPlan.model_validate(record.plan)
        events = {s.id: anyio.Event() for s in plan.steps}
        async with anyio.create_task_group() as tg:
            for step in plan.steps:
                tg.start_soon(self._run_step, shoot_id, plan, step, events)
        await self._finish(shoot_id)

    async def _run_step(
        self, shoot_id: str, plan: ShootPlan, step: Step, events: dict[str, anyio.Event]
    ) -> None:
        step_id = step.id
        try:
            deps = sorted(_dependencies(step.args, step.for_each))
            for dep in deps:
                await events[dep].wait()
            record = await self.get(shoot_id)
            if record.status not in SHOOT_ACTIVE:
                return
            failed_deps = [d for d in deps if _state(record, d).status is not StepStatus.SUCCEEDED]
            if failed_deps:
                note = f"skipped: {', '.join(failed_deps)} did not succeed"
                await self._step_to(shoot_id, step_id, StepStatus.SKIPPED, note)
                return
            outputs = {d: await self._outputs(record, d) for d in deps}
            items = self._items(step.for_each, outputs)
            others = sum(len(s.job_ids) for s in record.steps if s.id != step_id)
            if others + len(items) > self.settings.max_plan_jobs:
                # The outputs turned out more than planned: the cap holds when the shoot runs too.
                note = (
                    f"{len(items)} jobs would take the shoot to {others + len(items)}, past the cap of "
                    f"{self.settings.max_plan_jobs} (CALLSHEET_MAX_PLAN_JOBS)"
                )
                await self._step_to(shoot_id, step_id, StepStatus.FAILED, note)
                return
            available = self.tools
            if step.tool not in available:
                note = f"{step.tool} is not available now (is its provider off?)"
                await self._step_to(shoot_id, step_id, StepStatus.FAILED, note)
                return
            provider, spec = available[step.tool]
            operation = step.tool.removeprefix(f"{provider}_")
            job_ids: builtins.list[str] = list(_state(record, step_id).job_ids)
            await self._step_to(shoot_id, step_id, StepStatus.RUNNING)
            for n, item in enumerate(items):
                args = substitute(with_item(step.args, item), lambda text: _resolve(text, outputs))
                if not await self._may_submit(shoot_id, plan.budget_credits, spec, args):
                    return
                if n < len(job_ids):
                    continue  # submitted before a restart; its job goes on by itself
                try:
                    job = await self.engine.submit(
                        provider,
                        operation,
                        _as_dict(args),
                        force=_state(record, step_id).force,
                        shoot_id=shoot_id,
                        caller=record.caller,
                        caller_label=record.caller_label,
                    )
                except CallsheetError as exc:
                    await self._step_to(shoot_id, step_id, StepStatus.FAILED, f"item {n}: {exc.message}")
                    return
                job_ids.append(job.job_id)
                await self._record_jobs(shoot_id, step_id, job_ids)
            result = await self.engine.wait(job_ids, wait_seconds=24 * 3600)
            bad = [j for j in result.jobs if j.status is not JobStatus.SUCCEEDED]
            if bad:
                reasons = "; ".join(f"{j.job_id}: {j.error.code if j.error else j.status.value}" for j in bad)
                await self._step_to(shoot_id, step_id, StepStatus.FAILED, reasons)
            else:
                await self._step_to(shoot_id, step_id, StepStatus.SUCCEEDED)
                await self._collect(shoot_id, step_id, result.jobs)
        except StorageError:
            raise  # the shoot's state cannot be written: `_run` pauses it
        except (CallsheetError, OSError) as exc:
            # One step's trouble ends that step, never the shoot's other steps or the server.
            log.warning("shoot %s step %s failed: %s", shoot_id, step_id, exc)
            await self._step_to(shoot_id, step_id, StepStatus.FAILED, str(exc))
        finally:
            events[step_id].set()

    def _items(self, for_each: object, outputs: dict[str, builtins.list[str]]) -> builtins.list[Any]:
        if for_each is None:
            return [None]
        if isinstance(for_each, list):
            return list(for_each)
        resolved = _resolve(str(for_each), outputs)
        return resolved if isinstance(resolved, list) else [resolved]

    async def _may_submit(
        self, shoot_id: str, budget: float | None, spec: OperationSpec, args: object
    ) -> bool:
        """The next job may go: the shoot still runs (it may have been canceled on another replica) and
        the job keeps it within its budget; else the shoot stops over budget."""
        record = await self.get(shoot_id)
        if record.status not in SHOOT_ACTIVE:
            return False
        if budget is None:
            return True
        try:
            estimate = spec.credits(spec.inputs.model_validate(args))
        except ValidationError:
            estimate = None
        committed = 0.0
        for step in record.steps:
            for job_id in step.job_ids:
                job = await self.engine.find(job_id)
                if job is not None and job.status not in (JobStatus.FAILED, JobStatus.CANCELED):
                    committed += (
                        job.credits_used if job.credits_used is not None else (job.credits_estimate or 0.0)
                    )
        if committed + (estimate or 0.0) <= budget:
            return True
        note = (
            f"Stopped before a job that would cross the budget of {credits_text(budget)} "
            f"({committed:g} committed, next job ~{estimate or 0:g}). Raise budget_credits and start again: "
            "finished jobs are reused at no cost."
        )
        await self._shoot_to(shoot_id, ShootStatus.OVER_BUDGET, note)
        return False

    async def _outputs(self, record: ShootRecord, step_id: str) -> builtins.list[str]:
        uris: builtins.list[str] = []
        for job_id in _state(record, step_id).job_ids:
            job = await self.engine.find(job_id)
            if job is not None:
                uris += [o.uri for o in job.outputs]
        return uris

    async def _collect(self, shoot_id: str, step_id: str, jobs: builtins.list[JobRecord]) -> None:
        """Copy the step's outputs into the shoot folder, named by step, item and output."""
        record = await self.get(shoot_id)
        try:
            folder = Path(record.folder)
            await anyio.to_thread.run_sync(_copy_outputs, self._root(folder), folder, step_id, jobs)
        except OSError as exc:
            log.warning("shoot %s: outputs of %s not copied: %s", shoot_id, step_id, exc)
        await self._write_manifest(record)

    async def _finish(self, shoot_id: str) -> None:
        record = await self.get(shoot_id)
        status = record.status
        if status in SHOOT_ACTIVE:
            states = [s.status for s in record.steps]
            if all(s is StepStatus.SUCCEEDED for s in states):
                status = ShootStatus.SUCCEEDED
            elif any(s is StepStatus.SUCCEEDED for s in states):
                status = ShootStatus.PARTIAL
            else:
                status = ShootStatus.FAILED
        ended = record.model_copy(update={"status": status})
        view = await self.view(ended)
        note = record.note
        # Files first, then the final state: whoever sees the shoot finished finds its contact sheet.
        try:
            folder = Path(record.folder)
            await anyio.to_thread.run_sync(write_contact_sheet, view, self._root(folder), folder, record.plan)
        except OSError as exc:
            note = f"{note or ''} The contact sheet could not be written: {exc}.".strip()
        except Exception:  # a sheet that cannot be drawn is noted; it never stops the shoot or the server
            log.exception("shoot %s: contact sheet not drawn", shoot_id)
            note = f"{note or ''} The contact sheet could not be drawn (the server's log says why).".strip()
        await self._write_manifest(ended)
        done = await self._shoot_to(shoot_id, status, note, credits_used=view.credits_used)
        if self.engine.ledger is not None and done.status is status:
            await self.engine.ledger.audit(
                caller=record.caller,
                label=record.caller_label,
                tool="shoot_start",
                shoot_id=shoot_id,
                status=status.value,
                estimate=record.credits_estimate,
                credits_used=view.credits_used,
            )

    async def _write_manifest(self, record: ShootRecord) -> None:
        """Rewrite manifest.json; a disk problem is logged and noted, it never stops the shoot."""
        view = await self.view(record)
        lock = self._files.setdefault(record.shoot_id, anyio.Lock())
        async with lock:
            try:
                folder = Path(record.folder)
                await anyio.to_thread.run_sync(_write_manifest, self._root(folder), folder, view, record.plan)
            except OSError as exc:
                log.warning("shoot %s: manifest not written: %s", record.shoot_id, exc)

    # -- the shoot's transitions ---------------------------------------------------------------

    async def _shoot_to(
        self, shoot_id: str, status: ShootStatus, note: str | None, **changes: Any
    ) -> ShootRecord:
        """The one way a shoot's state changes: to `status` with a note. A shoot that ended stays as it
        ended (a step finishing late does not undo a cancel)."""

        def to(current: ShootRecord) -> ShootRecord | None:
            if current.status not in SHOOT_ACTIVE and current.status is not status:
                return None
            return current.model_copy(update={**changes, "status": status, "note": note})

        return await self._change(shoot_id, to)

    async def _step_to(
        self, shoot_id: str, step_id: str, status: StepStatus, note: str | None = None
    ) -> None:
        await self._change_step(shoot_id, step_id, status=status, note=note)

    async def _record_jobs(self, shoot_id: str, step_id: str, job_ids: builtins.list[str]) -> None:
        """Not a transition: the jobs a running step has made so far."""
        await self._change_step(shoot_id, step_id, job_ids=list(job_ids))

    async def _change_step(self, shoot_id: str, step_id: str, **changes: Any) -> None:
        def step_changed(current: ShootRecord) -> ShootRecord | None:
            if current.status not in SHOOT_ACTIVE:
                return None  # the shoot ended (canceled, over budget): its steps stay as they are
            steps = [s.model_copy(update=changes) if s.id == step_id else s for s in current.steps]
            return current.model_copy(update={"steps": steps})

        await self._change(shoot_id, step_changed)

    async def _change(
        self, shoot_id: str, change: Callable[[ShootRecord], ShootRecord | None]
    ) -> ShootRecord:
        """Apply `change` to the stored shoot in one atomic step, stamp the time, wake waiters."""

        def stamped(current: ShootRecord) -> ShootRecord | None:
            changed = change(current)
            return None if changed is None else changed.model_copy(update={"updated_at": utcnow()})

        record = await self.store.update(shoot_id, stamped)
        if record is None:
            raise NotFound(f"Unknown shoot id {shoot_id!r}. shoots_list shows the shoots there are.")
        await self.signals.notify(shoot_topic(shoot_id))
        return record


def _state(record: ShootRecord, step_id: str) -> StepState:
    return next(s for s in record.steps if s.id == step_id)


def _dependencies(args: object, for_each: object) -> set[str]:
    return {
        ref.step
        for value in (args, for_each)
        for _, text in walk_strings(value)
        if (ref := parse_reference(text)) is not None
    }


def _resolve(text: str, outputs: dict[str, list[str]]) -> object:
    ref = parse_reference(text)
    if ref is None:
        return text
    uris = outputs.get(ref.step, [])
    if ref.index is None:
        return list(uris)
    if ref.index < len(uris):
        return uris[ref.index]
    return OUTPUT_PLACEHOLDER.replace("planned", f"missing-{ref.step}")


def _as_dict(args: object) -> dict[str, Any]:
    if not isinstance(args, dict):
        raise InputError("args", "A step's args must be an object.", "Give args as a JSON object.")
    return {str(k): v for k, v in args.items()}


def _copy_outputs(root: Path, folder: Path, step_id: str, jobs: list[JobRecord]) -> None:
    for item, job in enumerate(jobs):
        for n, output in enumerate(job.outputs):
            source = Path(output.path)
            target = folder / f"{step_id}-{item:02d}-{n}{source.suffix}"
            if not target.exists() and source.exists():
                paths.write_atomic(root, target, source.read_bytes())


def _write_manifest(root: Path, folder: Path, view: Shoot, plan: dict[str, Any]) -> None:
    """manifest.json: the plan, every job with its outputs and credits, the files; written atomically."""
    files = sorted(
        p.name for p in folder.iterdir() if p.is_file() and not p.name.startswith(("manifest.", "."))
    )
    manifest = {"shoot": view.model_dump(mode="json"), "plan": plan, "files": files}
    paths.write_atomic(root, folder / "manifest.json", json.dumps(manifest, indent=2).encode())
