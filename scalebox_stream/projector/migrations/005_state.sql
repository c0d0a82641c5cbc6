-- Shared state (semaphores, variables, globals, app results): a mirror of the state owners' StateChanged events,
-- for queries. The truth is the compacted changelog topic; these tables only follow it.
CREATE TABLE IF NOT EXISTS state_values (
    kind        text NOT NULL,          -- semaphore, variable, global or app
    app         text NOT NULL,          -- '' for a global
    name        text NOT NULL,
    value       text NOT NULL,          -- a semaphore's in decimal
    version     bigint NOT NULL,        -- the item's change count: the highest seen wins
    changed_at  timestamptz NOT NULL,
    PRIMARY KEY (kind, app, name)
);

CREATE TABLE IF NOT EXISTS state_history (
    event_id    uuid PRIMARY KEY,
    kind        text NOT NULL,
    app         text NOT NULL,
    name        text NOT NULL,
    version     bigint NOT NULL,
    op          text NOT NULL,          -- create, add or set
    value       text NOT NULL,
    old_value   text,                   -- NULL when the change created the item
    request_id  text NOT NULL DEFAULT '',
    changed_at  timestamptz NOT NULL
);
CREATE INDEX IF NOT EXISTS state_history_item ON state_history (kind, app, name, version);

ALTER TABLE apps ADD COLUMN IF NOT EXISTS result text;  -- `scalebox app set-finished TEXT`
