"""What is wrong with a data dir given on the command line, before anything touches it.

Every ``arete`` sub-command takes ``--data-dir`` (or ``ARETE_DATA_DIR``). A command that
sets a machine up (``up``, ``broker run``, ``broker tls-init``, ``keys create``) may
create the directory; every other one needs the directory an earlier run made, and
must neither create it nor anything in it when the path is a typo.
"""

from __future__ import annotations

from pathlib import Path
from typing import Final

# ``arete broker run`` (and so ``arete up``) writes it on its first run.
MARKER: Final = Path("broker") / "broker.json"
# ``arete keys create`` may make a data dir too (a control plane that signs commands
# before its broker ever ran there): its public key marks the dir as ours as well.
KEY_MARKER: Final = Path("maestro-signing.pub")  # maestro.keys.PUBLIC_KEY_NAME


def data_dir_problem(raw: str | Path, *, create: bool) -> str | None:
    """One sentence saying what is wrong with ``raw`` as a data dir, or None."""
    text = str(raw)
    if not text.strip():
        return "--data-dir is empty; give the data dir's path (for example --data-dir ./data)"
    path = Path(text)
    try:
        if path.exists() and not path.is_dir():
            return f"the data dir {path} is a file, not a directory; give a directory"
        return _creatable(path) if create else _made_before(path)
    except OSError as exc:
        return f"cannot use the data dir {path}: {exc.strerror or exc}"


def _made_before(path: Path) -> str | None:
    """``path`` is a data dir that ``arete up`` or ``arete broker run`` made."""
    if not path.exists():
        return (
            f"there is no data dir {path}; check the path, or create it with "
            f"`arete up --data-dir {path}` (or `arete broker run --data-dir {path}`)"
        )
    if not (path / MARKER).is_file() and not (path / KEY_MARKER).is_file():
        return (
            f"{path} is not an Areté data dir (it has no {path / MARKER}); give the dir "
            "used by `arete up` or `arete broker run`, or run one of them with it first"
        )
    return None


def _creatable(path: Path) -> str | None:
    """A directory may be made at ``path``: its nearest existing ancestor is a directory."""
    for parent in path.absolute().parents:
        if parent.exists():
            if not parent.is_dir():
                return f"cannot create the data dir {path}: {parent} is a file"
            return None
    return None
