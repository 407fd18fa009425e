"""Tests for engine.contract: the input-data contract (loading, validation, 5-minute grid)."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from engine.contract import (
    CANONICAL_COLUMNS,
    GRID_COLUMNS,
    MAX_FILL_STEPS,
    METRICS,
    UNKNOWN_PROFILE,
    DataError,
    LoadResult,
    Problem,
    load_file,
    load_path,
    to_grid,
    validate_frame,
    validate_records,
)

HEADER = "server_name,timestamp,cpu_percent,memory_percent,disk_percent,load_average"
CANONICAL = ["server_name", "timestamp", *METRICS, "profile"]


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def csv_file(tmp_path: Path, *rows: str, name: str = "a.csv", header: str = HEADER) -> Path:
    return write(tmp_path, name, "\n".join([header, *rows]) + "\n")


def only_problem(result: LoadResult) -> Problem:
    assert len(result.problems) == 1, result.problems
    return result.problems[0]


def ts(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC")


def canonical(rows: list[tuple]) -> pd.DataFrame:
    """A canonical frame from (server, iso time, cpu, mem, disk, load) tuples."""
    df = pd.DataFrame(rows, columns=["server_name", "timestamp", *METRICS])
    result = validate_frame(df, "test")
    assert result.problems == []
    return result.frame


# --------------------------------------------------------------------------- valid input


def test_valid_csv_gives_sorted_canonical_frame(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "web-02,2024-01-01T00:00:00Z,10,20,30,0.5",
        "web-01,2024-01-01T00:00:00Z,12,22,32,0.7",
        "web-01,2024-01-01T00:05:00Z,11,21,31,0.6",
    )
    result = load_file(path)
    assert result.problems == []
    assert result.notes == []
    frame = result.frame
    assert list(frame.columns) == CANONICAL
    assert str(frame["timestamp"].dtype) == "datetime64[ns, UTC]"
    assert all(frame[m].dtype == np.float64 for m in METRICS)
    assert pd.api.types.is_string_dtype(frame["server_name"])
    assert pd.api.types.is_string_dtype(frame["profile"])
    assert list(frame["server_name"]) == ["web-01", "web-01", "web-02"]
    assert list(frame["timestamp"]) == [ts("2024-01-01T00:00"), ts("2024-01-01T00:05"), ts("2024-01-01")]
    assert list(frame["cpu_percent"]) == [12.0, 11.0, 10.0]
    assert list(frame["profile"]) == [UNKNOWN_PROFILE] * 3
    assert list(frame.index) == [0, 1, 2]


def test_profile_kept_and_blank_profile_is_unknown(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "web-01,2024-01-01T00:00:00Z,1,2,3,0.1,web",
        "db-01,2024-01-01T00:00:00Z,1,2,3,0.1,",
        header=HEADER + ",profile",
    )
    result = load_file(path)
    assert result.problems == []
    profiles = dict(zip(result.frame["server_name"], result.frame["profile"]))
    assert profiles == {"db-01": "unknown", "web-01": "web"}


def test_timestamps_iso_offset_naive_and_epoch(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "a,2024-01-01T02:00:00+02:00,1,1,1,1",  # offset converted to UTC
        "a,2024-01-01T00:05:00,1,1,1,1",  # naive = UTC
        "a,2024-01-01 00:10:00Z,1,1,1,1",
        "a,1704068400,1,1,1,1",  # epoch seconds as text among ISO strings
        "a,1704068700.5,1,1,1,1",
    )
    result = load_file(path)
    assert result.problems == []
    assert list(result.frame["timestamp"]) == [
        ts("2024-01-01T00:00"),
        ts("2024-01-01T00:05"),
        ts("2024-01-01T00:10"),
        ts("2024-01-01T00:20"),
        ts("2024-01-01T00:25:00.5"),
    ]


def test_epoch_seconds_integer_column(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "a,1704067200,1,1,1,1", "a,1704067500,1,1,1,1")
    result = load_file(path)
    assert result.problems == []
    assert list(result.frame["timestamp"]) == [ts("2024-01-01T00:00"), ts("2024-01-01T00:05")]
    assert str(result.frame["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_server_id_alias(tmp_path: Path) -> None:
    header = HEADER.replace("server_name", "server_id")
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1", header=header)
    result = load_file(path)
    assert result.problems == []
    assert result.notes == []
    assert list(result.frame["server_name"]) == ["web-01"]


def test_server_id_ignored_when_server_name_present(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "other,web-01,2024-01-01T00:00:00Z,1,2,3,0.1", header="server_id," + HEADER)
    result = load_file(path)
    assert result.problems == []
    assert result.notes == [f"{path}: ignored column server_id (server_name is present)"]
    assert list(result.frame["server_name"]) == ["web-01"]
    assert list(result.frame.columns) == CANONICAL


def test_extra_columns_noted_once_and_dropped(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "ok,web-01,2024-01-01T00:00:00Z,1,2,3,0.1,x",
        "ok,web-01,2024-01-01T00:05:00Z,1,2,3,0.1,y",
        header="status," + HEADER + ",foo",
    )
    result = load_file(path)
    assert result.problems == []
    assert result.notes == [f"{path}: ignored extra columns: status, foo"]
    assert list(result.frame.columns) == CANONICAL


def test_csv_gz_and_parquet(tmp_path: Path) -> None:
    text = HEADER + "\nweb-01,2024-01-01T00:00:00Z,1,2,3,0.1\n"
    gz = tmp_path / "a.csv.gz"
    gz.write_bytes(gzip.compress(text.encode()))
    pq = tmp_path / "b.pq"
    pd.DataFrame(
        {
            "server_name": ["web-01"],
            "timestamp": [pd.Timestamp("2024-01-01 00:00")],  # naive datetime column = UTC
            **{m: [1.0] for m in METRICS},
        }
    ).to_parquet(pq)
    for path in (gz, pq):
        result = load_file(path)
        assert result.problems == [], path
        assert list(result.frame["timestamp"]) == [ts("2024-01-01T00:00")]


def test_parquet_tz_aware_timestamps_converted_to_utc(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pd.DataFrame(
        {
            "server_name": ["web-01"],
            "timestamp": [pd.Timestamp("2024-01-01 02:00", tz="Europe/Berlin")],
            **{m: [1] for m in METRICS},  # int metrics become float64
        }
    ).to_parquet(path)
    result = load_file(path)
    assert result.problems == []
    assert list(result.frame["timestamp"]) == [ts("2024-01-01T01:00")]
    assert result.frame["cpu_percent"].dtype == np.float64


def test_directory_merges_csv_gz_and_parquet(tmp_path: Path) -> None:
    write(tmp_path, "1.csv", HEADER + "\nweb-01,2024-01-01T00:00:00Z,1,2,3,0.1\n")
    gz_text = HEADER + "\nweb-01,2024-01-01T00:10:00Z,2,2,3,0.1\n"
    (tmp_path / "2.csv.gz").write_bytes(gzip.compress(gz_text.encode()))
    pd.DataFrame(
        {
            "server_name": ["web-01", "db-01"],
            # earlier than 2.csv.gz's row: ordering is only checked within a file
            "timestamp": ["2024-01-01T00:05:00Z", "2024-01-01T00:00:00Z"],
            **{m: [3.0, 4.0] for m in METRICS},
        }
    ).to_parquet(tmp_path / "3.parquet")
    write(tmp_path, "README.md", "not data")
    result = load_path(tmp_path)
    assert result.problems == []
    frame = result.frame
    assert list(frame["server_name"]) == ["db-01", "web-01", "web-01", "web-01"]
    assert list(frame["cpu_percent"]) == [4.0, 1.0, 3.0, 2.0]
    assert list(frame.index) == [0, 1, 2, 3]


def test_directory_notes_once_per_file_and_cross_file_duplicates(tmp_path: Path) -> None:
    a = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1,x", name="a.csv", header=HEADER + ",status")
    b = csv_file(
        tmp_path,
        "web-01,2024-01-01T00:00:00Z,9,9,9,0.9,x",
        "web-01,2024-01-01T00:05:00Z,1,2,3,0.1,x",
        "web-01,2024-01-01T00:10:00Z,abc,2,3,0.1,x",
        name="b.csv",
        header=HEADER + ",status",
    )
    result = load_path(tmp_path)
    assert result.notes == [f"{a}: ignored extra columns: status", f"{b}: ignored extra columns: status"]
    assert [str(p) for p in result.problems] == [
        f"{b}: row 1, column timestamp: duplicate timestamp 2024-01-01T00:00:00Z for server web-01"
        f" (first at {a} row 1)",
        f"{b}: row 3, column cpu_percent: 'abc' is not a number",
    ]
    assert list(result.frame["cpu_percent"]) == [1.0, 1.0]


def test_load_path_on_a_file(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1")
    assert len(load_path(path).frame) == 1
    assert len(load_path(str(path)).frame) == 1


# --------------------------------------------------------------------------- bad rows


@pytest.mark.parametrize(
    ("row", "column", "message"),
    [
        ("web-01,2024-01-01T00:10:00Z,abc,2,3,0.1", "cpu_percent", "'abc' is not a number"),
        ("web-01,2024-01-01T00:10:00Z,1,,3,0.1", "memory_percent", "missing value"),
        ("web-01,2024-01-01T00:10:00Z,1,NaN,3,0.1", "memory_percent", "missing value"),
        ("web-01,2024-01-01T00:10:00Z,1,2,inf,0.1", "disk_percent", "inf is not finite"),
        ("web-01,2024-01-01T00:10:00Z,1,2,3,-inf", "load_average", "-inf is not finite"),
        ("web-01,2024-01-01T00:10:00Z,150,2,3,0.1", "cpu_percent", "150 is outside 0–100"),
        ("web-01,2024-01-01T00:10:00Z,1,100.5,3,0.1", "memory_percent", "100.5 is outside 0–100"),
        ("web-01,2024-01-01T00:10:00Z,1,2,-5,0.1", "disk_percent", "-5 is outside 0–100"),
        ("web-01,2024-01-01T00:10:00Z,1,2,3,-1", "load_average", "-1 is negative"),
        # finite, but no host has that many tasks (and the float32 store would hold infinity)
        ("web-01,2024-01-01T00:10:00Z,1,2,3,1e39", "load_average",
         "1e+39 is above 4194304, the most tasks a Linux host can have"),
        ("web-01,yesterday,1,2,3,0.1", "timestamp", "'yesterday' is not an ISO 8601 time or epoch seconds"),
        ("web-01,,1,2,3,0.1", "timestamp", "missing value"),
        # epoch milliseconds are not epoch seconds
        ("web-01,1704067200000,1,2,3,0.1", "timestamp", "'1704067200000' is not an ISO 8601 time or epoch seconds (epoch milliseconds? give seconds)"),
        (
            "web-01,2300-01-01T00:00:00Z,1,2,3,0.1",
            "timestamp",
            "'2300-01-01T00:00:00Z' is outside the supported years 1679–2260",
        ),
        (",2024-01-01T00:10:00Z,1,2,3,0.1", "server_name", "missing value"),
        # several problems in one row: the first column's is reported
        ("web-01,2024-01-01T00:10:00Z,abc,200,3,-1", "cpu_percent", "'abc' is not a number"),
    ],
)
def test_bad_cell_is_reported_with_file_row_and_column(
    tmp_path: Path, row: str, column: str, message: str
) -> None:
    path = csv_file(
        tmp_path,
        "web-01,2024-01-01T00:00:00Z,1,2,3,0.1",
        "web-01,2024-01-01T00:05:00Z,1,2,3,0.1",
        row,
        "web-01,2024-01-01T00:15:00Z,1,2,3,0.1",
    )
    result = load_file(path)
    problem = only_problem(result)
    assert str(problem) == f"{path}: row 3, column {column}: {message}"
    assert (problem.source, problem.row, problem.column) == (str(path), 3, column)
    # the valid rows are kept
    assert list(result.frame["timestamp"].dt.minute) == [0, 5, 15]


def test_boundary_values_are_valid(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "a,2024-01-01T00:00:00Z,0,100,0,0", "a,2024-01-01T00:05:00Z,100,0,100,1000")
    result = load_file(path)
    assert result.problems == []
    assert len(result.frame) == 2


def test_duplicate_timestamp_drops_later_row(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "web-01,2024-01-01T00:00:00Z,1,2,3,0.1",
        "web-02,2024-01-01T00:05:00Z,1,2,3,0.1",
        "web-01,2024-01-01T00:05:00Z,1,2,3,0.1",
        "web-02,2024-01-01T00:10:00Z,1,2,3,0.1",
        "web-01,2024-01-01T00:05:00Z,99,2,3,0.1",
    )
    result = load_file(path)
    assert str(only_problem(result)) == (
        f"{path}: row 5, column timestamp:"
        " duplicate timestamp 2024-01-01T00:05:00Z for server web-01 (first at row 3)"
    )
    assert len(result.frame) == 4
    assert 99.0 not in set(result.frame["cpu_percent"])


def test_timestamp_going_backwards_is_dropped(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "web-01,2024-01-01T00:00:00Z,1,2,3,0.1",
        "web-01,2024-01-01T00:10:00Z,2,2,3,0.1",
        "web-02,2024-01-01T00:00:00Z,3,2,3,0.1",  # other servers don't count
        "web-01,2024-01-01T00:05:00Z,4,2,3,0.1",
        "web-01,2024-01-01T00:15:00Z,5,2,3,0.1",
    )
    result = load_file(path)
    assert str(only_problem(result)) == (
        f"{path}: row 4, column timestamp: timestamp goes backwards: 2024-01-01T00:05:00Z is earlier than"
        " 2024-01-01T00:10:00Z at row 2 for server web-01 (each server's rows must be in time order: sorted by"
        " timestamp, e.g. an export with ORDER BY server_name, timestamp)"   # (a shuffled export read as a clock fault)
    )
    assert list(result.frame["cpu_percent"]) == [1.0, 2.0, 5.0, 3.0]


def test_invalid_rows_do_not_count_for_ordering(tmp_path: Path) -> None:
    # row 1 has a bad value, so row 2 with the same timestamp is not a duplicate
    path = csv_file(tmp_path, "a,2024-01-01T00:10:00Z,abc,2,3,0.1", "a,2024-01-01T00:10:00Z,1,2,3,0.1")
    result = load_file(path)
    assert [(p.row, p.column) for p in result.problems] == [(1, "cpu_percent")]
    assert len(result.frame) == 1


def test_problems_are_in_row_order_and_valid_rows_kept(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "a,2024-01-01T00:00:00Z,1,2,3,-1",
        "a,2024-01-01T00:05:00Z,1,2,3,0.1",
        "a,soon,1,2,3,0.1",
        "a,2024-01-01T00:10:00Z,1,2,300,0.1",
        "a,2024-01-01T00:15:00Z,1,2,3,0.1",
    )
    result = load_file(path)
    located = [(p.row, p.column) for p in result.problems]
    assert located == [(1, "load_average"), (3, "timestamp"), (4, "disk_percent")]
    assert list(result.frame["timestamp"].dt.minute) == [5, 15]


# --------------------------------------------------------------------------- bad files


def test_missing_required_column(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,2,3,0.1", header=HEADER.replace(",cpu_percent", ""))
    result = load_file(path)
    problem = only_problem(result)
    assert str(problem) == (
        f"{path}: column 'cpu_percent' is missing"
        " (columns: server_name, timestamp, memory_percent, disk_percent, load_average; expected: server_name,"
        " timestamp, cpu_percent, memory_percent, disk_percent, load_average)"
    )
    assert (problem.row, problem.column) == (None, "cpu_percent")
    assert result.frame.empty
    # several missing: the first line names them all (it named one, and a run per column followed)
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,2,3,0.1,4,x", name="theirs.csv",
                    header="host,time,cpu,mem,disk,load,profile")
    first = str(load_file(path).problems[0])
    assert first.startswith(f"{path}: columns server_name, timestamp, cpu_percent, memory_percent, disk_percent, "
                            "load_average are missing (columns: host, time, cpu, mem, disk, load, profile"), first
    assert list(result.frame.columns) == CANONICAL


def test_every_missing_column_is_reported(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z", header="server_name,timestamp")
    result = load_file(path)
    assert [p.column for p in result.problems] == list(METRICS)


def test_repeated_column(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1,5", header=HEADER + ",cpu_percent")
    assert str(only_problem(load_file(path))) == f"{path}: column 'cpu_percent' appears more than once"


def test_column_names_are_stripped(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "web-01, 2024-01-01T00:00:00Z ,1,2,3,0.1", header=HEADER.replace(",", " , "))
    result = load_file(path)
    assert result.problems == []
    assert list(result.frame["timestamp"]) == [ts("2024-01-01")]


def test_status_column_is_never_required(tmp_path: Path) -> None:
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1")
    assert load_file(path).problems == []


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "file is empty"),
        (b"  \n\n", "file is empty"),
        ((HEADER + "\n").encode(), "file has no rows"),
    ],
)
def test_empty_files(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "a.csv"
    path.write_bytes(content)
    result = load_file(path)
    assert str(only_problem(result)) == f"{path}: {message}"
    assert result.frame.empty


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        (bytes(range(256)) * 4, "binary data"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00\x01\x00", "binary data"),
        ("caf\xe9,x\n1,2\n".encode("latin-1"), "not UTF-8 text"),
        (json.dumps([{"server_name": "a", "cpu_percent": 1}]).encode(), "looks like JSON"),
        (b'{"server_name": "a"}\n', "looks like JSON"),
    ],
)
def test_not_a_table(tmp_path: Path, content: bytes, reason: str) -> None:
    path = tmp_path / "x.csv"
    path.write_bytes(content)
    result = load_file(path)
    assert str(only_problem(result)) == f"{path}: not a readable CSV table ({reason})"
    assert result.frame.empty


def test_wrong_number_of_fields(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1", "web-01,2024-01-01T00:05:00Z,1,2,3,0.1,7,8"
    )
    text = str(only_problem(load_file(path)))
    assert text.startswith(f"{path}: not a readable CSV table (")
    assert "(row 2: 8 fields, the header has 6: 'web-01,2024-01-01T00:05:00Z,1,2,3,0.1,7,8')" in text
    assert "\n" not in text


def test_corrupt_gzip(tmp_path: Path) -> None:
    path = tmp_path / "a.csv.gz"
    path.write_bytes(b"this is not gzip data")
    assert str(only_problem(load_file(path))).startswith(f"{path}: not a readable CSV table (")


@pytest.mark.parametrize("name", ["a.parquet", "a.pq"])
def test_corrupt_parquet(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(b"PAR1 definitely not parquet " * 10)
    result = load_file(path)
    text = str(only_problem(result))
    assert text.startswith(f"{path}: not a readable Parquet file (")
    assert "\n" not in text
    assert result.frame.empty


def test_empty_parquet_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.parquet"
    empty.write_bytes(b"")
    no_rows = tmp_path / "no_rows.parquet"
    pd.DataFrame({c: pd.Series(dtype=str) for c in ["server_name", "timestamp", *METRICS]}).to_parquet(no_rows)
    assert str(only_problem(load_file(empty))) == f"{empty}: file is empty"
    assert str(only_problem(load_file(no_rows))) == f"{no_rows}: file has no rows"


def test_parquet_bad_cells_named(tmp_path: Path) -> None:
    path = tmp_path / "a.parquet"
    pd.DataFrame(
        {
            "server_name": ["a", "a", "a"],
            "timestamp": ["2024-01-01T00:00:00Z", "2024-01-01T00:05:00Z", "2024-01-01T00:10:00Z"],
            "cpu_percent": ["1", "x", "3"],
            "memory_percent": [1.0, 2.0, np.nan],
            "disk_percent": [1.0, 2.0, 3.0],
            "load_average": [1.0, 2.0, 3.0],
        }
    ).to_parquet(path)
    result = load_file(path)
    assert [str(p) for p in result.problems] == [
        f"{path}: row 2, column cpu_percent: 'x' is not a number",
        f"{path}: row 3, column memory_percent: missing value",
    ]
    assert list(result.frame["cpu_percent"]) == [1.0]


@pytest.mark.parametrize("name", ["a.json", "a.txt", "a.xlsx", "csv"])
def test_unsupported_extension(tmp_path: Path, name: str) -> None:
    path = write(tmp_path, name, HEADER + "\n")
    assert str(only_problem(load_file(path))) == (
        f"{path}: unsupported file type (expected .csv, .csv.gz, .parquet or .pq)"
    )


def test_missing_path(tmp_path: Path) -> None:
    path = tmp_path / "nope.csv"
    for result in (load_path(path), load_file(path)):
        assert str(only_problem(result)) == f"{path}: path does not exist"
        assert result.frame.empty
        assert list(result.frame.columns) == CANONICAL


def test_unreadable_directory_is_one_line(tmp_path: Path, monkeypatch) -> None:
    # (chmod 000 does not stop root, who runs CI: the refusal is what listing it raises)
    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "iterdir", refuse)
    result = load_path(tmp_path)
    assert str(only_problem(result)) == f"{tmp_path}: cannot read the directory (Permission denied)"
    assert result.frame.empty


def test_directory_without_data_files(tmp_path: Path) -> None:
    write(tmp_path, "notes.txt", "hello")
    (tmp_path / "sub").mkdir()
    result = load_path(tmp_path)
    assert str(only_problem(result)) == (f"{tmp_path}: directory has no .csv, .csv.gz, .parquet or .pq files "
                                         f"(folders inside are not read: sub; name a folder itself to read it)")
    (tmp_path / "sub").rmdir()
    write(tmp_path, "fleet.json", "[]")
    assert str(only_problem(load_path(tmp_path))) == (
        f"{tmp_path}: directory has no .csv, .csv.gz, .parquet or .pq files (not read: fleet.json, notes.txt)")


def test_directory_keeps_good_files_next_to_bad_ones(tmp_path: Path) -> None:
    csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.1", name="a.csv")
    bad = tmp_path / "b.parquet"
    bad.write_bytes(b"junk")
    result = load_path(tmp_path)
    assert [p.source for p in result.problems] == [str(bad)]
    assert len(result.frame) == 1


@pytest.mark.parametrize(
    "content",
    [
        b"\x00" * 10,
        b"a\n1\n",
        b'"unterminated\n',
        b"\xef\xbb\xbf" + HEADER.encode(),
        b"\r\n\r\n,,,\n",
        b"[1,2",
    ],
)
@pytest.mark.parametrize("name", ["x.csv", "x.csv.gz", "x.parquet"])
def test_load_never_raises(tmp_path: Path, content: bytes, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = load_path(path)
    assert result.problems
    assert result.frame.empty
    assert all("\n" not in str(p) for p in result.problems)


# --------------------------------------------------------------------------- raise_for_problems


def test_raise_for_problems_is_one_line_with_count(tmp_path: Path) -> None:
    path = csv_file(
        tmp_path,
        "a,2024-01-01T00:00:00Z,abc,2,3,0.1",
        "a,2024-01-01T00:05:00Z,1,2,3,-2",
        "a,2024-01-01T00:10:00Z,1,2,3,-3",
    )
    result = load_file(path)
    with pytest.raises(DataError) as info:
        result.raise_for_problems()
    message = str(info.value)
    assert message == f"{path}: row 1, column cpu_percent: 'abc' is not a number (and 2 more problems)"
    assert "\n" not in message


def test_raise_for_problems_single_and_none(tmp_path: Path) -> None:
    good = csv_file(tmp_path, "a,2024-01-01T00:00:00Z,1,2,3,0.1", name="good.csv")
    load_file(good).raise_for_problems()
    bad = csv_file(
        tmp_path, "a,2024-01-01T00:00:00Z,1,2,3,0.1", "a,2024-01-01T00:05:00Z,1,2,3,-1", name="bad.csv"
    )
    with pytest.raises(DataError, match=r"^.*bad\.csv: row 2, column load_average: -1 is negative$"):
        load_file(bad).raise_for_problems()


def test_problem_str_forms() -> None:
    assert str(Problem("d/a.csv", 17, "cpu_percent", "'abc' is not a number")) == (
        "d/a.csv: row 17, column cpu_percent: 'abc' is not a number"
    )
    assert str(Problem("d/a.csv", None, None, "file is empty")) == "d/a.csv: file is empty"
    assert str(Problem("POST /metrics", 2, None, "record is not an object (got array)")) == (
        "POST /metrics: row 2: record is not an object (got array)"
    )


# --------------------------------------------------------------------------- validate_records / validate_frame


def test_validate_records() -> None:
    records = [
        {"server_name": "web-01", "timestamp": "2024-01-01T00:00:00Z", "cpu_percent": 1, "memory_percent": 2,
         "disk_percent": 3, "load_average": 0.5, "profile": "web"},
        ["not", "a", "dict"],
        {"server_id": "web-01", "timestamp": 1704067500, "cpu_percent": 1, "memory_percent": 2,
         "disk_percent": 3, "load_average": 0.5},
        {"server_id": "web-02", "timestamp": "2024-01-01T00:00:00Z", "cpu_percent": "high",
         "memory_percent": 2, "disk_percent": 3, "load_average": 0.5},
        {"server_id": "web-03", "timestamp": "2024-01-01T00:00:00Z", "cpu_percent": 1,
         "memory_percent": 2, "load_average": 0.5},
        {"server_id": "web-04", "timestamp": "2024-01-01T00:00:00Z", "cpu_percent": True,
         "memory_percent": 2, "disk_percent": 3, "load_average": 0.5},
    ]
    result = validate_records(records, "POST /metrics")
    assert [str(p) for p in result.problems] == [
        "POST /metrics: row 2: record is not an object (got array)",
        "POST /metrics: row 4, column cpu_percent: 'high' is not a number",
        "POST /metrics: row 5, column disk_percent: missing value",
        "POST /metrics: row 6, column cpu_percent: True is not a number",
    ]
    frame = result.frame
    assert list(frame["timestamp"]) == [ts("2024-01-01T00:00"), ts("2024-01-01T00:05")]
    assert list(frame["profile"]) == ["web", UNKNOWN_PROFILE]


def test_validate_records_empty_and_wrong_type() -> None:
    assert [str(p) for p in validate_records([], "POST /metrics").problems] == ["POST /metrics: no records"]
    result = validate_records({"server_name": "a"}, "POST /metrics")  # type: ignore[arg-type]
    assert [str(p) for p in result.problems] == ["POST /metrics: expected a list of records, got object"]


def test_validate_frame_uses_positions_not_index() -> None:
    df = pd.DataFrame(
        {
            "server_name": ["a", "a"],
            "timestamp": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:05"]),
            **{m: [1.0, 200.0] for m in METRICS},
        },
        index=[10, 20],
    )
    result = validate_frame(df, "sim")
    assert [str(p) for p in result.problems] == ["sim: row 2, column cpu_percent: 200 is outside 0–100"]
    assert list(result.frame["timestamp"]) == [ts("2024-01-01T00:00")]
    assert list(result.frame.index) == [0]
    assert validate_frame(df.iloc[:0], "sim").problems == []


# --------------------------------------------------------------------------- to_grid


def test_to_grid_averages_one_minute_samples() -> None:
    rows = [("a", f"2024-01-01T00:0{i}:00Z", float(10 * i), 50.0, 20.0, float(i)) for i in range(10)]
    grid = to_grid(canonical(rows))
    assert list(grid.columns) == [*CANONICAL, "filled", "segment"]
    assert list(grid["timestamp"]) == [ts("2024-01-01T00:00"), ts("2024-01-01T00:05")]
    # minutes 0..4 -> cpu 0,10,20,30,40 -> mean 20; minutes 5..9 -> mean 70
    assert list(grid["cpu_percent"]) == [20.0, 70.0]
    assert list(grid["load_average"]) == [2.0, 7.0]
    assert list(grid["filled"]) == [False, False]
    assert list(grid["segment"]) == [0, 0]
    assert grid["segment"].dtype == np.int64
    assert grid["filled"].dtype == bool
    assert str(grid["timestamp"].dtype) == "datetime64[ns, UTC]"


def test_to_grid_floors_to_epoch_multiples_of_five_minutes() -> None:
    rows = [("a", "2024-01-01T00:07:30Z", 1, 1, 1, 1), ("a", "2024-01-01T00:09:59Z", 3, 1, 1, 1)]
    grid = to_grid(canonical(rows))
    assert list(grid["timestamp"]) == [ts("2024-01-01T00:05")]
    assert list(grid["cpu_percent"]) == [2.0]


def test_to_grid_fills_ten_minute_data() -> None:
    rows = [
        ("a", "2024-01-01T00:00:00Z", 10.0, 50.0, 20.0, 1.0),
        ("a", "2024-01-01T00:10:00Z", 20.0, 60.0, 20.0, 3.0),
        ("a", "2024-01-01T00:20:00Z", 40.0, 60.0, 20.0, 3.0),
    ]
    grid = to_grid(canonical(rows))
    assert list(grid["timestamp"].dt.minute) == [0, 5, 10, 15, 20]
    assert list(grid["filled"]) == [False, True, False, True, False]
    assert list(grid["cpu_percent"]) == [10.0, 15.0, 20.0, 30.0, 40.0]
    assert list(grid["memory_percent"]) == [50.0, 55.0, 60.0, 60.0, 60.0]
    assert list(grid["load_average"]) == [1.0, 2.0, 3.0, 3.0, 3.0]
    assert list(grid["segment"]) == [0] * 5


def test_to_grid_two_hour_gap_breaks_into_segments() -> None:
    rows = [
        ("a", "2024-01-01T00:00:00Z", 1, 1, 1, 1),
        ("a", "2024-01-01T00:05:00Z", 1, 1, 1, 1),
        ("a", "2024-01-01T02:05:00Z", 1, 1, 1, 1),
        ("a", "2024-01-01T02:10:00Z", 1, 1, 1, 1),
    ]
    grid = to_grid(canonical(rows))
    assert list(grid["timestamp"]) == [
        ts("2024-01-01T00:00"), ts("2024-01-01T00:05"), ts("2024-01-01T02:05"), ts("2024-01-01T02:10")
    ]
    assert list(grid["segment"]) == [0, 0, 1, 1]
    assert not grid["filled"].any()


def test_to_grid_exactly_max_fill_steps_is_filled_one_more_breaks() -> None:
    # 00:00 -> 00:35 misses 6 steps (05..30); 00:35 -> 01:15 misses 7 steps (40..70)
    rows = [
        ("a", "2024-01-01T00:00:00Z", 0, 1, 1, 1),
        ("a", "2024-01-01T00:35:00Z", 70, 1, 1, 1),
        ("a", "2024-01-01T01:15:00Z", 0, 1, 1, 1),
    ]
    grid = to_grid(canonical(rows), max_fill_steps=6)
    assert list(grid["filled"]) == [False] + [True] * 6 + [False, False]
    assert list(grid["cpu_percent"]) == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 60.0, 70.0, 0.0]
    assert list(grid["segment"]) == [0] * 8 + [1]
    assert grid["timestamp"].iloc[-2] == ts("2024-01-01T00:35")
    assert grid["timestamp"].iloc[-1] == ts("2024-01-01T01:15")
    # with a larger limit the 7-step gap is filled too
    assert len(to_grid(canonical(rows), max_fill_steps=7)) == 16
    # with no filling both gaps break
    assert list(to_grid(canonical(rows), max_fill_steps=0)["segment"]) == [0, 1, 2]


def test_to_grid_servers_are_independent_and_profile_is_last() -> None:
    frame = canonical(
        [
            ("b", "2024-01-01T00:00:00Z", 1, 1, 1, 1),
            ("a", "2024-01-01T00:00:00Z", 1, 1, 1, 1),
            ("a", "2024-01-01T00:01:00Z", 3, 1, 1, 1),
            ("b", "2024-01-01T03:00:00Z", 1, 1, 1, 1),
            ("a", "2024-01-01T00:10:00Z", 5, 1, 1, 1),
        ]
    )
    frame["profile"] = ["early", "late", "x", "y", "z"]  # a, a, a, b, b after sorting
    grid = to_grid(frame)
    assert list(grid["server_name"]) == ["a", "a", "a", "b", "b"]
    assert list(grid["cpu_percent"]) == [2.0, 3.5, 5.0, 1.0, 1.0]
    assert list(grid["profile"]) == ["late", "late", "x", "y", "z"]
    assert list(grid["segment"]) == [0, 0, 0, 0, 1]
    assert list(grid["filled"]) == [False, True, False, False, False]


def test_column_constants() -> None:
    assert list(CANONICAL_COLUMNS) == CANONICAL
    assert list(GRID_COLUMNS) == [*CANONICAL, "filled", "segment"]


def test_to_grid_empty() -> None:
    grid = to_grid(validate_frame(pd.DataFrame(columns=["server_name", "timestamp", *METRICS]), "x").frame)
    assert grid.empty
    assert list(grid.columns) == [*CANONICAL, "filled", "segment"]


def test_to_grid_rejects_negative_fill() -> None:
    with pytest.raises(ValueError, match="max_fill_steps"):
        to_grid(canonical([("a", "2024-01-01T00:00:00Z", 1, 1, 1, 1)]), max_fill_steps=-1)


def test_to_grid_fills_the_short_gaps_of_a_large_gapped_fleet() -> None:
    # its speed is measured by benchmarks/bench_data.py, not asserted here
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_data", Path(__file__).parents[1] / "benchmarks/bench_data.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    servers, steps = 100, 4000
    frame = bench.gapped_frame(servers, steps)
    grid = to_grid(frame)
    sizes = grid.groupby("server_name").size()
    assert len(sizes) == servers and sizes.max() <= steps
    # every sample kept is in the grid once; the rest are filled rows between them
    assert (~grid["filled"]).sum() == len(frame)
    real = grid[~grid["filled"]].sort_values(["server_name", "timestamp"]).reset_index(drop=True)
    want = frame.sort_values(["server_name", "timestamp"]).reset_index(drop=True)
    np.testing.assert_allclose(real["cpu_percent"].to_numpy(), want["cpu_percent"].to_numpy())
    # a gap of up to MAX_FILL_STEPS missing samples is filled, a longer one is not
    def expected_rows(ts: pd.Series) -> int:
        d = np.diff(ts.sort_values().to_numpy()) // np.timedelta64(5, "m")
        return 1 + int(np.where(d - 1 <= MAX_FILL_STEPS, d, 1).sum())
    want_sizes = frame.groupby("server_name")["timestamp"].apply(expected_rows)
    assert sizes.sort_index().tolist() == want_sizes.sort_index().tolist()
    assert grid["filled"].sum() > 0


def test_directory_skips_sidecar_tables_and_notes_them(tmp_path: Path) -> None:
    csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,1,2,3,0.5", name="fleet.csv")
    write(tmp_path, "incidents.csv", "server_name,kind,metric,start,crossing,end,threshold\n")
    write(tmp_path, "servers.csv", "server_name,profile,cores,split\nweb-01,web,4,train\n")
    write(tmp_path, "smd_incidents.csv", "server_name,start,end\n")
    result = load_path(tmp_path)
    assert result.problems == []
    assert len(result.frame) == 1
    assert result.notes == [f"{tmp_path}: skipped sidecar files (not metrics): incidents.csv, servers.csv, smd_incidents.csv"]


# --------------------------------------------------------------------------- review findings (session 11)


def test_corrupt_gzip_and_bom_only_files_are_one_line_problems(tmp_path: Path) -> None:
    good = "\n".join([HEADER, "web-01,2024-01-01T00:00:00Z,10,20,30,0.5"]) + "\n"
    data = gzip.compress(good.encode() * 50)
    (tmp_path / "corrupt.csv.gz").write_bytes(data[:20] + b"\xff" * 50 + data[70:])
    problem = only_problem(load_file(tmp_path / "corrupt.csv.gz"))
    assert problem.message.startswith("not a readable CSV table (")
    for name, raw in (("bom.csv", b"\xef\xbb\xbf"), ("nbsp.csv", b"\xc2\xa0\n")):
        (tmp_path / name).write_bytes(raw)
        assert only_problem(load_file(tmp_path / name)).message == "file is empty"


def test_upper_case_gzip_name_and_servers_called_na_are_read(tmp_path: Path) -> None:
    text = "\n".join([HEADER, "NA,2024-01-01T00:00:00Z,10,20,30,0.5", "null,2024-01-01T00:00:00Z,11,21,31,0.6"]) + "\n"
    (tmp_path / "FLEET.CSV.GZ").write_bytes(gzip.compress(text.encode()))
    result = load_file(tmp_path / "FLEET.CSV.GZ")
    assert result.problems == []
    assert sorted(result.frame["server_name"]) == ["NA", "null"]
    # a missing metric is still a missing value
    bad = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,,20,30,0.5", name="gap.csv")
    assert only_problem(load_file(bad)).message == "missing value"


def test_dates_and_durations_are_not_numbers_or_times(tmp_path: Path) -> None:
    n = 3
    frame = pd.DataFrame({"server_name": ["a"] * n,
                          "timestamp": pd.date_range("2024-01-01", periods=n, freq="5min", tz="UTC"),
                          "cpu_percent": 10.0, "memory_percent": 20.0, "disk_percent": 30.0,
                          "load_average": pd.date_range("2026-01-01", periods=n, freq="h", tz="UTC")})
    frame.to_parquet(tmp_path / "dates.parquet")
    result = load_file(tmp_path / "dates.parquet")
    assert {p.column for p in result.problems} == {"load_average"} and len(result.problems) == n
    assert "is not a number" in result.problems[0].message and result.frame.empty
    frame["load_average"] = pd.to_timedelta(np.arange(n), unit="h")
    frame.to_parquet(tmp_path / "durations.parquet")
    assert {p.column for p in load_file(tmp_path / "durations.parquet").problems} == {"load_average"}
    frame["load_average"] = 1.0
    frame["timestamp"] = pd.to_timedelta(np.arange(n) * 300, unit="s")
    frame.to_parquet(tmp_path / "td_time.parquet")
    result = load_file(tmp_path / "td_time.parquet")
    assert {p.column for p in result.problems} == {"timestamp"}
    assert "is not an ISO 8601 time or epoch seconds" in result.problems[0].message


def test_notes_are_kept_for_the_command_to_report(tmp_path: Path) -> None:
    from engine.contract import drain_notes

    drain_notes()
    path = csv_file(tmp_path, "web-01,2024-01-01T00:00:00Z,10,20,30,0.5,up", header=HEADER + ",status")
    load_path(path)
    load_path(path)                                          # reported once
    (tmp_path / "incidents.csv").write_text("server_name,metric,start,crossing,end\n")
    load_path(tmp_path)                                      # a sidecar beside metrics is no news
    assert drain_notes() == [f"{path}: ignored extra columns: status"]
    assert drain_notes() == []


def test_a_record_naming_its_server_with_an_object_or_list_is_refused() -> None:
    base = {"timestamp": "2026-01-01T00:00:00Z", "cpu_percent": 1, "memory_percent": 1, "disk_percent": 1,
            "load_average": 1}
    result = validate_records([{**base, "server_name": {"x": 1}}, {**base, "server_name": ["a"]},
                               {**base, "server_name": "ok"}], "POST")
    assert [str(p) for p in result.problems] == ["POST: row 1, column server_name: {'x': 1} is not text",
                                                 "POST: row 2, column server_name: ['a'] is not text"]
    assert list(result.frame["server_name"]) == ["ok"]


def test_a_directory_of_sidecars_only_says_so_and_a_broken_link_is_noted(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    write(tmp_path / "d", "incidents.csv", "server_name,metric,start,crossing,end\n")
    problem = only_problem(load_path(tmp_path / "d"))
    assert problem.message == "directory has no metrics files, only files that travel beside them: incidents.csv"
    csv_file(tmp_path / "d", "web-01,2024-01-01T00:00:00Z,10,20,30,0.5", name="a.csv")
    (tmp_path / "d" / "b.csv").symlink_to(tmp_path / "nowhere.csv")
    result = load_path(tmp_path / "d")
    assert result.problems == [] and len(result.frame) == 1
    assert f"{tmp_path / 'd'}: skipped broken links: b.csv" in result.notes


def test_posted_names_are_text_whole_numbers_read_alike_and_control_characters_refused():
    from engine.contract import validate_records

    def rec(name, **kw):
        return {"server_name": name, "timestamp": 0, "cpu_percent": 1, "memory_percent": 1,
                "disk_percent": 1, "load_average": 1, **kw}

    # 13 beside a null (a float column) is the server "13", as 13 posted alone is
    mixed = validate_records([rec(13), rec(None)], "post")
    alone = validate_records([rec(13)], "post")
    assert mixed.frame["server_name"].tolist() == alone.frame["server_name"].tolist() == ["13"]
    bad = validate_records([rec(True), rec("a\x1b[2Jb"), rec("line1\nFAKE"), rec("ok", profile="w\x1beb")], "post")
    assert [(p.row, p.column) for p in bad.problems] == [(1, "server_name"), (2, "server_name"), (3, "server_name")]
    assert "True is not text" in bad.problems[0].message
    assert "holds a control character" in bad.problems[1].message
    assert bad.frame["server_name"].tolist() == ["ok"] and bad.frame["profile"].tolist() == ["w eb"]
    long = validate_records([rec("x" * 301), rec("y" * 300)], "post")
    assert [p.row for p in long.problems] == [1] and "301 characters is longer than 300" in long.problems[0].message


def test_a_time_in_epoch_milliseconds_gets_a_hint():
    from engine.contract import validate_records

    r = validate_records([{"server_name": "a", "timestamp": 1768478400000, "cpu_percent": 1, "memory_percent": 1,
                           "disk_percent": 1, "load_average": 1}], "post")
    assert r.problems[0].message.endswith("(epoch milliseconds? give seconds)")


def test_a_record_with_both_server_name_and_server_id_says_which_was_read():
    from engine.contract import validate_records

    r = validate_records([{"server_name": "a", "server_id": "b", "timestamp": 0, "cpu_percent": 1,
                           "memory_percent": 1, "disk_percent": 1, "load_average": 1}], "post")
    assert r.frame["server_name"].tolist() == ["a"]
    assert r.notes == ["post: ignored server_id in 1 record(s) that also have server_name"]


def test_an_integer_beyond_any_float_is_refused_in_its_row_and_the_others_kept() -> None:
    """A JSON integer of 311 digits made pandas raise OverflowError for the whole request
    (the daemon answered 500 and dropped the good records sent with it)."""
    big = 10 ** 310
    good = {"server_name": "p", "timestamp": 1_700_000_000, "cpu_percent": 1, "memory_percent": 2,
            "disk_percent": 3, "load_average": 0.5}
    records = [good, {**good, "server_name": "p2", "load_average": big}, {**good, "server_name": "p3", "timestamp": big},
               {**good, "server_name": big}, {**good, "server_name": "p5", "junk": big}]
    result = validate_records(records, "POST")
    assert sorted(result.frame["server_name"]) == ["p", "p5"]
    where = [(p.row, p.column) for p in result.problems]
    assert where == [(2, "load_average"), (3, "timestamp"), (4, "server_name")]
    # beside text in the same column (ISO times, a number sent as a string)
    mixed = [{**good, "timestamp": "2024-01-01T00:00:00Z", "cpu_percent": "5"},
             {**good, "server_name": "q", "timestamp": big}, {**good, "server_name": "r", "cpu_percent": big}]
    result = validate_records(mixed, "POST")
    assert list(result.frame["server_name"]) == ["p"]
    assert [(p.row, p.column) for p in result.problems] == [(2, "timestamp"), (3, "cpu_percent")]


@pytest.mark.parametrize("word", ["now", "today"])
def test_now_and_today_are_not_timestamps(tmp_path, word) -> None:
    """pandas reads 'now' and 'today' as the wall clock's time: a sample from January
    became a sample from today."""
    path = tmp_path / "m.csv"
    path.write_text("server_name,timestamp,cpu_percent,memory_percent,disk_percent,load_average\n"
                    "a,2026-01-05T00:00:00Z,1,2,3,0.5\n"
                    f"a,{word},1,2,3,0.5\n")
    result = load_file(path)
    assert len(result.frame) == 1
    assert [(p.row, p.column) for p in result.problems] == [(2, "timestamp")]
    assert f"'{word}' is not an ISO 8601 time" in str(result.problems[0])
    posted = validate_records([{"server_name": "a", "timestamp": word, "cpu_percent": 1, "memory_percent": 2,
                                "disk_percent": 3, "load_average": 0.5}], "POST")
    assert posted.frame.empty and posted.problems[0].column == "timestamp"


def test_names_as_bytes_arrays_or_invisible_characters() -> None:
    """Parquet text written without its UTF-8 annotation arrives as bytes (it became the
    server "b'batch-22'"); a Parquet list arrives as a numpy array; a right-to-left override
    or a zero-width space shows the operator another name."""
    base = {"timestamp": 1_700_000_000, "cpu_percent": 1.0, "memory_percent": 2.0, "disk_percent": 3.0,
            "load_average": 0.5}
    names = [b"batch-22", b"\xff\xfe", np.array(["a"]), "web\u202e10-bew", "zero\u200bwidth", "line\u2028sep", "ok"]
    df = pd.DataFrame([{**base, "server_name": n, "profile": b"batch"} for n in names])
    result = validate_frame(df, "x.parquet")
    assert list(result.frame["server_name"]) == ["batch-22", "ok"]
    assert list(result.frame["profile"]) == ["batch", "batch"]
    assert [p.row for p in result.problems] == [2, 3, 4, 5, 6]
    assert all(p.column == "server_name" for p in result.problems)


def test_a_profile_that_is_not_text_is_refused_in_its_row() -> None:
    base = {"server_name": "a", "timestamp": 1_700_000_000, "cpu_percent": 1, "memory_percent": 2,
            "disk_percent": 3, "load_average": 0.5}
    result = validate_records([{**base, "profile": {"a": 1}}, {**base, "timestamp": 1_700_000_300, "profile": "x" * 301},
                               {**base, "timestamp": 1_700_000_600, "profile": "web"}], "POST")
    assert list(result.frame["profile"]) == ["web"]
    assert [(p.row, p.column) for p in result.problems] == [(1, "profile"), (2, "profile")]
    assert "is not text" in result.problems[0].message


def test_files_that_look_like_data_in_a_form_not_read_are_noted(tmp_path: Path) -> None:
    (tmp_path / "d").mkdir()
    csv_file(tmp_path / "d", "web-01,2024-01-01T00:00:00Z,10,20,30,0.5", name="a.csv")
    for name in ("b.csv.bz2", "c.tsv", "d.csv.zip", "README.md", "split.json"):
        (tmp_path / "d" / name).write_bytes(b"x")
    result = load_path(tmp_path / "d")
    assert result.problems == [] and len(result.frame) == 1
    assert result.notes == [f"{tmp_path / 'd'}: skipped files that are not .csv, .csv.gz, .parquet or .pq: "
                            "b.csv.bz2, c.tsv, d.csv.zip"]


def test_csv_parse_errors_name_their_row(tmp_path: Path) -> None:
    """pyarrow's parse errors name no row (and blame its block size for a long line): the
    file is read again to find it, rows counted as everywhere else."""
    header = "server_name,timestamp,cpu_percent,memory_percent,disk_percent,load_average\n"
    rows = [f"a,{1_700_000_000 + 300 * i},1,2,3,0.5\n" for i in range(6000)]
    cases = {
        "extra.csv": (lambda r: r.__setitem__(2000, r[2000].rstrip("\n") + ",x\n"), "row 2001: 7 fields, the header has 6: 'a,1700600000,1,2,3,0.5,x'"),
        "quote.csv": (lambda r: r.__setitem__(1500, 'a,"1700000000,1,2,3,0.5\n' + "x" * 140_000 + "\n"),
                      "row 1501: a field of more than 131,072 characters (an unclosed quote?)"),
    }
    for name, (change, why) in cases.items():
        r = rows.copy()
        change(r)
        (tmp_path / name).write_text(header + "".join(r))
        assert only_problem(load_file(tmp_path / name)).message == f"not a readable CSV table ({why})"
    data = (header + "".join(rows)).encode()
    cut = data.index(b"\n", 70_000) + 1        # past the header sniff
    (tmp_path / "utf.csv").write_bytes(data[:cut] + b"a,\xff\xfe,1,2,3,0.5\n" + data[cut:])
    expected_row = data[:cut].count(b"\n")     # header line + rows before = the new row's number
    assert only_problem(load_file(tmp_path / "utf.csv")).message == \
        f"not a readable CSV table (row {expected_row}: not UTF-8 text)"


def test_a_header_alone_without_a_newline_has_no_rows_and_a_parquet_index_is_a_column(tmp_path: Path) -> None:
    (tmp_path / "h.csv").write_text("server_name,timestamp,cpu_percent,memory_percent,disk_percent,load_average")
    assert only_problem(load_file(tmp_path / "h.csv")).message == "file has no rows"
    frame = pd.DataFrame({"server_name": ["a", "a"], "timestamp": pd.to_datetime(["2024-01-01 00:00", "2024-01-01 00:05"], utc=True),
                          "cpu_percent": [1.0, 2.0], "memory_percent": [1.0, 2.0], "disk_percent": [1.0, 2.0],
                          "load_average": [0.1, 0.2]})
    frame.set_index("timestamp").to_parquet(tmp_path / "i.parquet")      # the time as the pandas index
    result = load_file(tmp_path / "i.parquet")
    assert result.problems == [] and len(result.frame) == 2
    frame.set_index("timestamp", drop=False).to_parquet(tmp_path / "j.parquet")   # the time both ways
    result = load_file(tmp_path / "j.parquet")
    assert result.problems == [] and len(result.frame) == 2
    frame.to_csv(tmp_path / "x.csv")                                      # the index written as a nameless column
    assert load_path(tmp_path / "x.csv").notes == [f"{tmp_path / 'x.csv'}: ignored extra columns: (unnamed)"]


# --------------------------------------------------------------------------- session 17 review


def test_file_and_column_names_reach_a_terminal_escaped(tmp_path: Path) -> None:
    from engine.contract import printable

    path = csv_file(tmp_path, "a,2026-01-01T00:00:00Z,1,2,3,4", name="x\x1b[2J.csv",
                    header=HEADER.replace("server_name", "host"))
    text = str(only_problem(load_path(path)))
    assert "\x1b" not in text and "x\\x1b[2J.csv" in text
    assert printable("evil\nINJECTED \u200bline") == "evil\\nINJECTED \\u200bline"
    assert printable("web-01 ok") == "web-01 ok"


def test_a_parquet_file_with_a_repeated_extra_column_is_read(tmp_path: Path) -> None:
    # pandas' reader refused the whole file ("Multiple matches for FieldRef.Name(rack)")
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = {"server_name": ["web", "web"], "timestamp": ["2026-01-01T00:00:00Z", "2026-01-01T00:05:00Z"],
            **{m: [1.0, 2.0] for m in METRICS}}
    columns = [pa.array(v) for v in base.values()]
    pq.write_table(pa.table([*columns, pa.array([1, 2]), pa.array(["a", "b"])], names=[*base, "rack", "rack"]),
                   tmp_path / "extra.parquet")
    result = load_path(tmp_path / "extra.parquet")
    assert result.problems == [] and len(result.frame) == 2
    assert result.notes == [f"{tmp_path / 'extra.parquet'}: ignored extra columns: rack"]
    # a data column twice is still refused, with what is wrong
    pq.write_table(pa.table([*columns, pa.array([3.0, 4.0])], names=[*base, "cpu_percent"]), tmp_path / "twice.parquet")
    assert str(only_problem(load_path(tmp_path / "twice.parquet"))) == \
        f"{tmp_path / 'twice.parquet'}: column 'cpu_percent' appears more than once"


def test_a_hex_number_in_an_all_integer_column_is_not_a_number(tmp_path: Path) -> None:
    # pyarrow read "0x10" in a column of whole numbers as 16 (beside "5.5" it stays text)
    path = csv_file(tmp_path, "web,2026-01-01T00:00:00Z,0x10,2,3,1", "web,2026-01-01T00:05:00Z,5,2,3,0X1F",
                    "web,2026-01-01T00:10:00Z,7,2,3,1")
    assert [str(p) for p in load_path(path).problems] == [
        f"{path}: row 1, column cpu_percent: '0x10' is not a number",
        f"{path}: row 2, column load_average: '0X1F' is not a number"]
    ok = csv_file(tmp_path, "web,2026-01-01T00:00:00Z,10,2,3,1", "web,2026-01-01T00:05:00Z,5,2,3,1", name="ok.csv")
    result = load_path(ok)
    assert result.problems == [] and result.frame["cpu_percent"].tolist() == [10.0, 5.0]


def test_a_row_after_blank_lines_names_its_line_too(tmp_path: Path) -> None:
    # pyarrow skips blank lines and a quoted field may hold a newline: "row 2" was not on line 3,
    # where an editor would look; where row and line differ the problem says both
    path = write(tmp_path, "a.csv", HEADER + "\n\nweb,2026-01-01T00:00:00Z,1,2,3,0.5\n\n\n"
                 "web,2026-01-01T00:05:00Z,abc,2,3,0.5\n\"we\nb\",2026-01-01T00:05:00Z,1,2,3,0.5\n"
                 "x,2026-01-01T00:05:00Z,1,2,300,0.5\n")
    assert [str(p) for p in load_path(path).problems] == [
        f"{path}: row 2 (line 6), column cpu_percent: 'abc' is not a number",
        f"{path}: row 3 (line 7), column server_name: 'we\\nb' holds a control character",
        f"{path}: row 4 (line 9), column disk_percent: 300 is outside 0–100"]
    # (the same through a directory and gzipped; a file without blank lines: no line given)
    gz = tmp_path / "d" / "b.csv.gz"
    gz.parent.mkdir()
    gz.write_bytes(gzip.compress(path.read_bytes()))
    assert str(load_path(gz.parent).problems[0]).endswith("row 2 (line 6), column cpu_percent: 'abc' is not a number")
    plain = csv_file(tmp_path, "web,2026-01-01T00:00:00Z,abc,2,3,0.5", name="plain.csv")
    assert str(only_problem(load_path(plain))) == f"{plain}: row 1, column cpu_percent: 'abc' is not a number"


def test_a_csv_with_another_separator_or_in_utf16_says_so(tmp_path: Path) -> None:
    semi = csv_file(tmp_path, "a;2026-01-01T00:00:00Z;1;2;3;4", name="semi.csv", header=HEADER.replace(",", ";"))
    # the separator first: "column 'server_name' is missing (columns: server_name;…" looked false
    assert str(load_path(semi).problems[0]).startswith(
        f"{semi}: the header is separated by semicolons: tft-top reads comma-separated files: the columns were read as one")
    # the European export: semicolons and decimal commas, so the rows are wider than the header
    euro = csv_file(tmp_path, "a;2026-01-01T00:00:00Z;1,5;2,5;3;4", name="euro.csv", header=HEADER.replace(",", ";"))
    assert str(only_problem(load_path(euro))).endswith(
        "row 1: 3 fields, the header has 1: 'a;2026-01-01T00:00:00Z;1,5;2,5;3;4'); the header is separated by "
        "semicolons: tft-top reads comma-separated files")
    tabs = csv_file(tmp_path, "a\t2026-01-01T00:00:00Z\t1\t2\t3\t4", name="tabs.csv", header=HEADER.replace(",", "\t"))
    assert "separated by tabs" in str(load_path(tabs).problems[0])
    u16 = tmp_path / "u16.csv"
    u16.write_text(HEADER + "\na,2026-01-01T00:00:00Z,1,2,3,4\n", encoding="utf-16")
    assert str(only_problem(load_path(u16))) == f"{u16}: not a readable CSV table (UTF-16 or UTF-32 text: save it as UTF-8)"


def _rows(n: int, cpu: float = 30.0, mem: float = 50.0, disk: float = 40.0, start: str = "2026-01-05T00:00:00Z",
          step_s: float = 300.0, epoch: bool = False) -> list[str]:
    t0 = pd.Timestamp(start)
    out = []
    for i in range(n):
        t = t0 + pd.Timedelta(seconds=step_s * i)
        stamp = f"{t.value / 1e9:.6f}" if epoch else t.strftime("%Y-%m-%dT%H:%M:%SZ")
        out.append(f"a,{stamp},{cpu},{mem},{disk},1.0")
    return out


def test_valid_data_that_is_probably_not_what_was_meant_is_noted(tmp_path: Path) -> None:
    plain = load_path(csv_file(tmp_path, *_rows(50), name="plain.csv"))
    assert plain.problems == [] and plain.notes == []
    frac = load_path(csv_file(tmp_path, *_rows(50, 0.3, 0.5, 0.4), name="frac.csv"))
    assert len(frac.frame) == 50 and frac.notes == [
        f"{tmp_path / 'frac.csv'}: every cpu_percent, memory_percent, disk_percent value is between 0 and 1: "
        f"percentages written as fractions? (0.5 reads as 0.5 %, not 50 %)"]
    # one server of several writing fractions: named (a note only when every server did missed it)
    mixed = [*_rows(50), *(r.replace("a,", "b,", 1) for r in _rows(50, 0.3, 0.5, 0.4))]
    one = load_path(csv_file(tmp_path, *mixed, name="mixed.csv"))
    assert one.notes == [f"{tmp_path / 'mixed.csv'}: b: every cpu_percent, memory_percent, disk_percent value of this "
                         f"server is between 0 and 1, unlike other servers': percentages written as fractions? "
                         f"(0.5 reads as 0.5 %, not 50 %)"]
    # every server writing fractions, one of them too short to judge alone: the file's note,
    # not "unlike other servers'"
    short = [*_rows(50, 0.3, 0.5, 0.4), *(r.replace("a,", "b,", 1) for r in _rows(5, 0.3, 0.5, 0.4))]
    both = load_path(csv_file(tmp_path, *short, name="short.csv"))
    assert len(both.notes) == 1 and "every cpu_percent, memory_percent, disk_percent value is between" in both.notes[0]
    # one host's clock ten years ahead: the fleet's time would be its (forecast "as of 2036")
    ahead = [*_rows(50), *(r.replace("a,", "b,", 1) for r in _rows(50)),
             *(r.replace("a,", "c,", 1) for r in _rows(50, start="2036-01-05"))]
    far = load_path(csv_file(tmp_path, *ahead, name="ahead.csv"))
    assert len(far.frame) == 150 and len(far.notes) == 1, far.notes
    assert far.notes[0].startswith(f"{tmp_path / 'ahead.csv'}: c (2036-01-05T00:00:00Z .. ")
    assert "over a day apart from every other server's samples: a wrong clock?" in far.notes[0]
    # spreadsheet days read as epoch seconds: 1970, and 50 samples within a minute
    days = load_path(csv_file(tmp_path, *[f"a,{46027 + i / 288:.6f},30,50,40,1" for i in range(50)], name="days.csv"))
    assert len(days.notes) == 2
    assert "timestamps from 1970-01-01T12:47:07Z, before 2000" in days.notes[0]
    assert days.notes[1].startswith(f"{tmp_path / 'days.csv'}: 50 samples of 1 server(s) within 1970-01-01T12:47:07Z")
    assert days.notes[1].endswith("several per 5-minute step, averaged into one")
    # once a minute: noted, as it is averaged; a sample every 5 minutes is not
    fast = load_path(csv_file(tmp_path, *_rows(50, step_s=60), name="fast.csv"))
    assert len(fast.notes) == 1 and "averaged into one" in fast.notes[0]


def test_a_note_many_files_share_is_given_once_with_a_count(tmp_path: Path) -> None:
    # a directory of per-server files, every one written as fractions with a spare column: two
    # lines of each kind, the second with how many more files (1,000 files gave 2,000 lines)
    for k in range(40):
        write(tmp_path, f"s{k:02d}.csv", "server_name,timestamp,cpu_percent,memory_percent,disk_percent,"
              "load_average,rack\n" + "\n".join(f"s{k}{r[1:]},r{k}" for r in _rows(20, 0.3, 0.5, 0.4)) + "\n")
    write(tmp_path, "z.csv", "\n".join([HEADER, *_rows(20, start="1990-01-01")]) + "\n")
    result = load_path(tmp_path)
    assert not result.problems and len(result.frame) == 41 * 20
    notes = result.notes
    fractions = [n for n in notes if "written as fractions" in n]
    extra = [n for n in notes if "ignored extra columns: rack" in n]
    assert len(fractions) == 2 and len(extra) == 2, notes
    assert fractions[0].startswith(f"{tmp_path / 's00.csv'}: ") and fractions[1].startswith(f"{tmp_path / 's01.csv'}: ")
    assert fractions[1].endswith("(and 38 more file(s) alike: s02.csv, s03.csv, s04.csv, s05.csv, s06.csv …)")
    assert any(n.startswith(f"{tmp_path / 'z.csv'}: timestamps from 1990") for n in notes)   # another kind: kept
    assert len(notes) == 5


def test_folders_and_data_in_other_forms_inside_a_data_directory_are_noted(tmp_path: Path) -> None:
    csv_file(tmp_path, *_rows(3))
    write(tmp_path, "b.json", "[]")
    write(tmp_path, "split.json", "{}")             # read by engine.datasplit: not noted
    (tmp_path / "day2").mkdir()
    result = load_path(tmp_path)
    assert result.notes == [
        f"{tmp_path}: skipped files that are not .csv, .csv.gz, .parquet or .pq: b.json",
        f"{tmp_path}: skipped folders (only the files directly inside a directory are read; name a folder "
        f"itself to read it): day2"]


def test_times_a_replay_cannot_add_hours_to_are_refused_in_their_row(tmp_path: Path) -> None:
    result = load_path(csv_file(tmp_path, "a,2262-04-11T18:00:00Z,1,2,3,4", "a,2260-12-31T00:00:00Z,1,2,3,4"))
    assert str(only_problem(result)).endswith(
        "row 1, column timestamp: '2262-04-11T18:00:00Z' is outside the supported years 1679–2260")
    assert len(result.frame) == 1


def test_a_posted_record_with_two_keys_for_one_column_is_refused_alone() -> None:
    good = [{"server_name": "a", "timestamp": f"2026-01-01T00:{m:02d}:00Z", "cpu_percent": 1, "memory_percent": 2,
             "disk_percent": 3, "load_average": 1} for m in (0, 5, 10)]
    bad = {**good[0], "timestamp": "2026-01-01T00:15:00Z", "cpu_percent ": 4}
    spaced = {" server_name": "b", **{k: v for k, v in good[0].items() if k != "server_name"}}
    result = validate_records([*good, bad, spaced], "POST")
    assert [str(p) for p in result.problems] == ["POST: row 4: keys 'cpu_percent' and 'cpu_percent ' name the same column"]
    assert result.frame["server_name"].tolist() == ["a", "a", "a", "b"]        # " server_name" is server_name


def test_posted_whole_number_names_keep_their_digits_beside_a_missing_name() -> None:
    rec = lambda name: {"server_name": name, "timestamp": "2026-01-01T00:00:00Z", "cpu_percent": 1,  # noqa: E731
                        "memory_percent": 2, "disk_percent": 3, "load_average": 1}
    result = validate_records([rec(9007199254740993), rec(9007199254740995), rec(None)], "POST")
    # (a float column had renamed them 9007199254740992 and 9007199254740996)
    assert sorted(result.frame["server_name"]) == ["9007199254740993", "9007199254740995"]
    assert [p.row for p in result.problems] == [3]
