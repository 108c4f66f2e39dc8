"""Append-only Parquet tables with DuckDB views over them: the platform's single writer path.

DuckDB allows one writer per file, and Dagster runs steps in several processes. So rows are never
updated in place: every write is a new Parquet file (written to a temporary name, then renamed, so
a reader never sees half a file), and the DuckDB file ``MFG_HOME/mfg.duckdb`` only holds views over
those files. Opening the DuckDB file is serialised across processes with an exclusive ``flock``, and
read-modify-write sequences (such as allocating the next model version) run inside that lock.

Because the DuckDB file holds nothing but views, a corrupt one loses nothing: it is set aside and
rebuilt from the Parquet tables, with a warning that says so. A Parquet file damaged after it was
written (this module never leaves half a file) is named with what to do, not a DuckDB traceback.
"""

import fcntl
import hashlib
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import duckdb
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from edge_sync.durable import fsync_dir, fsync_file
from resources.errors import MfgVisionError
from resources.storage.scratch import scratch_name

__all__ = ["TABLE_NAME", "Warehouse", "WarehouseDamaged"]

logger = logging.getLogger(__name__)
_PARQUET_NAMED = re.compile(r"'([^']+\.parquet)'")


class WarehouseDamaged(MfgVisionError):
    """A table file cannot be read; the message names it and what to do."""


@contextmanager
def _damaged_files_named() -> Iterator[None]:
    """DuckDB's error about an unreadable Parquet file, as a message that names it and the way out."""
    try:
        yield
    except duckdb.InvalidInputException as exc:
        named = _PARQUET_NAMED.search(str(exc))
        if not named:
            raise
        raise WarehouseDamaged(
            f"{named.group(1)}: this table file cannot be read ({str(exc).splitlines()[0]}). mfgv writes table "
            "files whole, so it was damaged afterwards (a disk error, a partial copy or restore). Restore it from "
            "a backup, or move it out of the tables folder and rerun the step that wrote it (its rows are lost "
            "until then)"
        ) from exc

TABLE_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


class Warehouse:
    """The Parquet tables and the DuckDB file under one ``MFG_HOME``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.tables_dir = home / "tables"
        self.duckdb_path = home / "mfg.duckdb"
        self._lock_path = home / "mfg.duckdb.lock"

    def _table_dir(self, table: str) -> Path:
        if not TABLE_NAME.match(table):
            raise ValueError(f"table name {table!r} must match {TABLE_NAME.pattern}")
        return self.tables_dir / table

    def append(self, table: str, rows: pd.DataFrame | list[dict], *, prefix: str = "", key: str | None = None) -> Path:
        """Write ``rows`` as a new Parquet file of ``table``; returns its path.

        With ``key`` the file's name is derived from it, so writing the same key again replaces the
        file instead of adding one: a step that crashed after writing and is run again cannot
        duplicate its rows (ingest keys each batch's rows by its partition and batch)."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        if frame.empty:
            raise ValueError(f"refusing to append an empty frame to table {table}")
        directory = self._table_dir(table)
        directory.mkdir(parents=True, exist_ok=True)
        target = self._file(table, prefix, key)
        tmp = directory / scratch_name(table)
        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), tmp)
        # Data on disk before the rename, the rename on disk before returning: after a power cut
        # the table has the old file set or the new one, never a name pointing at missing bytes.
        fsync_file(tmp)
        os.replace(tmp, target)
        fsync_dir(directory)
        return target

    def replace_keyed(self, table: str, rows: pd.DataFrame | list[dict], *, prefix: str, key: str) -> Path | None:
        """The rows written under ``key`` become ``rows``; with no rows, the key's file goes away.

        What a rerun of a crashed step uses: whatever the dead run wrote under the key is replaced,
        even when the rerun has nothing to write."""
        frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        if not frame.empty:
            return self.append(table, frame, prefix=prefix, key=key)
        self._file(table, prefix, key).unlink(missing_ok=True)
        return None

    def _file(self, table: str, prefix: str, key: str | None) -> Path:
        """A new file's path: a fresh name, or the one ``key`` always maps to."""
        stem = uuid.uuid4().hex if key is None else "k" + hashlib.sha256(key.encode()).hexdigest()[:31]
        return self._table_dir(table) / f"{prefix}{'-' if prefix else ''}{stem}.parquet"

    def has_table(self, table: str) -> bool:
        directory = self._table_dir(table)
        return directory.exists() and any(directory.glob("*.parquet"))

    def read(self, table: str, where: str = "", params: list | None = None) -> pd.DataFrame:
        """Rows of ``table`` (all files), optionally filtered with a SQL ``where`` clause."""
        if not self.has_table(table):
            return pd.DataFrame()
        sql = f"SELECT * FROM {table}" + (f" WHERE {where}" if where else "")
        return self.query(sql, params)

    @contextmanager
    def connect(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive connection to the DuckDB file with fresh views over every table."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self._lock_path, "a+") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                connection = self._open()
                try:
                    with _damaged_files_named():
                        self._refresh_views(connection)
                    yield connection
                finally:
                    connection.close()
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)

    def _open(self) -> duckdb.DuckDBPyConnection:
        """Connect to the DuckDB file; a corrupt one is set aside and rebuilt (it only holds views)."""
        try:
            return duckdb.connect(str(self.duckdb_path))
        except duckdb.IOException as exc:
            if "not a valid DuckDB database file" not in str(exc):
                raise
            aside = self.duckdb_path.with_name(f"{self.duckdb_path.name}.corrupt-{time.strftime('%Y%m%dT%H%M%S')}")
            os.replace(self.duckdb_path, aside)
            wal = self.duckdb_path.with_name(self.duckdb_path.name + ".wal")
            if wal.exists():  # a log of the damaged file would be replayed into the new one
                os.replace(wal, aside.with_name(aside.name + ".wal"))
            logger.warning(
                "%s was not a valid DuckDB file (%s); it holds only views over the Parquet tables, so it was rebuilt "
                "from them and nothing is lost (the damaged file is kept as %s)",
                self.duckdb_path, exc, aside,
            )
            return duckdb.connect(str(self.duckdb_path))

    def query(self, sql: str, params: list | None = None) -> pd.DataFrame:
        with self.connect() as connection:
            with _damaged_files_named():
                return connection.execute(sql, params or []).fetchdf()

    def _refresh_views(self, connection: duckdb.DuckDBPyConnection) -> None:
        if not self.tables_dir.exists():
            return
        for directory in sorted(self.tables_dir.iterdir()):
            if not directory.is_dir() or not TABLE_NAME.match(directory.name):
                continue
            if not any(directory.glob("*.parquet")):
                continue
            pattern = str(directory / "*.parquet").replace("'", "''")
            connection.execute(
                f"CREATE OR REPLACE VIEW {directory.name} AS "
                f"SELECT * FROM read_parquet('{pattern}', union_by_name = true)"
            )
