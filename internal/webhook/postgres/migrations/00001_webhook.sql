-- +goose Up
CREATE TABLE webhook.endpoints (
    id           uuid PRIMARY KEY,
    organizer_id uuid NOT NULL,
    url          text NOT NULL,
    event_types  text[] NOT NULL,
    description  text NOT NULL DEFAULT '',
    -- The signing secret: deliveries are signed with it, so it is kept as is.
    secret       text NOT NULL,
    disabled     boolean NOT NULL DEFAULT false,
    created_at   timestamptz NOT NULL
);
CREATE INDEX endpoints_organizer ON webhook.endpoints (organizer_id, created_at DESC, id DESC);

CREATE TABLE webhook.deliveries (
    id              uuid PRIMARY KEY,
    -- seq orders deliveries: in order per ordering key, and newest first in lists.
    seq             bigint GENERATED ALWAYS AS IDENTITY UNIQUE,
    endpoint_id     uuid NOT NULL REFERENCES webhook.endpoints (id) ON DELETE CASCADE,
    event_id        text NOT NULL,
    type            text NOT NULL,
    ordering_key    text NOT NULL DEFAULT '',
    -- The exact bytes sent and signed (jsonb would reformat them).
    payload         bytea NOT NULL,
    status          text NOT NULL CHECK (status IN ('pending', 'succeeded', 'dead')),
    attempts        integer NOT NULL DEFAULT 0,
    next_attempt_at timestamptz NOT NULL,
    last_attempt_at timestamptz,
    created_at      timestamptz NOT NULL,
    -- One delivery of an event per endpoint, however often the event is published.
    CONSTRAINT deliveries_endpoint_event UNIQUE (endpoint_id, event_id)
);
CREATE INDEX deliveries_due ON webhook.deliveries (next_attempt_at) WHERE status = 'pending';
CREATE INDEX deliveries_pending_key ON webhook.deliveries (endpoint_id, ordering_key, seq) WHERE status = 'pending';
CREATE INDEX deliveries_endpoint ON webhook.deliveries (endpoint_id, seq DESC);

CREATE TABLE webhook.attempts (
    id             bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    delivery_id    uuid NOT NULL REFERENCES webhook.deliveries (id) ON DELETE CASCADE,
    at             timestamptz NOT NULL,
    status_code    integer NOT NULL DEFAULT 0,
    latency_micros bigint NOT NULL DEFAULT 0,
    error          text NOT NULL DEFAULT ''
);
CREATE INDEX attempts_delivery ON webhook.attempts (delivery_id, id);

-- +goose Down
DROP TABLE webhook.attempts;
DROP TABLE webhook.deliveries;
DROP TABLE webhook.endpoints;
