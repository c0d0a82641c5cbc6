-- Two projectors (one group, different partitions) may insert the same task row at the same moment (a
-- child's placeholder from its parent's partition, its TaskCreated from its own). The loser's insert is
-- skipped (ON CONFLICT DO NOTHING) and this check aborts its batch with SQLSTATE SBX02; the projector
-- retries the batch, which then merges into the winner's row.
CREATE OR REPLACE FUNCTION projector_expect_placed(placed bigint, expected bigint) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF placed <> expected THEN
        RAISE EXCEPTION '% row(s) inserted concurrently by another projector; retry', expected - placed
            USING ERRCODE = 'SBX02';
    END IF;
END
$$;
