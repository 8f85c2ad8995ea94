-- A wake that found its job held (`jobs::queue::wake`): the holder may
-- have read what the wake is about before it changed (a delivery resumed
-- while its job, having seen it paused, was about to release itself for an
-- hour), so its release makes the job due at once instead of at the time
-- it computed. Cleared by every claim: the run that claims after a wake
-- sees what the wake was about.
ALTER TABLE jobs ADD COLUMN woken_at BIGINT;
