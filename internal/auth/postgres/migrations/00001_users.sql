-- +goose Up
CREATE TABLE auth.users (
    id            uuid PRIMARY KEY,
    email         text NOT NULL,
    name          text NOT NULL,
    role          text NOT NULL CHECK (role IN ('customer', 'organizer', 'staff')),
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
-- Email is unique whatever its case.
CREATE UNIQUE INDEX users_email_key ON auth.users (lower(email));

-- +goose Down
DROP TABLE auth.users;
