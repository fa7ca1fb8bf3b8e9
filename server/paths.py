"""Files inside allowed folders: the one containment check, and opens that cannot be redirected.

Every local path callsheet reads or writes on a user's behalf goes through here:
- `resolve` turns what was given into an absolute path with `~` expanded, every existing symlink
  followed and every `..` applied, so containment is checked on where the path really leads,
  never on its text (`root/new/../..` is the root's parent, whether `new` exists or not).
- `containing_root` is the containment check itself.
- `open_inside`, `make_dirs` and `write_atomic` walk from the root one component at a time with
  `O_NOFOLLOW` (through `dir_fd`), so a folder swapped for a symlink after the check makes the
  open fail instead of leading outside. Where the platform has no `dir_fd` opens, the file is
  opened and then checked to be the very file the resolved path names.
- Folders callsheet makes for one caller carry a mark naming them (`CALLER_MARK`): when several
  callers share a server, a caller reads no file under a folder marked for another (`caller_of`).
"""

from __future__ import annotations

import contextlib
import errno
import os
import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

CALLER_MARK = ".callsheet-caller"
"""File in a job's media folder or a shoot folder naming the caller it belongs to ("" = the local user)."""

_DIR_FD = os.open in os.supports_dir_fd and hasattr(os, "O_NOFOLLOW")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_DIRECTORY = getattr(os, "O_DIRECTORY", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)


class PathChanged(OSError):
    """A folder on the way was replaced (e.g. by a symlink) after the path was checked."""


def resolve(path: str | Path) -> Path:
    """`path` made absolute (from the working folder), `~` expanded, symlinks followed, `..` applied.

    Raises OSError, RuntimeError (a symlink loop) or ValueError (a NUL byte) for a path that cannot be.
    """
    given = Path(path).expanduser()
    if not given.is_absolute():
        given = Path.cwd() / given
    return given.resolve(strict=False)


def containing_root(path: Path, roots: Iterable[Path]) -> Path | None:
    """The root (resolved) that contains the resolved `path`, or None; a root contains itself."""
    for root in roots:
        try:
            real = root.expanduser().resolve()
        except (OSError, RuntimeError, ValueError):
            continue
        if path == real or path.is_relative_to(real):
            return real
    return None


def _parts(root: Path, path: Path) -> tuple[str, ...]:
    if path != root and not path.is_relative_to(root):
        raise PathChanged(errno.EXDEV, f"{path} is not inside {root}")
    parts = path.relative_to(root).parts
    if any(p in ("", ".", "..") for p in parts):
        raise PathChanged(errno.EINVAL, f"{path} is not a resolved path")
    return parts


@contextlib.contextmanager
def _walk(root: Path, parts: tuple[str, ...], *, create: bool = False) -> Iterator[int]:
    """A descriptor of the folder `root/parts...`, reached without following any symlink."""
    fd = os.open(root, os.O_RDONLY | _DIRECTORY | _CLOEXEC)
    try:
        for part in parts:
            if create:
                with contextlib.suppress(FileExistsError):
                    os.mkdir(part, 0o755, dir_fd=fd)
            try:
                inner = os.open(part, os.O_RDONLY | _DIRECTORY | _NOFOLLOW | _CLOEXEC, dir_fd=fd)
            except OSError as exc:
                if exc.errno in (errno.ELOOP, errno.ENOTDIR):
                    raise PathChanged(exc.errno, f"{part} is not a folder any more") from None
                raise
            os.close(fd)
            fd = inner
        yield fd
    finally:
        os.close(fd)


def open_inside(root: Path, path: Path) -> int:
    """Open the file `path` (resolved, inside `root`) for reading; raises PathChanged if redirected."""
    flags = os.O_RDONLY | _NOFOLLOW | getattr(os, "O_NONBLOCK", 0) | _CLOEXEC
    parts = _parts(root, path)
    if not parts:
        raise IsADirectoryError(errno.EISDIR, f"{path} is a folder")
    if not _DIR_FD:
        return _open_verified(root, path, flags)
    with _walk(root, parts[:-1]) as folder:
        try:
            return os.open(parts[-1], flags, dir_fd=folder)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise PathChanged(exc.errno, f"{path} became a symlink") from None
            raise


def _open_verified(root: Path, path: Path, flags: int) -> int:
    """Without dir_fd: open, then check that what was opened is the file the path resolves to now."""
    fd = os.open(path, flags & ~_NOFOLLOW)
    try:
        opened = os.fstat(fd)
        now = resolve(path)
        there = os.stat(now)
        if containing_root(now, [root]) is None or (there.st_dev, there.st_ino) != (
            opened.st_dev,
            opened.st_ino,
        ):
            raise PathChanged(errno.EXDEV, f"{path} changed while it was opened")
    except BaseException:
        os.close(fd)
        raise
    return fd


def make_dirs(root: Path, folder: Path) -> None:
    """Create `folder` (resolved, inside `root`) and its parents, never through a symlink."""
    parts = _parts(root, folder)
    if not _DIR_FD:
        folder.mkdir(parents=True, exist_ok=True)
        if containing_root(resolve(folder), [root]) is None:
            raise PathChanged(errno.EXDEV, f"{folder} leads outside {root}")
        return
    with _walk(root, parts, create=True):
        pass


def write_atomic(root: Path, path: Path, data: bytes) -> os.stat_result:
    """Replace the file `path` (inside `root`, its folder existing) so that readers see the old content
    or the new, never half; the folder is reached without following symlinks. Returns the new file's
    status as written (a later `os.stat` might already see another writer's file)."""
    parts = _parts(root, path)
    name = parts[-1]
    tmp = f".{name}.{uuid.uuid4().hex}.part"
    if not _DIR_FD:
        target = root.joinpath(*parts)
        target.with_name(tmp).write_bytes(data)
        written = target.with_name(tmp).stat()
        os.replace(target.with_name(tmp), target)
        return written
    with _walk(root, parts[:-1]) as folder:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o644, dir_fd=folder)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                written = os.fstat(fh.fileno())
            os.replace(tmp, name, src_dir_fd=folder, dst_dir_fd=folder)
            return written
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp, dir_fd=folder)


def mark_caller(root: Path, folder: Path, caller: str | None) -> None:
    """Mark `folder` as belonging to `caller` (None: the local user)."""
    write_atomic(root, folder / CALLER_MARK, (caller or "").encode())


def caller_of(root: Path, path: Path) -> tuple[bool, str | None]:
    """Whether a folder between `path` and `root` is marked, and for whom (the innermost mark wins)."""
    folder = path.parent
    while folder == root or folder.is_relative_to(root):
        mark = folder / CALLER_MARK
        try:
            text = mark.read_text(encoding="utf-8").strip()
        except (FileNotFoundError, NotADirectoryError):
            pass
        else:
            return True, text or None
        if folder == root:
            break
        folder = folder.parent
    return False, None
