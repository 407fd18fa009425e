"""The input-data contract of tft-top: the one place that defines what metrics data is.

Everything that reads metrics (files, live records POSTed to the REST endpoint,
simulators) goes through this module, which turns raw input into a *canonical
frame* and a list of :class:`Problem` objects, one per bad row or bad file.

Canonical frame columns, sorted by ``server_name`` then ``timestamp``::

    server_name  str
    timestamp    datetime64[ns, UTC]
    cpu_percent, memory_percent, disk_percent, load_average   float64
    profile      str (UNKNOWN_PROFILE when absent or empty)

Validation is vectorised: only bad rows are visited one by one (to word their
problem), so multi-million-row files validate in a few seconds.
:func:`to_grid` then puts a canonical frame on the 5-minute UTC grid that the
forecasting model expects.
"""
from __future__ import annotations

import codecs
import csv
import datetime
import gzip
import math
import re
import zlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.csv as pa_csv

METRICS = ("cpu_percent", "memory_percent", "disk_percent", "load_average")
PERCENT_METRICS = METRICS[:3]
# A load average counts runnable and waiting tasks, so it cannot exceed the number of tasks a
# host can have: Linux's largest pid_max, 2**22.  Anything above it is not a load (and beyond
# float32, which the window store holds, it would become infinity).
MAX_LOAD = 4_194_304
REQUIRED_COLUMNS = ("server_name", "timestamp", *METRICS)
OPTIONAL_COLUMNS = ("profile",)
COLUMN_ALIASES = {"server_id": "server_name"}
STEP = pd.Timedelta(minutes=5)
STEP_SECONDS = 300
# Gaps of up to this many missing steps (30 min) are filled by linear interpolation and marked.
MAX_FILL_STEPS = 6
UNKNOWN_PROFILE = "unknown"

CANONICAL_COLUMNS = (*REQUIRED_COLUMNS, *OPTIONAL_COLUMNS)
GRID_COLUMNS = (*CANONICAL_COLUMNS, "filled", "segment")

_STEP_NS = STEP_SECONDS * 1_000_000_000
_NS_PER_UNIT = {"s": 1_000_000_000, "ms": 1_000_000, "us": 1_000, "ns": 1}
_NAT = np.iinfo(np.int64).min
# Epoch seconds that fit in datetime64[ns] (years 1677..2262), with a little margin.
_MAX_EPOCH_SECONDS = 9.2e9
_MIN_TIME_NS = pd.Timestamp("1679-01-01", tz="UTC").value
_MAX_TIME_NS = pd.Timestamp("2261-01-01", tz="UTC").value - 1
_NAN_WORDS = frozenset({"", "nan", "-nan", "+nan", "na", "n/a", "null", "none"})
_SNIFF_BYTES = 64 * 1024
_MAX_SHOWN_CHARS = 40
_MAX_REASON_CHARS = 120
_CSV_SUFFIXES = (".csv", ".csv.gz")
_PARQUET_SUFFIXES = (".parquet", ".pq")
_STRING_COLUMNS = frozenset({"server_name", "server_id", "timestamp", "profile"})


class DataError(Exception):
    """Input data is unusable; the message is always one line naming file, row and column."""


@dataclass(frozen=True)
class Problem:
    """One bad input: a bad row (``row`` set) or a bad file or source (``row`` None)."""

    source: str
    row: int | None
    column: str | None
    message: str
    line: int | None = None     # a CSV file's line of the row, where it is not row + 1

    def __str__(self) -> str:
        """``source: row R, column C: message``; row-less problems name any column in ``message``.
        A CSV row not on line R + 1 (blank lines, or a quoted field over several lines, before
        it) says its line too: ``row R (line L)``.
        One line: a control character in a file or column name shows escaped."""
        if self.row is None:
            return printable(f"{self.source}: {self.message}")
        where = f"row {self.row}" if self.line is None else f"row {self.row} (line {self.line})"
        where = where if self.column is None else f"{where}, column {self.column}"
        return printable(f"{self.source}: {where}: {self.message}")


def printable(text: str) -> str:
    """``text`` with its control and format characters (newline, escape, zero-width, …)
    written as escapes (``\\n``, ``\\x1b``, ``\\u200b``): a file or column name must not start a
    new line or move the cursor of the terminal that shows it."""
    text = str(text)
    if text.isprintable():
        return text
    return "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in text)


@dataclass
class LoadResult:
    """Valid rows as a canonical frame, plus every problem and note met on the way."""

    frame: pd.DataFrame
    problems: list[Problem] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def raise_for_problems(self) -> None:
        """Raise :class:`DataError` naming the first problem and counting the rest."""
        if not self.problems:
            return
        text = str(self.problems[0])
        more = len(self.problems) - 1
        if more:
            text += f" (and {more} more problem{'s' if more > 1 else ''})"
        raise DataError(" ".join(text.splitlines()))


# --------------------------------------------------------------------------- public API


def validate_frame(df: pd.DataFrame, source: str) -> LoadResult:
    """Validate a raw frame (one row per sample) from ``source``; rows are numbered from 1."""
    return _finish(_check(df, source, np.arange(1, len(df) + 1), empty_message=None))


def validate_records(records: Sequence[object], source: str) -> LoadResult:
    """Validate live records (JSON-like dicts); row numbers are 1-based positions in ``records``.

    A record that is not a dict is a problem; an empty list is the problem "no records".
    Each record may name its server by ``server_name`` or by an alias such as ``server_id``.
    """
    if isinstance(records, (str, bytes, dict)) or not isinstance(records, Sequence):
        message = f"expected a list of records, got {_json_type(records)}"
        return LoadResult(_empty_frame(), [Problem(source, None, None, message)])
    problems = [
        Problem(source, i, None, f"record is not an object (got {_json_type(r)})")
        for i, r in enumerate(records, start=1)
        if not isinstance(r, dict)
    ]
    dicts, kept = [], []
    for i, r in enumerate(records, start=1):
        if not isinstance(r, dict):
            continue
        clean, duplicate = clean_record(r)
        if duplicate is not None:
            problems.append(Problem(source, i, None, duplicate))
        else:
            dicts.append(clean)
            kept.append(i)
    if not dicts:
        return LoadResult(_empty_frame(), sorted(problems, key=_problem_order)
                          or [Problem(source, None, None, "no records")])
    rows = np.array(kept, dtype=np.int64)
    # a JSON integer beyond any float (1 followed by 310 zeros) failed the whole request, in
    # building the frame or in converting a column: as its digits it is refused in its own row
    # and column, and the other rows are kept
    if any(_huge_int(v) for r in dicts for v in r.values()):
        dicts = [{k: str(v) if _huge_int(v) else v for k, v in r.items()} for r in dicts]
    df = pd.DataFrame.from_records(dicts)
    notes = []
    for alias, name in COLUMN_ALIASES.items():  # each record may use either key
        if alias in df.columns and name in df.columns:
            both = df[name].notna() & df[alias].notna()
            if both.any():      # as for files: say that the alias was not read
                notes.append(f"{source}: ignored {alias} in {int(both.sum())} record(s) that also have {name}")
            df[name] = df[name].fillna(df.pop(alias))
    checked = _check(df, source, rows, empty_message=None)
    checked.problems = sorted(problems + checked.problems, key=_problem_order)
    result = _finish(checked)
    result.notes = notes + result.notes
    return result


_NAME_KEYS = frozenset({"server_name", *(a for a, n in COLUMN_ALIASES.items() if n == "server_name")})


def clean_record(record: dict) -> tuple[dict, str | None]:
    """One record's keys as validate_records reads them, and the problem when two keys name
    one column. Keys are stripped, as a file's header is: "cpu_percent " is cpu_percent (a
    record with two keys for one column is refused in its own row; it failed the whole batch).
    A whole-number server name stays its digits (beside a missing name the column became
    floats: 9007199254740993 was renamed 9007199254740992)."""
    clean: dict = {}
    for k, v in record.items():
        name = str(k).strip()
        if name in clean:
            same = [repr(str(x)) for x in record if str(x).strip() == name]
            return clean, f"keys {' and '.join(same)} name the same column"
        clean[name] = str(v) if name in _NAME_KEYS and isinstance(v, int) and not isinstance(v, bool) else v
    return clean, None


def _huge_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and abs(value) > _MAX_FLOAT_INT


_MAX_FLOAT_INT = 2 ** 1023


def load_file(path: str | Path) -> LoadResult:
    """Load and validate one ``.csv``, ``.csv.gz``, ``.parquet`` or ``.pq`` file.

    Never raises for bad input: unreadable files become a file-level :class:`Problem`.
    """
    return _with_lines(_finish(_check_file(Path(path))))


_NOTES: dict[str, None] = {}       # notes of every load_path, in order, each once (drain_notes)


def drain_notes() -> list[str]:
    """The notes (ignored columns, skipped sidecar files) of the data loaded since the last
    call, each once: for a command to report (the README promises they are reported)."""
    notes = list(_NOTES)
    _NOTES.clear()
    return notes


def load_path(path: str | Path) -> LoadResult:
    """Load a data file, or every data file directly inside a directory (sorted by name).

    Results from several files are merged; ordering checks are per file, and a
    (server, timestamp) already seen in an earlier file is a duplicate.  Names
    starting with "." are skipped, and so are the sidecar tables that may sit beside
    metrics (``SIDECAR_FILES``: incident labels, the server list); they are noted
    (in the result, and for :func:`drain_notes`).
    """
    result = _load_path(Path(path))
    for note in result.notes:
        if _SIDECAR_NOTE not in note:       # files that belong beside metrics: nothing to report
            _NOTES[note] = None
    while len(_NOTES) > 100:
        del _NOTES[next(iter(_NOTES))]
    return result


def data_files(directory: str | Path) -> list[Path]:
    """The metrics files a directory holds, as ``load_path`` reads them (directly inside,
    not hidden, not sidecars); [] where it cannot be listed."""
    try:
        listed = sorted(p for p in Path(directory).iterdir() if not p.name.startswith("."))
        return [p for p in listed if _kind(p) and p.is_file() and not _is_sidecar(p)]
    except OSError:
        return []


def _load_path(path: Path) -> LoadResult:
    source = str(path)
    try:
        if not path.exists():
            return LoadResult(_empty_frame(), [Problem(source, None, None, "path does not exist")])
        if not path.is_dir():
            return load_file(path)
        listed = sorted(p for p in path.iterdir() if not p.name.startswith("."))
        entries = [p for p in listed if _kind(p)]
        candidates = [p for p in entries if p.is_file()]
        broken = [p.name for p in entries if p.is_symlink() and not p.exists()]
        # names that look like data in a form not read (b.csv.bz2, c.tsv, d.csv.zip, e.json): say so
        unread = [p.name for p in listed if not _kind(p) and _DATA_LIKE.search(p.name.lower()) and p.is_file()
                  and p.name not in _READ_ELSEWHERE]
        # and folders: only the files directly inside a directory are read
        folders = [p.name for p in listed if p.is_dir()]
    except OSError as exc:      # e.g. a directory without read or search permission
        return LoadResult(_empty_frame(), [Problem(source, None, None,
                                                   f"cannot read the directory ({exc.strerror or exc})")])
    files = [p for p in candidates if not _is_sidecar(p)]
    skipped = [p.name for p in candidates if _is_sidecar(p)]
    if not files:
        message = ("directory has no metrics files, only files that travel beside them: " + ", ".join(skipped)
                   if skipped else "directory has no .csv, .csv.gz, .parquet or .pq files")
        if folders:
            message += f" (folders inside are not read: {_names(folders)}; name a folder itself to read it)"
        elif unread:
            message += f" (not read: {_names(unread)})"
        return LoadResult(_empty_frame(), [Problem(source, None, None, message)])
    result = _with_lines(_finish(_merge([_check_file(p) for p in files])))
    result.notes = _alike_notes(result.notes, [str(p) for p in files])
    if skipped:
        result.notes.append(f"{source}: {_SIDECAR_NOTE}: {', '.join(skipped)}")
    if broken:      # a data file whose link points nowhere: its data is missing, say so
        result.notes.append(f"{source}: skipped broken links: {', '.join(broken)}")
    if unread:
        result.notes.append(f"{source}: skipped files that are not .csv, .csv.gz, .parquet or .pq: {_names(unread)}")
    if folders:
        result.notes.append(f"{source}: skipped folders (only the files directly inside a directory are read; "
                            f"name a folder itself to read it): {_names(folders)}")
    return result


def _alike_notes(notes: list[str], sources: list[str], most: int = 2) -> list[str]:
    """Per-file notes of a directory, each kind at most ``most`` times: a note that more files
    share (the same words, other numbers) is given once for the first, with how many more files
    and which (1,000 per-server files written as fractions gave 1,000 lines)."""
    prefixes = tuple(f"{s}: " for s in sources)
    groups: dict[str, list[tuple[str, str]]] = {}      # kind -> [(file, note)]
    order: list[str | tuple[str]] = []                  # kinds, and notes that are not a file's
    for note in notes:
        prefix = next((p for p in prefixes if note.startswith(p)), None)
        if prefix is None:
            order.append((note,))
            continue
        kind = _NUMBERS.sub("#", note[len(prefix):])
        if kind not in groups:
            groups[kind] = []
            order.append(kind)
        groups[kind].append((prefix[:-2], note))
    out = []
    for kind in order:
        if isinstance(kind, tuple):
            out.append(kind[0])
            continue
        alike = groups[kind]
        out.extend(note for _, note in alike[:most])
        if len(alike) > most:
            rest = [Path(f).name for f, _ in alike[most:]]
            out[-1] += f" (and {len(rest):,} more file(s) alike: {_names(rest, 5)})"
    return out


_NUMBERS = re.compile(r"\d[\d,.:TZ+-]*")


def _names(names: list[str], most: int = 10) -> str:
    """File names for a one-line message: control characters escaped, at most ``most``."""
    return ", ".join(printable(n) for n in names[:most]) + (" …" if len(names) > most else "")


_DATA_LIKE = re.compile(r"\.(csv|tsv|parquet|pq|json|jsonl|ndjson|txt|xlsx?|ods|dat|log)(\.|$)")


_SIDECAR_NOTE = "skipped sidecar files (not metrics)"
_READ_ELSEWHERE = frozenset({"split.json"})     # engine.datasplit reads it

# Tables that travel beside metrics in a data directory and are not metrics themselves.
SIDECAR_FILES = ("incidents.csv", "servers.csv")
SIDECAR_SUFFIXES = ("_incidents.csv",)


def _is_sidecar(path: Path) -> bool:
    return path.name in SIDECAR_FILES or path.name.endswith(SIDECAR_SUFFIXES)


def to_grid(frame: pd.DataFrame, max_fill_steps: int = MAX_FILL_STEPS) -> pd.DataFrame:
    """Put a canonical frame on the 5-minute UTC grid, per server.

    Samples are bucketed by flooring their time to a multiple of 5 minutes since
    the epoch; several samples in one bucket are averaged (profile: the latest).
    A gap of at most ``max_fill_steps`` missing buckets is filled with linearly
    interpolated rows marked ``filled=True``; a longer gap creates no rows and
    starts a new ``segment`` (numbered from 0 per server).
    """
    if max_fill_steps < 0:
        raise ValueError(f"max_fill_steps must be >= 0, got {max_fill_steps}")
    if frame.empty:
        return _empty_grid()
    codes, names = pd.factorize(frame["server_name"], sort=True)
    ns = _series_ns(frame["timestamp"])
    order = np.lexsort((ns, codes))
    codes, bucket = codes[order], (ns // _STEP_NS)[order]
    values = frame[list(METRICS)].to_numpy(dtype=np.float64)[order]
    profiles = (
        frame["profile"].to_numpy(dtype=object)[order]
        if "profile" in frame
        else np.full(len(frame), UNKNOWN_PROFILE, dtype=object)
    )

    # One row per (server, bucket): mean of the metrics, last profile.
    n = len(codes)
    starts = np.flatnonzero(np.r_[True, (codes[1:] != codes[:-1]) | (bucket[1:] != bucket[:-1])])
    ends = np.r_[starts[1:], n]
    means = np.add.reduceat(values, starts, axis=0) / (ends - starts)[:, None]
    g_codes, g_bucket, g_profiles = codes[starts], bucket[starts], profiles[ends - 1]

    # Steps since the previous bucket of the same server decide fill or break.
    n_groups = len(starts)
    new_server = np.r_[True, g_codes[1:] != g_codes[:-1]]
    step = np.r_[0, np.diff(g_bucket)]
    fill = ~new_server & (step > 1) & (step - 1 <= max_fill_steps)
    breaks = np.cumsum(~new_server & (step - 1 > max_fill_steps))
    first_of_server = np.maximum.accumulate(np.where(new_server, np.arange(n_groups), 0))
    segment = breaks - breaks[first_of_server]

    # Filled rows go just before the row that ends their gap.
    n_fill = np.where(fill, step - 1, 0)
    fills_before = np.cumsum(n_fill) - n_fill
    total = n_groups + int(n_fill.sum())
    kept_pos = np.arange(n_groups) + fills_before + n_fill
    owner = np.repeat(np.arange(n_groups), n_fill)
    j = np.arange(len(owner)) - np.repeat(fills_before, n_fill) + 1
    fill_pos = owner + fills_before[owner] + j - 1
    frac = (j / step[owner])[:, None]

    out_codes = np.empty(total, dtype=np.int64)
    out_bucket = np.empty(total, dtype=np.int64)
    out_values = np.empty((total, len(METRICS)), dtype=np.float64)
    out_profiles = np.empty(total, dtype=object)
    out_segment = np.empty(total, dtype=np.int64)
    out_filled = np.zeros(total, dtype=bool)
    out_codes[kept_pos], out_codes[fill_pos] = g_codes, g_codes[owner]
    out_bucket[kept_pos], out_bucket[fill_pos] = g_bucket, g_bucket[owner - 1] + j
    out_values[kept_pos] = means
    out_values[fill_pos] = means[owner - 1] + (means[owner] - means[owner - 1]) * frac
    out_profiles[kept_pos], out_profiles[fill_pos] = g_profiles, g_profiles[owner - 1]
    out_segment[kept_pos], out_segment[fill_pos] = segment, segment[owner]
    out_filled[fill_pos] = True

    return pd.DataFrame(
        {
            "server_name": pd.Series(names.take(out_codes), dtype="str"),
            "timestamp": _ns_to_series(out_bucket * _STEP_NS),
            **{metric: out_values[:, k] for k, metric in enumerate(METRICS)},
            "profile": pd.Series(out_profiles, dtype="str"),
            "filled": out_filled,
            "segment": out_segment,
        }
    )


# --------------------------------------------------------------------------- file reading


@dataclass
class _Checked:
    """Validated rows of one source, in input order, with their 1-based ``_row`` numbers."""

    source: str
    frame: pd.DataFrame  # canonical columns plus "_row"
    problems: list[Problem]
    notes: list[str]


def _kind(path: Path) -> str | None:
    """The file's kind from its name: "csv", "parquet", or None when unsupported."""
    name = path.name.lower()
    if name.endswith(_CSV_SUFFIXES):
        return "csv"
    if name.endswith(_PARQUET_SUFFIXES):
        return "parquet"
    return None


def _check_file(path: Path) -> _Checked:
    """Read and validate one file, turning every read failure into a file-level problem."""
    source = str(path)
    kind = _kind(path)
    if not path.exists():
        return _failed(source, "path does not exist")
    if not path.is_file():
        return _failed(source, "not a regular file")
    if kind is None:
        return _failed(source, "unsupported file type (expected .csv, .csv.gz, .parquet or .pq)")
    try:
        if path.stat().st_size == 0:
            return _failed(source, "file is empty")
        df = _read_csv(path) if kind == "csv" else _read_parquet(path)
    except _Unreadable as exc:
        return _failed(source, str(exc))
    except OSError as exc:
        return _failed(source, f"cannot read file ({reason_line(exc)})")
    try:
        return _check(df, source, np.arange(1, len(df) + 1), empty_message="file has no rows")
    except (TypeError, ValueError, pa.ArrowException) as exc:  # e.g. nested values in a Parquet column
        return _failed(source, f"not a usable table ({reason_line(exc)})")


class _Unreadable(Exception):
    """The file is not a table of the expected kind; the message is the problem text."""


def _read_csv(path: Path) -> pd.DataFrame:
    """Read a (possibly gzipped) CSV file; identifier and time columns stay strings."""
    header = _sniff_csv_header(path)
    string_columns = {name: pa.string() for name in header if name.strip() in _STRING_COLUMNS}
    try:
        # gzip by the name, whatever its case (pyarrow's own detection wants a lower-case .gz);
        # only an empty field is missing: a server may be called "NA" or "null"
        source = pa.input_stream(str(path), compression="gzip" if path.name.lower().endswith(".gz") else None)
        table = pa_csv.read_csv(
            source,
            convert_options=pa_csv.ConvertOptions(column_types=string_columns, strings_can_be_null=True,
                                                  null_values=[""]),
        )
        return _hex_as_text(path, table).to_pandas()
    except (pa.ArrowException, ValueError, EOFError, OSError, UnicodeError) as exc:
        # pyarrow names no row (and may blame its own block size): find it by reading again
        if "Empty CSV file" in str(exc):        # a header without a newline after it
            raise _Unreadable("file has no rows") from exc
        where = _locate_csv_problem(path, len(header)) if isinstance(exc, (pa.ArrowException, UnicodeError)) else None
        # (semicolons with decimal commas: the rows have more fields than the one-column header)
        hint = _separator_hint(header[0]) if len(header) == 1 and where and "fields, the header has" in where else ""
        raise _Unreadable(f"not a readable CSV table ({where or reason_line(exc)}){hint}") from exc


def _hex_as_text(path: Path, table: pa.Table) -> pa.Table:
    """pyarrow reads an all-integer column's "0x10" as 16: such a metric column is read again
    as text, so that the value is refused as not a number rather than taken as another."""
    names = table.column_names
    ints = [n for n in names if n.strip() in METRICS and names.count(n) == 1
            and pa.types.is_integer(table.schema.field(n).type)]
    if not ints:
        return table
    import pyarrow.compute as pc

    source = pa.input_stream(str(path), compression="gzip" if path.name.lower().endswith(".gz") else None)
    text = pa_csv.read_csv(source, convert_options=pa_csv.ConvertOptions(
        include_columns=ints, column_types={n: pa.string() for n in ints}, strings_can_be_null=True,
        null_values=[""]))
    for name in ints:
        column = text.column(name)
        if pc.any(pc.match_substring_regex(column, "[xX]")).as_py():
            table = table.set_column(names.index(name), name, column)
    return table


def _with_lines(result: LoadResult) -> LoadResult:
    """Each CSV row problem with its line in the file, where that is not row + 1: pyarrow skips
    blank lines and a quoted field may hold newlines, so "row 17" of a file with blank lines
    was not on line 18, where an operator's editor would look."""
    rows: dict[str, set[int]] = {}
    for p in result.problems:
        if p.row is not None and _kind(Path(p.source)) == "csv":
            rows.setdefault(p.source, set()).add(p.row)
    if not rows:
        return result
    lines = {source: _csv_lines(Path(source), wanted) for source, wanted in rows.items()}
    problems = []
    for p in result.problems:
        line = lines.get(p.source, {}).get(p.row) if p.row is not None else None
        problems.append(replace(p, line=line) if line is not None and line != p.row + 1 else p)
    result.problems = problems
    return result


def _csv_lines(path: Path, wanted: set[int]) -> dict[int, int]:
    """The 1-based line on which each wanted data row starts (rows counted as pyarrow counts
    them: the first after the header is 1, blank lines skipped).  Empty when the file cannot
    be read again (it is reported as it was)."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    out: dict[int, int] = {}
    last = max(wanted)
    try:
        with opener(path, "rt", encoding="utf-8-sig", newline="") as fh:
            reader = csv.reader(fh)
            row, start = -1, 1
            for fields in reader:
                begin, start = start, reader.line_num + 1
                if not fields:
                    continue
                row += 1
                if row in wanted:
                    out[row] = begin
                    if row >= last:
                        break
    except (OSError, EOFError, zlib.error, UnicodeDecodeError, csv.Error):
        return out
    return out


def _separator_hint(header: str) -> str:
    """For a header read as one column: which other separator it holds, if any."""
    sep = next((name for ch, name in ((";", "semicolons"), ("\t", "tabs"), ("|", "'|'")) if ch in header), None)
    return f"; the header is separated by {sep}: tft-top reads comma-separated files" if sep else ""


def _locate_csv_problem(path: Path, expected: int) -> str | None:
    """The first row that breaks the table (a field count other than the header's, text that
    is not UTF-8, a field beyond the csv module's limit, as an unclosed quote makes), read
    with the csv module; rows are counted as everywhere else (the first after the header is
    1; blank lines, which pyarrow skips, are not counted).  None when it finds nothing."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    row = -1

    def lines(fh):      # decoded one line at a time: a decoding error is the row being read
        for i, raw in enumerate(fh):
            yield (raw[3:] if i == 0 and raw.startswith(codecs.BOM_UTF8) else raw).decode("utf-8")

    try:
        with opener(path, "rb") as fh:
            try:
                for fields in csv.reader(lines(fh)):
                    if not fields:
                        continue
                    row += 1
                    if row and len(fields) != expected:
                        text = ",".join(fields)
                        text = text if len(text) <= 60 else text[:59] + "…"
                        return f"row {row}: {len(fields)} fields, the header has {expected}: {text!r}"
            except UnicodeDecodeError:
                return f"row {row + 1}: not UTF-8 text"
            except csv.Error as exc:
                if "field limit" in str(exc):
                    return f"row {row + 1}: a field of more than {csv.field_size_limit():,} characters (an unclosed quote?)"
                return f"row {row + 1}: {reason_line(exc)}"
    except (OSError, EOFError, zlib.error):
        return None
    return None


def _sniff_csv_header(path: Path) -> list[str]:
    """Reject non-text and JSON early and return the header's column names."""
    opener = gzip.open if path.name.lower().endswith(".gz") else open
    try:
        with opener(path, "rb") as fh:
            head = fh.read(_SNIFF_BYTES)
    except (OSError, EOFError, zlib.error) as exc:
        raise _Unreadable(f"not a readable CSV table ({reason_line(exc)})") from exc
    if not head.strip():
        raise _Unreadable("file is empty")
    if head[:2] in (codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE) or head[:4] in (codecs.BOM_UTF32_LE, codecs.BOM_UTF32_BE):
        raise _Unreadable("not a readable CSV table (UTF-16 or UTF-32 text: save it as UTF-8)")
    if b"\x00" in head:
        raise _Unreadable("not a readable CSV table (binary data)")
    try:
        text = codecs.getincrementaldecoder("utf-8-sig")().decode(head, final=len(head) < _SNIFF_BYTES)
    except UnicodeDecodeError as exc:
        raise _Unreadable("not a readable CSV table (not UTF-8 text)") from exc
    text = text.lstrip()
    if not text:            # e.g. only a byte-order mark, or only Unicode spaces
        raise _Unreadable("file is empty")
    if text[:1] in ("{", "["):
        raise _Unreadable("not a readable CSV table (looks like JSON)")
    return next(csv.reader([text.splitlines()[0]]), [])


def _read_parquet(path: Path) -> pd.DataFrame:
    """Read a Parquet file into a frame."""
    try:
        df = pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises many unrelated types for corrupt files
        df = _parquet_with_repeated_names(path)
        if df is None:
            raise _Unreadable(f"not a readable Parquet file ({reason_line(exc)})") from exc
    # a frame written with its time (or server) as the pandas index: those are columns here
    # (a level that is also a column, as set_index(drop=False) writes, stays an index)
    levels = [name for name in df.index.names
              if name in (*CANONICAL_COLUMNS, *COLUMN_ALIASES) and name not in df.columns]
    if levels:
        df = df.reset_index(level=levels)
    return df


def _parquet_with_repeated_names(path: Path) -> pd.DataFrame | None:
    """A Parquet file with two columns of one name, which pandas' reader refuses whole: an
    extra column's repeats are dropped (it is ignored and noted anyway), a data column's are
    kept for the usual "appears more than once".  None when that is not what is wrong."""
    import pyarrow.parquet as pq

    try:
        table = pq.ParquetFile(path).read()
    except Exception:  # noqa: BLE001 - the caller reports pandas' reason
        return None
    names = table.column_names
    if len(set(names)) == len(names):
        return None
    known = (*CANONICAL_COLUMNS, *COLUMN_ALIASES)
    keep = [i for i, n in enumerate(names) if n.strip() in known or names.index(n) == i]
    try:
        return table.select(keep).to_pandas(ignore_metadata=True)
    except Exception:  # noqa: BLE001
        return None


def reason_line(exc: BaseException) -> str:
    """A short one-line reason from an exception: its first line (its type's name when it has
    none), at most _MAX_REASON_CHARS."""
    lines = str(exc).strip().splitlines()
    text = lines[0] if lines else type(exc).__name__
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


# --------------------------------------------------------------------------- validation


# A column check returns parsed values, a bad-row mask and a _Describe, which
# words the problems of the given bad row positions.
_Describe = Callable[[np.ndarray], list[str]]


def _check(df: pd.DataFrame, source: str, rows: np.ndarray, empty_message: str | None) -> _Checked:
    """Validate ``df`` (input order, row numbers ``rows``) into a _Checked."""
    df, problems, notes = _normalise_columns(df, source)
    if problems:
        return _Checked(source, _empty_frame(with_rows=True), problems, notes)
    if df.empty:
        problems = [Problem(source, None, None, empty_message)] if empty_message else []
        return _Checked(source, _empty_frame(with_rows=True), problems, notes)

    n = len(df)
    checks: list[tuple[str, np.ndarray, _Describe]] = []
    names, bad, describe = _check_server_names(df["server_name"])
    checks.append(("server_name", bad, describe))
    ns, bad, describe = _check_timestamps(df["timestamp"])
    checks.append(("timestamp", bad, describe))
    metric_values = {}
    for metric in METRICS:
        metric_values[metric], bad, describe = _check_metric(df[metric], metric)
        checks.append((metric, bad, describe))
    if "profile" in df:
        bad, describe = _check_profiles(df["profile"])
        checks.append(("profile", bad, describe))

    reported = np.zeros(n, dtype=bool)
    for column, bad, describe in checks:
        new = np.flatnonzero(bad & ~reported)
        if len(new):
            problems.extend(
                Problem(source, int(rows[i]), column, msg) for i, msg in zip(new, describe(new), strict=True)
            )
        reported |= bad

    valid = np.flatnonzero(~reported)
    order_problems, drop = _ordering_problems(source, names.take(valid), ns[valid], rows[valid])
    problems.extend(order_problems)
    keep = valid[~drop]
    profiles = _profiles(df["profile"]).take(keep).array if "profile" in df else UNKNOWN_PROFILE
    frame = pd.DataFrame(
        {
            "server_name": names.take(keep).array,
            "timestamp": _ns_to_series(ns[keep]),
            **{metric: values[keep] for metric, values in metric_values.items()},
            "profile": profiles,
            "_row": rows[keep],
        }
    )
    problems.sort(key=_problem_order)
    return _Checked(source, frame, problems, notes + _plausibility_notes(source, frame))


_YEAR_2000_NS = 946_684_800 * 1_000_000_000


def _apart_servers(first: pd.Series, last: pd.Series) -> list[tuple[str, int, int]]:
    """(server, first ns, last ns) of servers whose samples all lie more than a day after, or
    before, every other server's (one host with its clock ten years ahead made a file's
    forecast "as of 2036" and left the rest of the fleet out as silent).  ``first``, ``last``:
    each server's first and last sample, in ns."""
    if len(first) < 2:
        return []
    day = 86_400 * 10**9
    # every other server's latest last (and earliest first): the top two, so a server is not
    # compared with itself
    f, l = first.to_numpy(), last.to_numpy()
    top, bottom = np.sort(l)[-2:], np.sort(f)[:2]
    others_last = np.where(l == top[1], top[0], top[1])
    others_first = np.where(f == bottom[0], bottom[1], bottom[0])
    far = (f > others_last + day) | (l < others_first - day)
    return [(str(n), int(first[n]), int(last[n])) for n in first.index[far]]


def _plausibility_notes(source: str, frame: pd.DataFrame) -> list[str]:
    """Notes on valid data that is probably not what its writer meant: percentages written
    as fractions (a server at 0.99 would never alert), times before 2000 (numbers in another
    unit than epoch seconds: Excel days, minutes), a server over a day apart from the others
    (a wrong clock), many samples per 5-minute step (averaged into one: a whole history
    collapsed into a few steps)."""
    if len(frame) < 12:
        return []
    notes = []
    # one pass over the servers for every note (three groupings took 130-160 ms on 2.7 M rows)
    per = frame.groupby("server_name", sort=True).agg(
        **{m: (m, "max") for m in PERCENT_METRICS}, first=("timestamp", "min"), last=("timestamp", "max"),
        n=("timestamp", "size"))
    tops = per[list(PERCENT_METRICS)]
    counted, top = tops.notna().sum(axis=1), tops.max(axis=1)
    # the file as a whole, or servers one by one (one collector of several writing fractions
    # went unnoticed beside the others): two or more percent columns with values, none above 1
    whole = tops.max()
    if whole.notna().sum() >= 2 and 0 < whole.max() <= 1.0:
        notes.append(f"{source}: every {', '.join(PERCENT_METRICS)} value is between 0 and 1: percentages "
                     f"written as fractions? (0.5 reads as 0.5 %, not 50 %)")
    else:
        fractions = (counted >= 2) & (top <= 1.0) & (top > 0) & (per["n"] >= 12)
        if fractions.any():     # (and, the file not being all fractions, some server above 1)
            names = [str(n) for n in fractions[fractions].index]
            shown = ", ".join(names[:5]) + (f" and {len(names) - 5} more" if len(names) > 5 else "")
            notes.append(f"{source}: {shown}: every {', '.join(PERCENT_METRICS)} value of "
                         f"{'this server' if len(names) == 1 else 'these servers'} is between 0 and 1, unlike "
                         f"other servers': percentages written as fractions? (0.5 reads as 0.5 %, not 50 %)")
    ns = lambda col: pd.Series(per[col].to_numpy(dtype="datetime64[ns]").view(np.int64), index=per.index)  # noqa: E731
    firsts, lasts = ns("first"), ns("last")
    first, last = int(firsts.min()), int(lasts.max())
    if first < _YEAR_2000_NS:
        notes.append(f"{source}: timestamps from {_time(first)}, before 2000: is that right? (numbers are read "
                     f"as Unix epoch seconds: are they in another unit?)")
    apart = _apart_servers(firsts, lasts)
    if apart:
        shown = ", ".join(f"{name} ({_time(a)} .. {_time(b)})" for name, a, b in apart[:3])
        more = f" and {len(apart) - 3} more" if len(apart) > 3 else ""
        notes.append(f"{source}: {shown}{more}: over a day apart from every other server's samples: a wrong clock? "
                     "(a replay plays the whole span between, and the fleet's time is the newest sample)")
    servers = len(per)
    steps = (last - first) // _STEP_NS + 1
    if len(frame) > 3 * servers * steps:
        notes.append(f"{source}: {len(frame):,} samples of {servers:,} server(s) within {_time(first)} .. "
                     f"{_time(last)}: several per 5-minute step, averaged into one")
    return notes


def _normalise_columns(df: pd.DataFrame, source: str) -> tuple[pd.DataFrame, list[Problem], list[str]]:
    """Strip column names, apply aliases, drop extra columns; problems for missing or repeated ones."""
    df = df.set_axis([str(c).strip() for c in df.columns], axis=1)
    notes: list[str] = []
    known = (*CANONICAL_COLUMNS, *COLUMN_ALIASES)
    repeated = sorted({c for c in df.columns[df.columns.duplicated()] if c in known})
    if repeated:
        return df, [Problem(source, None, c, f"column '{c}' appears more than once") for c in repeated], notes
    for alias, name in COLUMN_ALIASES.items():
        if alias in df.columns:
            if name in df.columns:
                notes.append(f"{source}: ignored column {alias} ({name} is present)")
                df = df.drop(columns=alias)
            else:
                df = df.rename(columns={alias: name})
    missing = [c for c in REQUIRED_COLUMNS if c not in df.columns]
    if missing:
        found = ", ".join(df.columns) or "none"
        hint = ""
        if len(df.columns) == 1:        # one column that holds the others: another separator
            hint = _separator_hint(str(df.columns[0]))
            if hint:                    # said first: "'server_name' is missing" beside it looked false
                return df, [Problem(source, None, missing[0], f"{hint.strip(' ;')}: the columns were read as one "
                                                              f"({found[:120]})")], notes
        # each problem names every missing column (one run to fix them all, not one per run)
        gone = ", ".join(missing)
        what = f"column '{missing[0]}' is missing" if len(missing) == 1 else f"columns {gone} are missing"
        problems = [Problem(source, None, c, f"{what} (columns: {found}{hint}; expected: "
                                             f"{', '.join(REQUIRED_COLUMNS)})") for c in missing]
        return df, problems, notes
    extra = list(dict.fromkeys(c for c in df.columns if c not in CANONICAL_COLUMNS))
    if extra:
        # (the first ten: a record with 30,000 extra keys got a 229 KB answer naming each)
        named = ", ".join(c or "(unnamed)" for c in extra[:10])
        notes.append(f"{source}: ignored extra columns: {named}"
                     + (f" and {len(extra) - 10:,} more" if len(extra) > 10 else ""))
        df = df.drop(columns=extra)
    return df, [], notes


def _check_server_names(raw: pd.Series) -> tuple[pd.Series, np.ndarray, _Describe]:
    """Server names as stripped strings; empty or missing ones are bad, and so are JSON objects,
    lists and booleans (a POSTed name: str() would make "{'x': 1}" or "True" a server), names
    holding a control character (an escape sequence or newline would reach the operator's
    terminal: one cleared predict's screen, another forged a line) and names longer than
    MAX_NAME_LENGTH.  Each distinct name is checked once (a file repeats it on every row)."""
    distinct, codes = _distinct(raw)
    nested_d = np.fromiter((_not_text(v) for v in distinct), dtype=bool, count=len(distinct))
    names_d = _as_str(distinct).str.strip()
    missing_d = (names_d.isna() | (names_d == "")).to_numpy()
    control_d = names_d.str.contains(_CONTROL, regex=True).fillna(False).to_numpy(dtype=bool) & ~missing_d
    long_d = (names_d.str.len().fillna(0).to_numpy() > MAX_NAME_LENGTH) & ~control_d
    names = pd.Series(names_d.array.take(codes), index=raw.index)
    nested, control, long = nested_d[codes], control_d[codes], long_d[codes]
    bad = (missing_d | nested_d | control_d | long_d)[codes]

    def describe(idx: np.ndarray) -> list[str]:
        return [f"{_show(raw.iloc[i])} is not text" if nested[i] else
                f"{_show(raw.iloc[i])} holds a control character" if control[i] else
                f"a name of {len(names.iloc[i])} characters is longer than {MAX_NAME_LENGTH}" if long[i] else
                "missing value" for i in idx]

    return names, bad, describe


def _check_timestamps(raw: pd.Series) -> tuple[np.ndarray, np.ndarray, _Describe]:
    """Timestamps as int64 UTC nanoseconds: ISO 8601 strings, epoch seconds or datetimes."""
    too_far = np.zeros(len(raw), dtype=bool)  # a valid time outside what datetime64[ns] holds
    if pd.api.types.is_timedelta64_dtype(raw.dtype):      # a duration is not a time (to_datetime: since 1970)
        ns, ok = np.zeros(len(raw), dtype=np.int64), np.zeros(len(raw), dtype=bool)
    elif _is_number_dtype(raw.dtype):
        ns, ok = _epoch_ns(raw.to_numpy(dtype=np.float64, na_value=np.nan))
    else:
        is_datetime = isinstance(raw.dtype, pd.DatetimeTZDtype) or pd.api.types.is_datetime64_dtype(raw.dtype)
        parsed = raw if is_datetime else pd.to_datetime(raw, utc=True, format="ISO8601", errors="coerce")
        ns, ok = _datetimes_ns(parsed)
        too_far = ~ok & parsed.notna().to_numpy()
        if not is_datetime:     # pandas reads these two words as the wall clock's time
            words = raw.isin(_CLOCK_WORDS).to_numpy(dtype=bool)
            ok &= ~words
            too_far &= ~words
        retry = np.flatnonzero(~ok & ~too_far & raw.notna().to_numpy())
        if len(retry):
            ns[retry], ok[retry] = _epoch_ns(_to_float(raw.iloc[retry]))
    # a day inside what datetime64[ns] holds: a replay and a forecast add hours and days to
    # the data's times (a sample at 2262-04-11 failed there, with a traceback)
    outside = ok & ((ns < _MIN_TIME_NS) | (ns > _MAX_TIME_NS))
    if outside.any():
        ok &= ~outside
        too_far = too_far | outside

    def describe(idx: np.ndarray) -> list[str]:
        values = raw.iloc[idx].to_numpy(dtype=object)
        return [
            "missing value"
            if _is_missing(v)
            else f"{_show(v)} is outside the supported years 1679–2260"
            if far
            else f"{_show(v)} is not an ISO 8601 time or epoch seconds{_millis_hint(v)}"
            for v, far in zip(values, too_far[idx], strict=True)
        ]

    return ns, ~ok, describe


_CLOCK_WORDS = ("now", "today")


def _millis_hint(value) -> str:
    """' (epoch milliseconds? …)' for a number that would be a time of this era in ms."""
    try:
        x = float(value)
    except (TypeError, ValueError):
        return ""
    return " (epoch milliseconds? give seconds)" if 1e11 <= abs(x) < 1e14 else ""


def _check_metric(raw: pd.Series, metric: str) -> tuple[np.ndarray, np.ndarray, _Describe]:
    """Metric values as float64; non-numbers, missing, non-finite and out-of-range values are bad."""
    values = _to_float(raw)
    finite = np.isfinite(values)
    percent = metric in PERCENT_METRICS
    out_of_range = (values < 0) | (values > (100 if percent else MAX_LOAD))
    bad = ~finite | (finite & out_of_range)

    def describe(idx: np.ndarray) -> list[str]:
        originals = raw.iloc[idx].to_numpy(dtype=object)
        messages = []
        for value, original in zip(values[idx], originals, strict=True):
            if np.isnan(value) and _is_missing(original):
                messages.append("missing value")
            elif np.isnan(value):
                messages.append(f"{_show(original)} is not a number")
            elif np.isinf(value):
                messages.append(f"{_number(value)} is not finite")
            elif percent:
                messages.append(f"{_number(value)} is outside 0–100")
            elif value < 0:
                messages.append(f"{_number(value)} is negative")
            else:
                messages.append(f"{_number(value)} is above {MAX_LOAD}, the most tasks a Linux host can have")
        return messages

    return values, bad, describe


def _profiles(raw: pd.Series) -> pd.Series:
    """Profiles as stripped strings, UNKNOWN_PROFILE where missing or empty."""
    def clean(u: pd.Series) -> pd.Series:
        p = _as_str(u).str.replace(_CONTROL, " ", regex=True).str.strip()     # (shown in the table)
        return p.mask(p.isna() | (p == ""), UNKNOWN_PROFILE)

    return _per_distinct(raw, clean)


def _check_profiles(raw: pd.Series) -> tuple[np.ndarray, _Describe]:
    """Bad rows of an optional profile column: a JSON object, list or boolean, or a Parquet
    list, would become its Python text (a profile outside every vocabulary); a profile
    longer than MAX_NAME_LENGTH is not a profile."""
    distinct, codes = _distinct(raw)
    nested_d = np.fromiter((_not_text(v) for v in distinct), dtype=bool, count=len(distinct))
    long_d = (_as_str(distinct).str.strip().str.len().fillna(0).to_numpy() > MAX_NAME_LENGTH) & ~nested_d
    nested, long = nested_d[codes], long_d[codes]

    def describe(idx: np.ndarray) -> list[str]:
        return [f"{_show(raw.iloc[i])} is not text" if nested[i] else
                f"a profile of more than {MAX_NAME_LENGTH} characters" for i in idx]

    return nested | long, describe


def _ordering_problems(
    source: str, names: pd.Series, ns: np.ndarray, rows: np.ndarray
) -> tuple[list[Problem], np.ndarray]:
    """Duplicate and backwards timestamps per server, in input order; returns (problems, rows to drop)."""
    codes = pd.factorize(names)[0]
    order, repeat = _repeats(codes, ns)
    running_max = pd.Series(ns).groupby(codes).cummax()
    previous_max = running_max.groupby(codes).shift(1, fill_value=_NAT).to_numpy()
    backwards = (ns < previous_max) & ~repeat
    bad = np.flatnonzero(repeat | backwards)
    if not len(bad):
        return [], repeat
    targets = np.where(repeat[bad], ns[bad], previous_max[bad])
    first_rows = rows[_first_positions(codes, ns, order, codes[bad], targets)]
    problems = []
    for i, server, first in zip(bad, names.take(bad), first_rows, strict=True):
        if repeat[i]:
            message = f"duplicate timestamp {_time(ns[i])} for server {server} (first at row {first})"
        else:
            message = (
                f"timestamp goes backwards: {_time(ns[i])} is earlier than {_time(previous_max[i])}"
                f" at row {first} for server {server} (each server's rows must be in time order: "
                "sorted by timestamp, e.g. an export with ORDER BY server_name, timestamp)"
            )
        problems.append(Problem(source, int(rows[i]), "timestamp", message))
    return problems, repeat | backwards


def _repeats(codes: np.ndarray, ns: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(stable lexsort order by (codes, ns), mask of rows whose (code, ns) occurred earlier)."""
    order = np.lexsort((ns, codes))  # stable: equal keys stay in input order
    repeat = np.zeros(len(ns), dtype=bool)
    repeat[order[1:]] = (codes[order[1:]] == codes[order[:-1]]) & (ns[order[1:]] == ns[order[:-1]])
    return order, repeat


def _first_positions(
    codes: np.ndarray, ns: np.ndarray, order: np.ndarray, want_codes: np.ndarray, want_ns: np.ndarray
) -> np.ndarray:
    """Position of the first row with each wanted (code, ns), all of which exist; ``order`` from _repeats."""
    times = np.unique(ns)
    keys = codes[order] * len(times) + np.searchsorted(times, ns[order])
    wanted = want_codes * len(times) + np.searchsorted(times, want_ns)
    return order[np.searchsorted(keys, wanted)]


def _merge(parts: list[_Checked]) -> _Checked:
    """Merge per-file results; a (server, timestamp) already seen in an earlier file is a duplicate."""
    problems = [p for part in parts for p in part.problems]
    notes = [n for part in parts for n in part.notes]
    used = [part for part in parts if not part.frame.empty]
    if not used:
        return _Checked("", _empty_frame(with_rows=True), problems, notes)
    frame = pd.concat([part.frame for part in used], ignore_index=True)
    if len(used) > 1:
        part_of = np.repeat(np.arange(len(used)), [len(part.frame) for part in used])
        codes = pd.factorize(frame["server_name"])[0]
        ns = _series_ns(frame["timestamp"])
        order, repeat = _repeats(codes, ns)
        bad = np.flatnonzero(repeat)
        if len(bad):
            first = _first_positions(codes, ns, order, codes[bad], ns[bad])
            rows = frame["_row"].to_numpy()
            problems.extend(
                Problem(
                    used[part_of[i]].source,
                    int(rows[i]),
                    "timestamp",
                    f"duplicate timestamp {_time(ns[i])} for server {server}"
                    f" (first at {used[part_of[j]].source} row {rows[j]})",
                )
                for i, j, server in zip(bad, first, frame["server_name"].take(bad), strict=True)
            )
            frame = frame.loc[~repeat]
            rank = {part.source: k for k, part in enumerate(parts)}
            problems.sort(key=lambda p: (rank[p.source], *_problem_order(p)))
    return _Checked("", frame, problems, notes)


def _finish(checked: _Checked) -> LoadResult:
    """Sort the valid rows into the canonical frame."""
    frame = checked.frame
    if len(frame) > 1:
        codes = pd.factorize(frame["server_name"], sort=True)[0]
        order = np.lexsort((_series_ns(frame["timestamp"]), codes))
        if (order != np.arange(len(order))).any():
            frame = frame.take(order)
    frame = frame.drop(columns="_row").reset_index(drop=True)
    return LoadResult(frame, checked.problems, checked.notes)


def _failed(source: str, message: str) -> _Checked:
    """A _Checked for a source that could not be read at all."""
    return _Checked(source, _empty_frame(with_rows=True), [Problem(source, None, None, message)], [])


# --------------------------------------------------------------------------- conversions


def _is_number_dtype(dtype: object) -> bool:
    """True for int/float dtypes (not bool)."""
    return pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype)


def _to_float(raw: pd.Series) -> np.ndarray:
    """float64 values; non-numbers (booleans included) become NaN."""
    if isinstance(raw.dtype, pd.CategoricalDtype):
        raw = raw.astype(object)
    if pd.api.types.is_datetime64_any_dtype(raw.dtype) or pd.api.types.is_timedelta64_dtype(raw.dtype):
        return np.full(len(raw), np.nan)       # (to_numeric would give nanoseconds since 1970)
    if _is_number_dtype(raw.dtype):
        return raw.to_numpy(dtype=np.float64, na_value=np.nan)
    if pd.api.types.is_bool_dtype(raw.dtype):
        return np.full(len(raw), np.nan)
    values = np.array(pd.to_numeric(raw, errors="coerce").to_numpy(dtype=np.float64, na_value=np.nan))
    if raw.dtype == object:
        flags = (isinstance(v, (bool, np.bool_)) for v in raw.to_numpy())
        values[np.fromiter(flags, dtype=bool, count=len(raw))] = np.nan
    return values


# control characters, and the invisible or direction-changing ones (Unicode Cf, Zl, Zp): a
# right-to-left override or a zero-width space in a name shows the operator another name
# (the Unicode part as the characters themselves: pyarrow's regex engine has no \u escape)
_CONTROL = (r"[\x00-\x1f\x7f-\x9f"
            "\u00ad\u061c\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f\ufeff\ufff9-\ufffb]")
MAX_NAME_LENGTH = 300    # a DNS name (253) and a :port fit; longer is not a server name (it would fill every screen)


def _per_distinct(values: pd.Series, fn) -> pd.Series:
    """``fn`` (Series -> Series) run once over the distinct values of ``values`` (missing
    included) and spread back to its rows: names and profiles repeat across millions of rows,
    and per-row Python or regex work on them cost seconds per file."""
    distinct, codes = _distinct(values)
    return pd.Series(fn(distinct).array.take(codes), index=values.index)


def _distinct(values: pd.Series) -> tuple[pd.Series, np.ndarray]:
    """(distinct values, missing as the last one; each row's position in them); row by row
    when the values cannot be hashed (a JSON object posted as a name)."""
    try:
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
    except TypeError:
        return values.astype(object).reset_index(drop=True), np.arange(len(values))
    distinct = pd.Series([*np.asarray(uniques, dtype=object), None], dtype=object)
    return distinct, np.where(codes >= 0, codes, len(distinct) - 1)


def _as_str(raw: pd.Series) -> pd.Series:
    """``raw`` as the pandas string dtype, missing values kept missing; a whole number held as
    a float reads as the whole number (JSON names 13 and null in one batch make a float
    column: "13", not "13.0", the name 13 posted alone gets)."""
    if isinstance(raw.dtype, pd.CategoricalDtype) or raw.dtype.kind == "f" or raw.dtype == object:
        return _per_distinct(raw, lambda u: pd.Series([_text(v) for v in u], index=u.index, dtype="str"))
    return raw.astype("str")


def _not_text(v) -> bool:
    """A value that must not become a name by str(): JSON objects, lists and booleans, a
    Parquet list (a numpy array), bytes that are not UTF-8."""
    if isinstance(v, (bytes, bytearray)):
        try:
            bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False
    return isinstance(v, (dict, list, tuple, set, bool, np.bool_, np.ndarray))


def _text(v):
    """One value as text: None when missing; a whole number held as a float without '.0';
    bytes (Parquet text written without its UTF-8 annotation) decoded."""
    if isinstance(v, (bytes, bytearray)):
        try:
            return bytes(v).decode("utf-8")
        except UnicodeDecodeError:
            return str(v)
    if isinstance(v, float):
        return None if math.isnan(v) else (str(int(v)) if v.is_integer() else str(v))
    if v is None or v is pd.NA or v is pd.NaT:
        return None
    return v if isinstance(v, str) else str(v)


def _datetimes_ns(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(int64 UTC ns, valid mask) from a datetime series; naive times are UTC."""
    if values.dt.tz is not None:
        values = values.dt.tz_convert(None)
    array = values.to_numpy()
    raw = array.view(np.int64).copy()
    factor = _NS_PER_UNIT[np.datetime_data(array.dtype)[0]]
    ok = (raw != _NAT) & (np.abs(raw) <= np.iinfo(np.int64).max // factor)
    return np.where(ok, raw * factor, 0), ok


def _epoch_ns(seconds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(int64 UTC ns, valid mask) from float epoch seconds, kept to the microsecond."""
    ok = np.isfinite(seconds) & (np.abs(seconds) < _MAX_EPOCH_SECONDS)
    micros = np.round(np.where(ok, seconds, 0.0) * 1e6).astype(np.int64)
    return micros * 1_000, ok


def _series_ns(series: pd.Series) -> np.ndarray:
    """int64 UTC nanoseconds of a datetime series."""
    return series.astype("datetime64[ns, UTC]").dt.tz_convert(None).to_numpy().view(np.int64)


def _ns_to_series(ns: np.ndarray) -> pd.Series:
    """A datetime64[ns, UTC] series from int64 nanoseconds."""
    return pd.Series(np.asarray(ns, dtype=np.int64).view("datetime64[ns]")).dt.tz_localize("UTC")


def _empty_frame(with_rows: bool = False) -> pd.DataFrame:
    """An empty canonical frame (plus ``_row`` for internal use)."""
    columns = {
        "server_name": pd.Series(dtype="str"),
        "timestamp": _ns_to_series(np.empty(0, dtype=np.int64)),
        **{m: pd.Series(dtype=np.float64) for m in METRICS},
        "profile": pd.Series(dtype="str"),
    }
    if with_rows:
        columns["_row"] = pd.Series(dtype=np.int64)
    return pd.DataFrame(columns)


def _empty_grid() -> pd.DataFrame:
    """An empty grid frame with the right columns and dtypes."""
    return _empty_frame().assign(filled=pd.Series(dtype=bool), segment=pd.Series(dtype=np.int64))


# --------------------------------------------------------------------------- wording


def _problem_order(problem: Problem) -> tuple[int, int]:
    """Sort key: file-level problems first, then by row."""
    return (0, 0) if problem.row is None else (1, problem.row)


def _is_missing(value: object) -> bool:
    """True for None, NaN, NaT, pd.NA and blank or NaN-like strings."""
    if value is None or value is pd.NA or value is pd.NaT:
        return True
    if isinstance(value, str):
        return value.strip().lower() in _NAN_WORDS
    return isinstance(value, (float, np.floating)) and bool(np.isnan(value))


def _show(value: object) -> str:
    """A short one-line rendering of a bad input value."""
    if isinstance(value, (bool, np.bool_)):
        return repr(bool(value))
    if isinstance(value, (int, float, np.integer, np.floating)):
        return _number(float(value))
    if isinstance(value, (datetime.date, np.datetime64)):
        return str(value)
    text = value if isinstance(value, str) else repr(value)
    if len(text) > _MAX_SHOWN_CHARS:
        text = text[: _MAX_SHOWN_CHARS - 1] + "…"
    return repr(text) if isinstance(value, str) else text


def _number(value: float) -> str:
    """150.0 -> "150", 12.5 -> "12.5", inf -> "inf"."""
    if np.isfinite(value) and value == int(value) and abs(value) < 1e16:
        return str(int(value))
    return repr(float(value))


def _time(ns: int) -> str:
    """ISO 8601 UTC text for int64 nanoseconds, e.g. 2024-01-01T00:05:00Z."""
    return pd.Timestamp(int(ns), tz="UTC").isoformat().replace("+00:00", "Z")


def _json_type(value: object) -> str:
    """The JSON name of a Python value's type."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, (list, tuple)):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__
