-- Which delivery pass has claimed a pending notification. A pass claims the rows it
-- will send by setting this and moving next_attempt_at past the claim's end, so no
-- other replica (nor this one after a restart) sends them meanwhile; marking one sent
-- needs the same claim.
ALTER TABLE notifications ADD COLUMN claimed_by TEXT;
