"""Write-behind persistence of the emulator's state in SQLite (standard library).

Handlers and the scheduler call :meth:`Store.put` under the state lock; a background
thread commits the latest version of every changed resource a few times a second, and
:meth:`Store.close` flushes what is left. Without a data directory nothing is written.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS resources (kind TEXT, key TEXT, body TEXT, PRIMARY KEY (kind, key))"
)


class Store:
    def __init__(self, path: Path | None, interval: float = 0.05) -> None:
        self._path = path
        self._pending: dict[tuple[str, str], Any] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._interval = interval
        self._db: sqlite3.Connection | None = None
        self._thread: threading.Thread | None = None
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
            self._thread = threading.Thread(
                target=self._run, name="batch-emulator-store", daemon=True
            )
            self._thread.start()

    @property
    def enabled(self) -> bool:
        return self._db is not None

    def put(self, kind: str, key: str, body: Any) -> None:
        """Record the latest version of a resource (``None`` deletes it)."""
        if self._db is None:
            return
        # Serialize now: the caller holds the state lock, so the snapshot is consistent.
        text = None if body is None else json.dumps(body, separators=(",", ":"))
        with self._lock:
            self._pending[(kind, key)] = text

    def load(self, kind: str) -> Iterator[tuple[str, Any]]:
        if self._db is None:
            return iter(())
        rows = self._db.execute(
            "SELECT key, body FROM resources WHERE kind = ?", (kind,)
        ).fetchall()
        return ((key, json.loads(body)) for key, body in rows)

    def flush(self) -> None:
        if self._db is None:
            return
        with self._lock:
            pending, self._pending = self._pending, {}
        if not pending:
            return
        writes = [(k, key, text) for (k, key), text in pending.items() if text is not None]
        deletes = [(k, key) for (k, key), text in pending.items() if text is None]
        self._db.execute("BEGIN")
        try:
            self._db.executemany(
                "INSERT OR REPLACE INTO resources (kind, key, body) VALUES (?, ?, ?)", writes
            )
            self._db.executemany("DELETE FROM resources WHERE kind = ? AND key = ?", deletes)
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            self.flush()

    def close(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self._db is not None:
            self.flush()
            self._db.close()
            self._db = None
