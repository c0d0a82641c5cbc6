-- The task perspective: a projection of the sbx.events log. Dropping these tables and replaying the
-- log rebuilds them exactly.

CREATE TABLE IF NOT EXISTS apps (
    app           text PRIMARY KEY,
    modules       text[] NOT NULL DEFAULT '{}',
    source        text NOT NULL DEFAULT '',
    spec_yaml     text NOT NULL DEFAULT '',
    deployed_at   timestamptz,
    finished_at   timestamptz
);

CREATE TABLE IF NOT EXISTS tasks (
    task_id         uuid PRIMARY KEY,
    app             text NOT NULL,
    module          text NOT NULL,
    body            text,
    headers         jsonb NOT NULL DEFAULT '{}',
    parent_task_id  uuid,
    status          text NOT NULL,          -- created, accepted, running, retrying, succeeded, failed
    status_rank     bigint NOT NULL,        -- monotonic: attempt * 10 + stage; terminal = 1e12
    attempts        integer NOT NULL DEFAULT 0,
    exit_code       integer,
    host            text,
    custom_out      text,
    created_at      timestamptz,
    finished_at     timestamptz
);
CREATE INDEX IF NOT EXISTS tasks_app_module ON tasks (app, module, status);
CREATE INDEX IF NOT EXISTS tasks_parent ON tasks (parent_task_id);

CREATE TABLE IF NOT EXISTS task_runs (
    task_id            uuid NOT NULL,
    attempt            integer NOT NULL,
    app                text NOT NULL,
    module             text NOT NULL,
    cluster            text,
    host               text,
    slot               integer,
    agent              text,
    executor           text,
    image              text,
    container_id       text,
    status             text NOT NULL,      -- created, accepted, running, succeeded, failed, timed_out, error, lost
    status_rank        smallint NOT NULL,  -- monotonic: 0 created, 1 accepted, 2 running, 3 ended
    exit_code          integer,
    signal             integer,
    timed_out          boolean,
    error              text,
    stdout             text,
    stderr             text,
    custom_out         text,
    message_text       text,
    stdout_bytes       bigint,
    stderr_bytes       bigint,
    status_code        integer,
    input_bytes        bigint,
    output_bytes       bigint,
    read_bytes         bigint,
    write_bytes        bigint,
    cpu_user_s         double precision,
    cpu_system_s       double precision,
    peak_memory_bytes  bigint,
    user_timestamps    jsonb NOT NULL DEFAULT '[]',
    retry_rule         text,
    created_at         timestamptz,
    accepted_at        timestamptz,
    started_at         timestamptz,
    finished_at        timestamptz,
    recorded_at        timestamptz,
    PRIMARY KEY (task_id, attempt)
);
CREATE INDEX IF NOT EXISTS task_runs_app_module ON task_runs (app, module, status);

CREATE TABLE IF NOT EXISTS task_edges (
    parent_task_id  uuid NOT NULL,
    child_task_id   uuid NOT NULL,
    child_module    text NOT NULL,
    position        integer NOT NULL,
    PRIMARY KEY (parent_task_id, child_task_id)
);
CREATE INDEX IF NOT EXISTS task_edges_child ON task_edges (child_task_id);

CREATE TABLE IF NOT EXISTS agents (
    agent        text PRIMARY KEY,
    app          text NOT NULL,
    module       text NOT NULL,
    host         text,
    executor     text,
    slots        integer,
    pid          integer,
    state        text NOT NULL,
    started_at   timestamptz,
    last_seen_at timestamptz
);

-- Idempotency: every applied event id, so a redelivered or replayed event is a no-op.
CREATE TABLE IF NOT EXISTS applied_events (
    event_id     uuid PRIMARY KEY,
    event_type   text NOT NULL,
    task_id      text NOT NULL DEFAULT '',
    occurred_at  timestamptz NOT NULL
);

-- The projector's consumer positions, committed in the same transaction as the rows they produced.
CREATE TABLE IF NOT EXISTS projector_offsets (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    next_offset  bigint NOT NULL,
    PRIMARY KEY (topic, partition)
);

CREATE TABLE IF NOT EXISTS dead_letters (
    topic        text NOT NULL,
    partition    integer NOT NULL,
    "offset"     bigint NOT NULL,
    reason       text NOT NULL,
    recorded_at  timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (topic, partition, "offset")
);
