-- +goose Up
-- An event's waiting room: its settings and the secret its passes are signed with. The queue
-- itself lives in Redis; these rows are what every replica reads to run admission.
CREATE TABLE inventory.waiting_rooms (
    event_id        uuid PRIMARY KEY REFERENCES inventory.events (id),
    rate_per_minute integer NOT NULL CHECK (rate_per_minute >= 0),
    max_shoppers    integer NOT NULL CHECK (max_shoppers >= 0),
    opens_at        timestamptz NOT NULL,
    pass_lifetime_s integer NOT NULL CHECK (pass_lifetime_s > 0),
    paused          boolean NOT NULL DEFAULT false,
    closed          boolean NOT NULL DEFAULT false,
    secret          bytea NOT NULL,
    version         bigint NOT NULL DEFAULT 1,
    created_at      timestamptz NOT NULL DEFAULT now(),
    updated_at      timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX waiting_rooms_open ON inventory.waiting_rooms (event_id) WHERE NOT closed;

-- +goose Down
DROP TABLE inventory.waiting_rooms;
