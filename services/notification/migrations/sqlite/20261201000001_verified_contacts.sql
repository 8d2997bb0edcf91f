-- Whether each address of a user is verified (ContactVerified); text messages go only
-- to verified numbers.
ALTER TABLE contacts ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE contacts ADD COLUMN phone_verified INTEGER NOT NULL DEFAULT 0;
