-- applied_events exists for idempotency only: the event id is all it needs. The type, task and time of
-- each event are in the log (and in the projected rows); keeping them cost a third of the table and part
-- of every batch's COPY.
ALTER TABLE applied_events
    DROP COLUMN IF EXISTS event_type,
    DROP COLUMN IF EXISTS task_id,
    DROP COLUMN IF EXISTS occurred_at;
