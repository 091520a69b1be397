"""Writing output files so that nothing a user asked for is left half-written."""

import contextlib
import os
import pathlib
import tempfile
import tomllib

__all__ = ["atomic_write", "current_umask", "read_text", "read_toml"]


@contextlib.contextmanager
def atomic_write(path, mode="wb", **open_options):
    """Open a temporary file beside ``path``; on success it replaces ``path``, on error it is removed.

    So ``path`` holds either its old content or the whole new file, never a
    part. The directory is created if missing; the file gets the usual
    permissions (0666 less the umask).
    """
    target = pathlib.Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, mode, **open_options) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())
        os.chmod(temporary, 0o666 & ~current_umask())
        os.replace(temporary, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


def current_umask():
    """The process's umask (reading it means setting it: it is set back at once)."""
    current = os.umask(0)
    os.umask(current)
    return current


def read_text(path, error, *, missing=""):
    """The UTF-8 text of ``path``; else ``error`` (an exception class) with one line naming the file.

    ``missing`` is added to the message when the file does not exist.
    """
    path = pathlib.Path(path)
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise error(f"{path}: no such file{missing}") from None
    except (OSError, UnicodeDecodeError) as failure:
        raise error(f"{path}: cannot read it ({getattr(failure, 'strerror', None) or failure})") from None


def read_toml(path, error, *, missing=""):
    """The TOML file at ``path`` as data; else ``error`` with one line naming the file (see ``read_text``)."""
    text = read_text(path, error, missing=missing)
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as failure:
        raise error(f"{path}: not valid TOML ({failure})") from None

