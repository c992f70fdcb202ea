"""Writing a set of text files so that a kill never leaves some of them new and some half-written."""

from __future__ import annotations

import os
from pathlib import Path


def write_files_atomic(files: dict[Path, str]) -> None:
    """Every file written to a temporary name beside it first, then all renamed: a kill while writing
    leaves the old files (and no temporaries); a kill during the renames leaves each file whole."""
    temps: dict[Path, Path] = {}
    try:
        for final, text in files.items():
            final.parent.mkdir(parents=True, exist_ok=True)
            tmp = final.with_name(f".{final.name}.{os.getpid()}.tmp")
            tmp.write_text(text, encoding="utf-8")
            temps[tmp] = final
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    for tmp, final in temps.items():
        os.replace(tmp, final)
