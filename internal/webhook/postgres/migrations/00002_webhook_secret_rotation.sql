-- +goose Up
-- The secret a rotation replaced, which still signs deliveries until previous_secret_until.
ALTER TABLE webhook.endpoints
    ADD COLUMN previous_secret       text NOT NULL DEFAULT '',
    ADD COLUMN previous_secret_until timestamptz;

-- +goose Down
ALTER TABLE webhook.endpoints
    DROP COLUMN previous_secret,
    DROP COLUMN previous_secret_until;
