-- Lets the projector send a whole batch without waiting for the event-id check: the batch's transaction
-- aborts (SQLSTATE SBX01) if some of its events were applied before, and the projector then re-applies
-- it the careful way (ids first, duplicates skipped).
CREATE OR REPLACE FUNCTION projector_expect_fresh(inserted bigint, expected bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF inserted <> expected THEN
        RAISE EXCEPTION 'batch holds % already applied event(s)', expected - inserted USING ERRCODE = 'SBX01';
    END IF;
END
$$;
