"""Local paths: containment on the resolved path, opens a swapped folder cannot redirect, and no
caller reading another caller's files through the file system."""

from __future__ import annotations

import hashlib
import os
import threading
from pathlib import Path

import anyio
import pytest

from server import paths
from server.config import Settings
from server.errors import InputError
from server.media import Media
from server.models import JobRecord, JobStatus, new_job_id, utcnow
from server.plans import ShootPlan, Step
from server.providers.base import RemoteOutput
from tests.conftest import png_bytes, sandbox_services

pytestmark = pytest.mark.anyio


class FakeStore:
    async def get(self, job_id: str) -> JobRecord | None:
        return None


def job_of(owner: str | None) -> JobRecord:
    now = utcnow()
    return JobRecord(
        job_id=new_job_id(),
        provider="fashn",
        operation="model_create",
        status=JobStatus.RUNNING,
        created_at=now,
        updated_at=now,
        caller=owner,
    )


@pytest.fixture
def shared(tmp_path: Path) -> Settings:
    """The default roots: a folder of the user's and the data folder itself."""
    (tmp_path / "in").mkdir()
    home = tmp_path / "home"
    return Settings.from_env(
        {"CALLSHEET_HOME": str(home), "CALLSHEET_INPUT_ROOTS": f"{tmp_path / 'in'}{os.pathsep}{home}"}
    )


async def resolves(media: Media, ref: Path, owner: str | None) -> bool:
    try:
        await media.resolve("image", str(ref), caller=owner)
    except InputError as exc:
        assert "not one of your files" in exc.message, exc.message
        return False
    return True


async def test_a_caller_reads_no_file_of_another_callers_job_or_shoot(shared: Settings) -> None:
    media = Media(shared, FakeStore())  # type: ignore[arg-type]
    job = job_of("alice")
    (output,) = await media.save_outputs(job, [RemoteOutput(data=png_bytes(), mime_type="image/png")], None)  # type: ignore[arg-type]
    alices_output = Path(output.path)
    assert alices_output.is_relative_to(shared.home)
    shoot = shared.input_roots[0] / "spring-drop-s123"
    paths.make_dirs(shared.input_roots[0], shoot)
    paths.mark_caller(shared.input_roots[0], shoot, "alice")
    (shoot / "hero-00-0.png").write_bytes(png_bytes())
    (shoot / "sub").mkdir()
    (shoot / "sub" / "deep.png").write_bytes(png_bytes())
    store_file = shared.home / "store" / "planted.png"
    store_file.parent.mkdir(parents=True)
    store_file.write_bytes(png_bytes())
    own_upload = shared.input_roots[0] / "garment.png"
    own_upload.write_bytes(png_bytes())

    for ref in (alices_output, shoot / "hero-00-0.png", shoot / "sub" / "deep.png", store_file):
        assert not await resolves(media, ref, "bob"), ref
    # The same files by a path that walks around: '..', a symlink inside the roots.
    assert not await resolves(media, shoot / "sub" / ".." / "hero-00-0.png", "bob")
    (shared.input_roots[0] / "alias").symlink_to(shoot)
    assert not await resolves(media, shared.input_roots[0] / "alias" / "hero-00-0.png", "bob")
    # Alice reads her own, the local user reads everything, anyone reads unmarked user files.
    for ref in (alices_output, shoot / "hero-00-0.png", shoot / "sub" / "deep.png"):
        assert await resolves(media, ref, "alice"), ref
        assert await resolves(media, ref, None), ref
    assert await resolves(media, own_upload, "bob")
    assert not await resolves(media, store_file, "alice")  # callsheet's own files are nobody's input


@pytest.mark.parametrize(
    "given",
    [
        "{root}/nx/../..",
        "{root}/ex/../..",
        "{root}/nx/../../outside",
        "{root}/ex/../../outside",
        "{root}/..",
        "{root}/../outside",
        "{root}/a/b/c/../../../../outside",
        "{root}/nx/./../../outside",
        "{root}//nx//..//..",
        "{root}/link",
        "{root}/link/nx",
        "{root}/link/nx/..",
        "{root}/nx/../link",
        "{root}/ex/../link/new",
        "{tmp}/outside/../inputs/../outside",
        "../outside",
        "nx/../../outside",
        "..",
    ],
)
async def test_output_dir_leading_outside_is_refused(settings: Settings, emulator, given: str) -> None:  # type: ignore[no-untyped-def]
    root = settings.input_roots[0]
    tmp = root.parent
    (tmp / "outside").mkdir()
    (root / "ex").mkdir()
    (root / "link").symlink_to(tmp / "outside")
    output_dir = given.format(root=root, tmp=tmp)
    plan = ShootPlan(name="drop", output_dir=output_dir, steps=[Step(id="a", tool="fashn_model_create")])
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        async with sandbox_services(settings, emulator) as svc:
            with pytest.raises(InputError, match="outside the folders"):
                svc.shoots.folder_for(plan, "s1")


@pytest.mark.parametrize(
    ("given", "lands_in"),
    [
        ("{root}/nx/..", ""),
        ("{root}/ex/../nx2", "nx2"),
        ("{root}/../inputs/new", "new"),
        ("{root}/inner/nx", "ex/nx"),
        ("{root}/inner/../nx3", "nx3"),
        (".", ""),
        ("a/b/../c", "a/c"),
    ],
)
async def test_output_dir_inside_lands_where_it_resolves(
    settings: Settings,
    emulator,  # type: ignore[no-untyped-def]
    given: str,
    lands_in: str,
) -> None:
    root = settings.input_roots[0]
    (root / "ex").mkdir()
    (root / "inner").symlink_to(root / "ex")
    plan = ShootPlan(
        name="drop", output_dir=given.format(root=root), steps=[Step(id="a", tool="fashn_model_create")]
    )
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(root)
        async with sandbox_services(settings, emulator) as svc:
            folder = svc.shoots.folder_for(plan, "s1")
    assert folder == (root.resolve() / lands_in / "drop-s1").resolve()


async def test_a_folder_swapped_for_a_symlink_never_leads_outside(shared: Settings, tmp_path: Path) -> None:
    """A thread swaps the input's folder for a symlink to a folder outside the roots while 418 calls
    read the file: no call may read the outside file (before the fix, about 10 did)."""
    media = Media(shared, FakeStore())  # type: ignore[arg-type]
    root = shared.input_roots[0]
    inside, outside = root / "looks", tmp_path / "outside" / "looks"
    inside.mkdir()
    outside.mkdir(parents=True)
    (inside / "dress.png").write_bytes(png_bytes(color=(1, 2, 3)))
    secret = png_bytes(color=(200, 0, 0))
    (outside / "dress.png").write_bytes(secret)
    stop = threading.Event()

    def swap() -> None:
        parked = root / "looks.parked"
        while not stop.is_set():
            os.rename(inside, parked)
            os.symlink(outside, inside)
            os.unlink(inside)
            os.rename(parked, inside)

    swapper = threading.Thread(target=swap)
    read: list[str] = []
    refused = 0

    async def call() -> None:
        nonlocal refused
        try:
            image = await media.resolve("image", str(inside / "dress.png"), caller=None)
        except InputError:
            refused += 1
        else:
            read.append(image.sha256 or "")

    swapper.start()
    try:
        async with anyio.create_task_group() as tg:  # the calls run at once, in worker threads
            for _ in range(418):
                tg.start_soon(call)
    finally:
        stop.set()
        swapper.join()
    assert hashlib.sha256(secret).hexdigest() not in read
    assert len(read) + refused == 418
