-- `rekey rotate --rotate-with CONN`: the admin connection a rotation makes
-- its change through (by name, as it was given; the job holds its id).
ALTER TABLE rotations ADD COLUMN rotate_with TEXT;
