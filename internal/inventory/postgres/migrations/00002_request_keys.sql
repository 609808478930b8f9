-- +goose Up
-- An organizer's Idempotency-Key, written in the same transaction as what its request created,
-- so a retried POST /v1/events or POST /v1/events/{id}/ticket-types never creates twice.
CREATE TABLE inventory.request_keys (
    owner_id     uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    resource_id  uuid NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (owner_id, key)
);

-- +goose Down
DROP TABLE inventory.request_keys;
