"""Export files for marketing automation: one generic writer (files.py) for every file family
(segment_flags.py, …) and their Dagster assets (assets.py)."""

from .assets import build_export_asset, build_export_assets
from .files import ExportError, ExportOutcome, FileFamily, MartIsNewer, export_family
from .segment_flags import SEGMENT_FLAGS

__all__ = [
    "SEGMENT_FLAGS", "ExportError", "ExportOutcome", "FileFamily", "MartIsNewer", "build_export_asset",
    "build_export_assets", "export_family",
]
