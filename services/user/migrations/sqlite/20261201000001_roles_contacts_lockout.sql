-- Roles come from an operator only (weft admin grant): whatever a sign-up got from a
-- configured address before is dropped.
UPDATE users SET roles = 'customer';
ALTER TABLE users ADD COLUMN email_verified INTEGER NOT NULL DEFAULT 0;
ALTER TABLE users ADD COLUMN phone_verified INTEGER NOT NULL DEFAULT 0;

-- Every grant and revoke, for the audit list.
CREATE TABLE IF NOT EXISTS role_changes (
    seq        INTEGER PRIMARY KEY AUTOINCREMENT,
    user_id    TEXT    NOT NULL,
    email      TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    actor      TEXT    NOT NULL,
    changed_at INTEGER NOT NULL
);

-- The pending verification of each user's email and phone: only a hash of the token
-- or code is kept.
CREATE TABLE IF NOT EXISTS contact_verifications (
    user_id     TEXT    NOT NULL,
    kind        INTEGER NOT NULL,
    address     TEXT    NOT NULL,
    secret_hash TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    attempts    INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (user_id, kind)
);
CREATE INDEX IF NOT EXISTS contact_verifications_secret ON contact_verifications (secret_hash);

-- Login attempts per account in the current window, counted before the password is
-- checked, so parallel guesses cannot pass the limit and a restart forgets nothing.
CREATE TABLE IF NOT EXISTS login_attempts (
    email        TEXT    PRIMARY KEY,
    attempts     INTEGER NOT NULL,
    window_start INTEGER NOT NULL
);
