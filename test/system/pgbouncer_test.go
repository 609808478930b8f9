package system

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/onsale-dev/onsale/internal/platform/testenv"
)

// TestThreeReplicasSalePgBouncer: TestThreeReplicasSale with PostgreSQL behind PgBouncer in
// transaction pooling (.ci/pgbouncer.sh): the replicas query through it with
// ONSALE_DB_QUERY_EXEC_MODE=cache_describe and migrate through ONSALE_MIGRATE_DATABASE_URL, a
// direct connection. Exactly the capacity is sold, confirmed and charged, nothing fails; and
// PgBouncer's own console shows the replicas as its clients.
func TestThreeReplicasSalePgBouncer(t *testing.T) {
	systemTest(t)
	c := threeReplicasSale(t, Options{Replicas: 3, PgBouncer: true})
	u, err := url.Parse(c.DatabaseURL)
	if err != nil {
		t.Fatal(err)
	}
	database := strings.TrimPrefix(u.Path, "/")
	if n := pgBouncerClients(t, database); n == 0 {
		t.Errorf("PgBouncer has no client on database %s: the replicas do not go through it", database)
	} else {
		t.Logf("PgBouncer serves %d client connections of the replicas on database %s", n, database)
	}
}

// pgBouncerClients counts the client connections PgBouncer holds for a database (SHOW CLIENTS
// on its admin console, which speaks the simple query protocol only).
func pgBouncerClients(t *testing.T, database string) int {
	t.Helper()
	u, err := url.Parse(testenv.PgBouncerURL())
	if err != nil {
		t.Fatal(err)
	}
	u.Path = "/pgbouncer"
	q := u.Query()
	q.Set("default_query_exec_mode", "simple_protocol")
	u.RawQuery = q.Encode()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(ctx, u.String())
	if err != nil {
		t.Fatalf("PgBouncer's console: %v", err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, "SHOW CLIENTS")
	if err != nil {
		t.Fatalf("SHOW CLIENTS: %v", err)
	}
	defer rows.Close()
	col := -1
	for i, f := range rows.FieldDescriptions() {
		if f.Name == "database" {
			col = i
		}
	}
	n := 0
	for rows.Next() {
		vals, err := rows.Values()
		if err != nil {
			t.Fatal(err)
		}
		if col >= 0 && vals[col] == database {
			n++
		}
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return n
}
