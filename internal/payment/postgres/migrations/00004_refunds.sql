-- +goose Up
-- Refunds: a paid order may be refunded (in part, or cancelled and refunded in full).
ALTER TABLE payment.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE payment.orders ADD CONSTRAINT orders_status_check
    CHECK (status IN ('pending', 'confirmed', 'failed', 'refund_pending', 'refunded', 'cancelled'));
-- voided: the order was cancelled and its tickets admit nobody.
ALTER TABLE payment.orders ADD COLUMN voided boolean NOT NULL DEFAULT false;
ALTER TABLE payment.orders ADD COLUMN refunded_cents bigint NOT NULL DEFAULT 0;
CREATE INDEX orders_refund_pending ON payment.orders (created_at) WHERE status = 'refund_pending';

CREATE TABLE payment.refunds (
    id                 uuid PRIMARY KEY,
    order_id           uuid NOT NULL REFERENCES payment.orders (id),
    -- What asked for it: one refund per order and key, so a repeated request finds the first.
    key                text NOT NULL,
    amount_cents       bigint NOT NULL CHECK (amount_cents > 0),
    reason             text NOT NULL DEFAULT '',
    status             text NOT NULL CHECK (status IN ('pending', 'succeeded')),
    provider_refund_id text NOT NULL DEFAULT '',
    created_at         timestamptz NOT NULL,
    completed_at       timestamptz,
    CONSTRAINT refunds_order_key UNIQUE (order_id, key)
);

CREATE TABLE payment.event_cancellations (
    event_id        uuid PRIMARY KEY,
    organizer_id    uuid NOT NULL,
    ticket_type_ids uuid[] NOT NULL,
    reason          text NOT NULL DEFAULT '',
    created_at      timestamptz NOT NULL,
    finished_at     timestamptz
);

-- +goose Down
DROP TABLE payment.event_cancellations;
DROP TABLE payment.refunds;
DROP INDEX payment.orders_refund_pending;
ALTER TABLE payment.orders DROP COLUMN refunded_cents;
ALTER TABLE payment.orders DROP COLUMN voided;
ALTER TABLE payment.orders DROP CONSTRAINT orders_status_check;
ALTER TABLE payment.orders ADD CONSTRAINT orders_status_check CHECK (status IN ('pending', 'confirmed', 'failed'));
