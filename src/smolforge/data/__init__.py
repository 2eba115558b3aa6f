"""Datasets in, TRL-ready rows out: sources, formats, preparation, token lengths.

- `sources`: where rows come from (builtin, local files and folders, Hub ids) and read errors.
- `formats`: format detection and row normalisation to TRL's conversational shapes.
- `turns`: chat turns and their roles (data.roles), shared by the formats.
- `prepare`: `prepare()` (load, detect, normalise, sample, split) and the statistics it records.
- `lengths`: token lengths with the chat template, length filters and the max_length check.
- `tools`: tool calls, tool results and tool definitions, checked and in one shape.
- `survival`: the template-survival check (what a chat template would lose of a row, and its loss mask).
- `report`: the data report (data_report.json, the console summary, the card's training-data rows).

Importing this package stays cheap (no datasets, torch or transformers until a function needs them).
"""

from smolforge.data.formats import (
    DEFAULT_FIELDS,
    FORMAT_HELP,
    KIND_OF_FORMAT,
    REQUIRED_ROLES,
    Detected,
    check_method_fits,
    detect_format,
    normalize_row,
    reasoning_kwargs,
    resolve_loss_on,
)
from smolforge.data.lengths import apply_length_filters, completion_room, length_stats, measure, precheck, token_length
from smolforge.data.prepare import PreparedData, drop_report, prepare
from smolforge.data.report import report_lines, summary_lines
from smolforge.data.sources import (
    EVAL_SPLIT_NAMES,
    LOCAL_SUFFIXES,
    display_name,
    hub_error_message,
    is_hub_dataset_id,
    is_local_source,
    load_splits,
)
from smolforge.data.turns import STANDARD_ROLES

__all__ = [
    "DEFAULT_FIELDS", "EVAL_SPLIT_NAMES", "FORMAT_HELP", "KIND_OF_FORMAT", "LOCAL_SUFFIXES", "REQUIRED_ROLES",
    "STANDARD_ROLES", "Detected", "PreparedData", "apply_length_filters", "completion_room", "check_method_fits",
    "detect_format",
    "display_name", "drop_report", "hub_error_message", "is_hub_dataset_id", "is_local_source", "length_stats",
    "load_splits", "measure", "normalize_row", "precheck", "prepare", "reasoning_kwargs", "report_lines",
    "resolve_loss_on", "summary_lines", "token_length",
]
