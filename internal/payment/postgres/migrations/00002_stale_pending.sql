-- +goose Up
-- When a worker last tried the order's payment; a pending order nobody tried for long has its
-- payment request published again (its message may have been lost with a NATS store).
ALTER TABLE payment.orders ADD COLUMN attempted_at timestamptz;
CREATE INDEX outbox_by_order ON payment.outbox (order_id);

-- +goose Down
DROP INDEX payment.outbox_by_order;
ALTER TABLE payment.orders DROP COLUMN attempted_at;
