-- +goose Up
-- An organizer's lists and sales figures read orders and tickets by ticket type.
CREATE INDEX orders_by_ticket_type ON payment.orders (ticket_type_id, created_at DESC, id DESC);
CREATE INDEX order_tickets_by_ticket_type ON payment.order_tickets (ticket_type_id);

-- +goose Down
DROP INDEX payment.order_tickets_by_ticket_type;
DROP INDEX payment.orders_by_ticket_type;
