package httpserver

import (
	"sync"
	"testing"

	"github.com/google/uuid"
)

// TestRequestIDsAcrossBatches: ids handed out concurrently across several batches are distinct
// UUIDs of version 8 sharing the server's prefix, and each header value has room for its own id
// only, so a later append to one cannot overwrite the next request's.
func TestRequestIDsAcrossBatches(t *testing.T) {
	t.Parallel()
	ids, err := newRequestIDs()
	if err != nil {
		t.Fatal(err)
	}
	const workers, each = 8, 3 * idBatch
	got := make([][]string, workers)
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				v := ids.next()
				if len(v) != 1 || cap(v) != 1 {
					t.Errorf("header value len %d cap %d, want 1 and 1", len(v), cap(v))
					return
				}
				got[w] = append(got[w], v[0])
			}
		}()
	}
	wg.Wait()
	seen := map[string]bool{}
	var prefix []byte
	for _, list := range got {
		for _, id := range list {
			u, err := uuid.Parse(id)
			if err != nil || u.Version() != 8 || u.Variant() != uuid.RFC4122 || u.String() != id {
				t.Fatalf("id %q: not a canonical version 8 UUID (%v)", id, err)
			}
			if prefix == nil {
				prefix = u[:6]
			} else if string(u[:6]) != string(prefix) {
				t.Fatalf("id %q does not share the server's prefix %x", id, prefix)
			}
			if seen[id] {
				t.Fatalf("id %q handed out twice", id)
			}
			seen[id] = true
		}
	}
	if len(seen) != workers*each {
		t.Fatalf("%d distinct ids, want %d", len(seen), workers*each)
	}
}
