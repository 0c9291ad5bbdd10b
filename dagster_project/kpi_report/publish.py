"""Writing report files atomically: built under a hidden temp name in the same folder, fsynced,
then ``os.replace``d over the final name (a reader never sees half a page)."""

from __future__ import annotations

import datetime as dt
import os
import secrets
from pathlib import Path

from ..durable_files import fsync_dir, fsync_file

REPORT_FOLDER = "report"  # under publish_dir
LATEST_NAME = "latest.html"


def report_name(as_of: dt.date) -> str:
    return f"loyalty_report_{as_of.isoformat()}.html"


def report_folder(publish_path: Path) -> Path:
    return publish_path / REPORT_FOLDER


def write_atomic(path: Path, text: str) -> Path:
    """Writes ``text`` to ``path`` through a hidden temp file and a rename; returns ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.tmp-{secrets.token_hex(6)}")
    try:
        temp.write_text(text, encoding="utf-8")
        fsync_file(temp)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)
    fsync_dir(path.parent)
    return path
