-- +goose Up
CREATE TABLE payment.orders (
    id                uuid PRIMARY KEY,
    customer_id       uuid NOT NULL,
    -- One order per hold: a hold is checked out once.
    hold_id           text NOT NULL CONSTRAINT orders_hold_key UNIQUE,
    ticket_type_id    uuid NOT NULL,
    quantity          integer NOT NULL CHECK (quantity >= 1),
    unit_price_cents  bigint NOT NULL CHECK (unit_price_cents >= 0),
    hold_created_at   timestamptz NOT NULL,
    amount_cents      bigint NOT NULL CHECK (amount_cents >= 0),
    currency          char(3) NOT NULL,
    status            text NOT NULL CHECK (status IN ('pending', 'confirmed', 'failed')),
    status_detail     text NOT NULL DEFAULT '',
    version           integer NOT NULL DEFAULT 1,
    charge_id         text NOT NULL DEFAULT '',
    created_at        timestamptz NOT NULL,
    updated_at        timestamptz NOT NULL
);
CREATE INDEX orders_by_customer ON payment.orders (customer_id, created_at DESC, id DESC);
CREATE INDEX orders_pending ON payment.orders (created_at) WHERE status = 'pending';

CREATE TABLE payment.idempotency_keys (
    customer_id  uuid NOT NULL,
    key          text NOT NULL,
    request_hash text NOT NULL,
    order_id     uuid NOT NULL,
    expires_at   timestamptz NOT NULL,
    PRIMARY KEY (customer_id, key)
);
CREATE INDEX idempotency_keys_expiry ON payment.idempotency_keys (expires_at);

-- Payment requests waiting to be published; written in the order's transaction, deleted once
-- JetStream has them.
CREATE TABLE payment.outbox (
    id         bigserial PRIMARY KEY,
    order_id   uuid NOT NULL,
    created_at timestamptz NOT NULL
);

CREATE TABLE payment.order_tickets (
    ticket_id      uuid PRIMARY KEY,
    order_id       uuid NOT NULL REFERENCES payment.orders (id),
    ticket_type_id uuid NOT NULL,
    event_id       uuid NOT NULL,
    seq            integer NOT NULL
);
CREATE INDEX order_tickets_by_order ON payment.order_tickets (order_id, seq);

CREATE TABLE payment.checkins (
    ticket_id     uuid PRIMARY KEY REFERENCES payment.order_tickets (ticket_id),
    staff_id      uuid NOT NULL,
    checked_in_at timestamptz NOT NULL
);

-- +goose Down
DROP TABLE payment.checkins;
DROP TABLE payment.order_tickets;
DROP TABLE payment.outbox;
DROP TABLE payment.idempotency_keys;
DROP TABLE payment.orders;
