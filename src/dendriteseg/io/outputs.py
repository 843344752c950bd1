"""Rules for every file dendriteseg writes, so that nothing the user had is lost.

* Outputs are written under a temporary name beside the target,
  ``.<name>.partial-<pid>-<random>``, and renamed into place when complete.
  A killed run leaves such a file; the next run to the same output removes
  it (only those of processes that no longer run).
* A symlink given as output is followed: the file it points to is replaced
  and the link stays.
* A device, pipe or socket given as output is never renamed over: text
  outputs (JSON, CSV) are written through it, as shell redirection would;
  volumes and model files refuse it.
* An existing folder is replaced only when it holds nothing but what
  dendriteseg writes there (a Zarr store, or ``slice_*.tif`` files);
  otherwise the run stops before any work, naming a few of its files.
* No output may be one of the command's inputs, or another of its outputs
  (:func:`check_distinct`; symlinks resolved, a file counts once whatever
  dataset inside it is named).
* Errors name the user's path, never the temporary one; a full disk is
  ``<path>: no space left on device``. Uncompressed outputs whose size is
  known check the free space before any work.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dendriteseg.errors import InputError, OutputError

_OURS_IN_FOLDER = ("slice_",)  # names dendriteseg writes into a TIFF-slice folder
_ZARR_MARKERS = ("zarr.json", ".zarray", ".zgroup")


def resolve_output(path: str | Path) -> Path:
    """The path to write: a symlink is followed to the file it names."""
    path = Path(path)
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def is_special(path: Path) -> bool:
    """Whether ``path`` exists and is neither a regular file nor a folder (a device, pipe, socket)."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return False
    return not (stat.S_ISREG(mode) or stat.S_ISDIR(mode))


def temp_sibling(path: Path) -> Path:
    """A temporary name beside ``path`` that says which process writes it."""
    return path.with_name(f".{path.name}.partial-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def _owner_alive(stale: Path, name: str) -> bool:
    """Whether the process that named a temporary file still runs (unnamed ones count as dead)."""
    return _pid_alive(stale.name[len(f".{name}.partial-") :].split("-", 1)[0])


def _pid_alive(pid: str) -> bool:
    """Whether process ``pid`` (text) still runs; not a number: no."""
    if not pid.isdigit():
        return False
    if int(pid) == os.getpid():
        return True
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_partials(target: Path) -> list[Path]:
    """Delete temporary files that killed runs left beside ``target``; returns what was removed."""
    removed = []
    if not target.parent.is_dir():
        return removed
    for stale in target.parent.glob(f".{target.name}.partial-*"):
        if _owner_alive(stale, target.name):
            continue
        remove(stale)
        removed.append(stale)
    return removed


def work_folder(kind: str) -> Any:
    """A temporary work folder for a long job (``kind``: finetune, adapt), named by the process that
    owns it; the folders such jobs left when killed outright (their process gone) are removed first."""
    import tempfile

    root = Path(tempfile.gettempdir())
    prefix = f"dendriteseg-{kind}-"
    for stale in root.glob(f"{prefix}*"):
        pid = stale.name[len(prefix) :].split("-", 1)[0]
        if stale.is_dir() and pid.isdigit() and not _pid_alive(pid):
            shutil.rmtree(stale, ignore_errors=True)
    return tempfile.TemporaryDirectory(prefix=f"{prefix}{os.getpid()}-")


def remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _ours(folder: Path) -> bool:
    """Whether a folder holds only what dendriteseg writes (or nothing)."""
    names = [p.name for p in folder.iterdir()]
    if any(marker in names for marker in _ZARR_MARKERS):
        return True
    return all(n.startswith(_OURS_IN_FOLDER) and n.lower().endswith((".tif", ".tiff")) for n in names)


def check_target(path: Path, *, folder: bool) -> None:
    """Refuse a target that writing would damage (see the module notes); ``folder``: the output is one."""
    if is_special(path):
        raise InputError(f"{path}: is a device, pipe or socket, not a file; name a file to write")
    if path.is_dir():
        if not folder:
            raise InputError(f"{path}: is a folder; name a file to write")
        if not _ours(path):
            names = sorted(p.name for p in path.iterdir())
            shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
            raise InputError(
                f"{path}: is a folder that holds files dendriteseg did not write ({shown}); "
                "name a new output or empty it"
            )
    elif path.exists() and folder:
        raise InputError(f"{path}: is a file; this output is a folder")


def check_free_space(path: Path, nbytes: int) -> None:
    """Refuse, before any work, an output of ``nbytes`` that the disk cannot hold."""
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if nbytes + 2**20 > free:
        raise OutputError(
            f"{path}: no space left on device (needs {nbytes / 1e6:.1f} MB, {free / 1e6:.1f} MB free)"
        )


def describe_os_error(exc: BaseException) -> str | None:
    """The problem of a failed write in words, or None if it was not a write failure."""
    code = getattr(exc, "errno", None)
    text = str(exc)
    if code == errno.ENOSPC or "No space left" in text or ("requested and" in text and "written" in text):
        return "no space left on device"
    if code == errno.EDQUOT:
        return "disk quota exceeded"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror[0].lower() + exc.strerror[1:]
    return None


@contextmanager
def writing(path: Path) -> Iterator[None]:
    """Turn OS errors while writing ``path`` (or its temporary file) into one line naming ``path``."""
    try:
        yield
    except OutputError:
        raise
    except (OSError, RuntimeError, ValueError) as exc:
        reason = describe_os_error(exc)
        if reason is None or (isinstance(exc, ValueError) and not isinstance(exc, OSError)):
            raise
        raise OutputError(f"{path}: {reason}") from None


def write_all(fd: int, data: bytes, offset: int, path: Path) -> None:
    """``os.pwrite`` until every byte is written; a write that makes no progress is a full disk."""
    view = memoryview(data)
    done = 0
    while done < len(view):
        written = os.pwrite(fd, view[done:], offset + done)
        if written <= 0:
            raise OutputError(f"{path}: no space left on device")
        done += written


def write_text_atomic(path: str | Path, text: str) -> None:
    """Write a text file atomically (or through a device or pipe); errors name ``path``."""
    path = resolve_output(Path(path))
    if is_special(path):
        with writing(path), open(path, "w") as fh:
            fh.write(text)
            fh.flush()
        return
    if not path.parent.is_dir():
        raise InputError(f"{path}: folder {path.parent} does not exist")
    check_target(path, folder=False)
    remove_stale_partials(path)
    temp = temp_sibling(path)
    try:
        with writing(path):
            with open(temp, "w") as fh:
                fh.write(text)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(temp, path)
    finally:
        if temp.exists():
            temp.unlink()


def save_figure(fig: Any, path: str | Path, **options: Any) -> Path:
    """Save a matplotlib figure as PNG under a temporary name, rename it into place, close the figure."""
    import matplotlib.pyplot as plt

    path = resolve_output(Path(path))
    try:
        check_target(path, folder=False)
    except InputError:
        plt.close(fig)
        raise
    remove_stale_partials(path)
    temp = temp_sibling(path)
    try:
        with writing(path):
            fig.savefig(temp, format="png", **options)
            os.replace(temp, path)
    finally:
        plt.close(fig)
        if temp.exists():
            temp.unlink()
    return path


def _identity(spec: Any) -> str | None:
    """The file (or folder) a path or ``file.h5:/dataset`` spec names, symlinks resolved; None for
    what is not a path (an array) and for devices, pipes and sockets (text is written through them)."""
    from dendriteseg.io.location import Location, split_key

    if isinstance(spec, Location):
        spec = spec.path
    if not isinstance(spec, (str, os.PathLike)):
        return None
    text, _ = split_key(str(spec))
    path = Path(text)
    if is_special(path):
        return None
    return os.path.realpath(path)


def check_distinct(inputs: Any, outputs: dict[str, Any]) -> None:
    """Refuse, before any work, an output that is one of ``inputs`` or the same file as another of
    ``outputs`` (named by their options, e.g. ``{"-o": ..., "--png": ...}``; None entries are skipped)."""
    read = {}
    for spec in inputs:
        key = _identity(spec)
        if key is not None:
            read.setdefault(key, spec)
    written: dict[str, str] = {}
    for option, spec in outputs.items():
        key = _identity(spec)
        if key is None:
            continue
        if key in read:
            raise InputError(f"{spec}: {option} would overwrite the input {read[key]}; name another output")
        if key in written:
            raise InputError(f"{spec}: {option} and {written[key]} name the same file; give each its own")
        written[key] = option
