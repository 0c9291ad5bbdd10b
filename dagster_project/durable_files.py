"""Making a rename durable: the file's bytes and the folder entry reach the disk before a run
reports success (the export and the published copy both swap files in by rename)."""

import os
from pathlib import Path


def fsync_file(path: Path) -> None:
    descriptor = os.open(path, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def fsync_dir(folder: Path) -> None:
    # Some file systems cannot open or sync a directory; the rename itself is still atomic there.
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)
