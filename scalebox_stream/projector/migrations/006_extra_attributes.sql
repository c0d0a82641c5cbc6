-- extra-attributes.txt of an attempt (Scalebox's t_task_exec.extras.extra_attributes): a JSON object,
-- NULL when the program wrote none (and for every attempt recorded before the column existed).
ALTER TABLE task_runs ADD COLUMN IF NOT EXISTS extra_attributes jsonb;
