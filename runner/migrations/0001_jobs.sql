-- Job records of the runner daemon. One row per submitted job; `seq` keeps
-- submission order (queued jobs are resumed in that order after a restart).
CREATE TABLE jobs (
    seq         INTEGER PRIMARY KEY AUTOINCREMENT,
    id          TEXT    NOT NULL UNIQUE,
    state       TEXT    NOT NULL CHECK (state IN ('queued', 'preparing', 'running', 'attesting',
                                                   'succeeded', 'failed', 'cancelled')),
    reason      TEXT,
    spec        TEXT    NOT NULL,
    created_at  TEXT    NOT NULL,
    started_at  TEXT,
    finished_at TEXT,
    exit_code   INTEGER,
    result      TEXT
);
CREATE INDEX jobs_state ON jobs (state);
