-- Admission checks refused before an attempt started, and the suspended/resumed state of modules.
ALTER TABLE task_runs ADD COLUMN IF NOT EXISTS admission_refusals integer;

CREATE TABLE IF NOT EXISTS module_states (
    app         text NOT NULL,
    module      text NOT NULL,
    state       text NOT NULL,          -- suspended or resumed
    reason      text NOT NULL DEFAULT '',
    agent       text NOT NULL DEFAULT '',
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (app, module)
);
