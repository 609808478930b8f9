-- +goose Up
-- Cancellations: an event may be cancelled, and customers may cancel their orders until a
-- number of hours before the start (NULL: they may not).
ALTER TABLE inventory.events ADD COLUMN cancelled_at timestamptz;
ALTER TABLE inventory.events ADD COLUMN cancel_cutoff_hours integer CHECK (cancel_cutoff_hours BETWEEN 0 AND 8760);
-- Tickets given back by cancelled orders: sold only grows, returned too, and what is sold now is
-- their difference, so the hold store's figures (which are only ever raised) stay right.
ALTER TABLE inventory.ticket_types ADD COLUMN returned integer NOT NULL DEFAULT 0 CHECK (returned >= 0);
ALTER TABLE inventory.ticket_types DROP CONSTRAINT ticket_types_check;
ALTER TABLE inventory.ticket_types ADD CONSTRAINT ticket_types_sold_check
    CHECK (sold >= 0 AND returned <= sold AND sold - returned <= capacity);
ALTER TABLE inventory.tickets ADD COLUMN returned_at timestamptz;

-- +goose Down
ALTER TABLE inventory.tickets DROP COLUMN returned_at;
ALTER TABLE inventory.ticket_types DROP CONSTRAINT ticket_types_sold_check;
ALTER TABLE inventory.ticket_types DROP COLUMN returned;
ALTER TABLE inventory.ticket_types ADD CONSTRAINT ticket_types_check CHECK (sold >= 0 AND sold <= capacity);
ALTER TABLE inventory.events DROP COLUMN cancel_cutoff_hours;
ALTER TABLE inventory.events DROP COLUMN cancelled_at;
