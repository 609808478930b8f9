-- +goose Up
CREATE TABLE inventory.events (
    id           uuid PRIMARY KEY,
    organizer_id uuid NOT NULL,
    name         text NOT NULL,
    venue        text NOT NULL,
    description  text NOT NULL DEFAULT '',
    starts_at    timestamptz NOT NULL,
    version      bigint NOT NULL DEFAULT 1,
    created_at   timestamptz NOT NULL DEFAULT now(),
    updated_at   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX events_listing ON inventory.events (starts_at, id);

CREATE TABLE inventory.ticket_types (
    id            uuid PRIMARY KEY,
    event_id      uuid NOT NULL REFERENCES inventory.events (id),
    name          text NOT NULL,
    price_cents   bigint NOT NULL CHECK (price_cents >= 0),
    currency      char(3) NOT NULL,
    capacity      integer NOT NULL CHECK (capacity >= 1),
    -- The truth about sales: never above capacity, whatever any cache says.
    sold          integer NOT NULL DEFAULT 0 CHECK (sold >= 0 AND sold <= capacity),
    max_per_order integer NOT NULL CHECK (max_per_order BETWEEN 1 AND 50),
    sales_start   timestamptz,
    sales_end     timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX ticket_types_event ON inventory.ticket_types (event_id, created_at);

CREATE TABLE inventory.tickets (
    id             uuid PRIMARY KEY,
    ticket_type_id uuid NOT NULL REFERENCES inventory.ticket_types (id),
    event_id       uuid NOT NULL,
    hold_id        text NOT NULL,
    order_id       uuid NOT NULL,
    customer_id    uuid NOT NULL,
    seq            integer NOT NULL CHECK (seq >= 1),
    created_at     timestamptz NOT NULL DEFAULT now(),
    -- A hold is sold once: a repeated commit finds these rows instead of making more.
    CONSTRAINT tickets_hold_seq UNIQUE (hold_id, seq)
);
CREATE INDEX tickets_ticket_type ON inventory.tickets (ticket_type_id);

-- +goose Down
DROP TABLE inventory.tickets;
DROP TABLE inventory.ticket_types;
DROP TABLE inventory.events;
