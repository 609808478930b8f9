package main

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"
)

// dbFigures are the truth about one ticket type in PostgreSQL.
type dbFigures struct {
	Sold    int            `json:"sold"`
	Tickets int            `json:"tickets"`
	Orders  map[string]int `json:"orders"`
}

// checkDatabase reads inventory.ticket_types.sold, the number of inventory.tickets rows and
// payment.orders by status for the ticket type.
func checkDatabase(ctx context.Context, url, ticketType string) (dbFigures, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		return dbFigures{}, fmt.Errorf("connect to --database-url: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	f := dbFigures{Orders: map[string]int{}}
	if err := conn.QueryRow(ctx, `SELECT sold FROM inventory.ticket_types WHERE id = $1`, ticketType).Scan(&f.Sold); err != nil {
		return f, fmt.Errorf("inventory.ticket_types: %w", err)
	}
	if err := conn.QueryRow(ctx, `SELECT count(*) FROM inventory.tickets WHERE ticket_type_id = $1`, ticketType).Scan(&f.Tickets); err != nil {
		return f, fmt.Errorf("inventory.tickets: %w", err)
	}
	rows, err := conn.Query(ctx, `SELECT status, count(*) FROM payment.orders WHERE ticket_type_id = $1 GROUP BY status`, ticketType)
	if err != nil {
		return f, fmt.Errorf("payment.orders: %w", err)
	}
	for rows.Next() {
		var status string
		var n int
		if err := rows.Scan(&status, &n); err != nil {
			return f, err
		}
		f.Orders[status] = n
	}
	if err := rows.Err(); err != nil {
		return f, err
	}
	return f, nil
}
