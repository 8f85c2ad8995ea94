-- The outside system a job acts on (a rotation's target host, as
-- `kind:host`), so that claims can cap the work running against one host
-- across rotations, campaigns and instances, not only within one pass.
ALTER TABLE jobs ADD COLUMN host TEXT;
CREATE INDEX jobs_host_running ON jobs (host, state);
