-- How long an event mark can matter: the periodic scan that raises a
-- `credential.expiring` event finds a date only while it lies ahead, so
-- once the date has passed its mark can never stop a second event and the
-- janitor deletes it (before, every mark was kept forever). NULL: kept (a
-- `rotation.due` mark matters while its due date stands, however long).
ALTER TABLE event_marks ADD COLUMN until_at BIGINT;
