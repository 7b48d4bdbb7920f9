"""The server's re-index jobs in DuckDB: one row per job (its JSON document), so queued jobs survive a restart.

The table is the store's migration 6; the server (search/http/jobs.py) reads and writes it only through here.
"""

from __future__ import annotations

from typing import NamedTuple

JOBS_TABLE = "server_jobs"
JOB_TABLES = (  # the store's migration 6
    f"CREATE TABLE IF NOT EXISTS {JOBS_TABLE} (id VARCHAR PRIMARY KEY, seq BIGINT, status VARCHAR, doc VARCHAR)",
)


class SavedJob(NamedTuple):
    """A persisted job: its submission order and its JSON document."""

    seq: int
    doc: str


def saved_jobs(cur) -> list[SavedJob]:
    """Every persisted job, in submission order."""
    return [SavedJob(int(s), d) for s, d in cur.execute(f"SELECT seq, doc FROM {JOBS_TABLE} ORDER BY seq").fetchall()]


def save_job(cur, job_id: str, seq: int, status: str, doc: str) -> None:
    """Insert or replace one job's row."""
    cur.execute(f"INSERT OR REPLACE INTO {JOBS_TABLE} VALUES (?, ?, ?, ?)", [job_id, int(seq), status, doc])


def drop_jobs(cur, job_ids: list[str]) -> None:
    """Forget jobs (history beyond what is kept)."""
    if job_ids:
        cur.execute(f"DELETE FROM {JOBS_TABLE} WHERE id IN ({', '.join('?' * len(job_ids))})", list(job_ids))


def run_recorded(cur, run_id: int) -> bool:
    """True when the runs table holds ``run_id`` (a job refused before its run started has none)."""
    return bool(cur.execute("SELECT count(*) FROM runs WHERE id = ?", [int(run_id)]).fetchone()[0])
