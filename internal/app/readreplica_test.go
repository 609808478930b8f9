package app_test

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/onsale-dev/onsale/internal/inventory"
	invpostgres "github.com/onsale-dev/onsale/internal/inventory/postgres"
	"github.com/onsale-dev/onsale/internal/platform/logging"
	"github.com/onsale-dev/onsale/internal/platform/pgpool"
	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// TestLaggingReadReplica: with ONSALE_DATABASE_READ_URL on a replica that lags (a second
// database holding a copy of the rows taken before six tickets of ten were sold and before a
// second event was created), the catalogue comes from the replica (its stale event name shows),
// an event the replica does not have yet is read from the primary, and availability never shows
// more than exists: after Redis lost its state, the hold store's figures are loaded from the
// primary, so 4 are available and a hold of 5 is refused, while the replica still says 0 sold.
func TestLaggingReadReplica(t *testing.T) {
	t.Parallel()
	primaryURL, replicaURL := testenv.PostgresURL(t), testenv.PostgresURL(t)
	redis, prefix := testenv.Redis(t)
	ctx := context.Background()
	replica := openMigrated(t, replicaURL)

	file, _ := secret(t)
	p := startProcess(t, "auth,inventory", file, map[string]string{
		"ONSALE_DATABASE_URL": primaryURL, "ONSALE_DATABASE_READ_URL": replicaURL,
		"ONSALE_REDIS_URL": testenv.RedisURL(), "ONSALE_REDIS_PREFIX": prefix,
	})
	mod := p.Inventory.Module
	org := uuid.New()
	ev, err := mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Primary name", Venue: "Hall", StartsAt: time.Now().Add(24 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	tt, err := mod.CreateTicketType(ctx, org, ev.ID, inventory.TicketTypeInput{Name: "GA", PriceCents: 1500, Currency: "EUR", Capacity: 10, MaxPerOrder: 10})
	if err != nil {
		t.Fatal(err)
	}

	// The replica's copy, taken now: nothing sold. A name of its own tells its answers apart.
	for _, table := range []string{"inventory.events", "inventory.ticket_types"} {
		copyRows(t, p.PG, replica, table)
	}
	if _, err := replica.Exec(ctx, `UPDATE inventory.events SET name = 'Replica name' WHERE id = $1`, ev.ID); err != nil {
		t.Fatal(err)
	}
	// Then, on the primary only: six tickets sold, and a second event.
	if _, err := p.PG.Exec(ctx, `UPDATE inventory.ticket_types SET sold = 6 WHERE id = $1`, tt.ID); err != nil {
		t.Fatal(err)
	}
	later, err := mod.CreateEvent(ctx, org, inventory.EventInput{Name: "Created later", Venue: "Hall", StartsAt: time.Now().Add(48 * time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	// Redis loses its state (the hold store's figures and the catalogue cache): both reload.
	testenv.DeleteRedisKeys(redis, prefix+"*")

	base := "http://" + p.Addr()
	var event struct {
		Name        string `json:"name"`
		TicketTypes []struct {
			Availability struct {
				Sold      int `json:"sold"`
				Available int `json:"available"`
			} `json:"availability"`
		} `json:"ticket_types"`
	}
	getJSON(t, base+"/v1/events/"+ev.ID.String(), &event)
	if event.Name != "Replica name" {
		t.Errorf("the catalogue says %q, want the replica's %q: catalogue reloads do not read the replica", event.Name, "Replica name")
	}
	if len(event.TicketTypes) != 1 || event.TicketTypes[0].Availability.Available != 4 || event.TicketTypes[0].Availability.Sold != 6 {
		t.Errorf("the event shows %+v, want 6 sold and 4 available (the primary's figures)", event.TicketTypes)
	}
	var avail struct {
		TicketTypes []struct {
			Sold      int `json:"sold"`
			Available int `json:"available"`
		} `json:"ticket_types"`
	}
	getJSON(t, base+"/v1/events/"+ev.ID.String()+"/availability", &avail)
	if len(avail.TicketTypes) != 1 || avail.TicketTypes[0].Available != 4 || avail.TicketTypes[0].Sold != 6 {
		t.Errorf("availability %+v, want 6 sold and 4 available whatever the replica says", avail.TicketTypes)
	}
	if _, _, err := mod.Hold(ctx, uuid.New(), tt.ID, 5, ""); err == nil {
		t.Errorf("a hold of 5 was made with 4 tickets left")
	}
	if _, _, err := mod.Hold(ctx, uuid.New(), tt.ID, 4, ""); err != nil {
		t.Errorf("a hold of the 4 tickets left: %v", err)
	}

	// An event the replica has not caught up with is read from the primary.
	getJSON(t, base+"/v1/events/"+later.ID.String(), &event)
	if event.Name != "Created later" {
		t.Errorf("an event missing on the replica reads as %q, want the primary's %q", event.Name, "Created later")
	}
}

// openMigrated opens a pool on url with the inventory schema migrated.
func openMigrated(t *testing.T, url string) *pgxpool.Pool {
	t.Helper()
	pool, err := pgpool.Open(context.Background(), url, 4)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pool.Close)
	if err := invpostgres.Migrate(context.Background(), pool, logging.Discard()); err != nil {
		t.Fatal(err)
	}
	return pool
}

// copyRows copies every row of a table from one database to another, as a replica would have
// them.
func copyRows(t *testing.T, from, to *pgxpool.Pool, table string) {
	t.Helper()
	ctx := context.Background()
	rows, err := from.Query(ctx, `SELECT row_to_json(t)::text FROM `+table+` t`)
	if err != nil {
		t.Fatal(err)
	}
	var docs []string
	for rows.Next() {
		var doc string
		if err := rows.Scan(&doc); err != nil {
			t.Fatal(err)
		}
		docs = append(docs, doc)
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	for _, doc := range docs {
		if _, err := to.Exec(ctx, `INSERT INTO `+table+` SELECT * FROM json_populate_record(NULL::`+table+`, $1::json)`, doc); err != nil {
			t.Fatalf("copy a row of %s: %v", table, err)
		}
	}
}

// getJSON GETs url, wants 200, and decodes the body into v.
func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	a := request(t, http.MethodGet, url, "", nil, nil)
	if a.status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", url, a.status, a.body)
	}
	if err := json.Unmarshal([]byte(a.body), v); err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
}
