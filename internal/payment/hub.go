package payment

import (
	"sync"

	"github.com/google/uuid"
)

// Hub hands status events to the order streams open on this replica. It is fed by one
// subscription to every order's status subject, so ten thousand open streams cost ten thousand
// map entries, not ten thousand subscriptions.
type Hub struct {
	mu        sync.Mutex
	listeners map[uuid.UUID]map[chan StatusEvent]struct{}
}

// NewHub returns an empty hub.
func NewHub() *Hub {
	return &Hub{listeners: map[uuid.UUID]map[chan StatusEvent]struct{}{}}
}

// Subscribe returns a channel of the order's status events and a function that ends the
// subscription.
func (h *Hub) Subscribe(order uuid.UUID) (<-chan StatusEvent, func()) {
	ch := make(chan StatusEvent, 4)
	h.mu.Lock()
	set, ok := h.listeners[order]
	if !ok {
		set = map[chan StatusEvent]struct{}{}
		h.listeners[order] = set
	}
	set[ch] = struct{}{}
	h.mu.Unlock()
	return ch, func() {
		h.mu.Lock()
		delete(set, ch)
		if len(set) == 0 {
			delete(h.listeners, order)
		}
		h.mu.Unlock()
	}
}

// Deliver passes an event to the order's listeners. A listener whose buffer is full misses it;
// streams re-read the order on every heartbeat, so a miss only delays them.
func (h *Hub) Deliver(ev StatusEvent) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for ch := range h.listeners[ev.OrderID] {
		select {
		case ch <- ev:
		default:
		}
	}
}

// Streams counts the open subscriptions.
func (h *Hub) Streams() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, set := range h.listeners {
		n += len(set)
	}
	return n
}
