package loadtest

import (
	"strings"
	"sync"
	"time"

	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// Arrivals is what the fake Twilio received per generated recipient: when
// the first original and the first retraction arrived, and how many
// originals. The status callback URL Tocsin gives Twilio ends in ".a" for an
// original and ".r" for a retraction (its delivery id).
type Arrivals struct {
	mu          sync.Mutex
	orig, retr  []int64 // first arrival, unix ns; 0 for none
	again       []int64 // an original's last repeat, unix ns; 0 for none
	copies      []uint16
	handed      int
	retracted   int
	first, last int64
	other       int // messages to numbers that are no generated recipient
}

func newArrivals(n int) *Arrivals {
	return &Arrivals{orig: make([]int64, n), retr: make([]int64, n), again: make([]int64, n), copies: make([]uint16, n)}
}

func (a *Arrivals) message(m fake.FakeMessage) {
	i := recipient(m.To)
	at := m.At.UnixNano()
	a.mu.Lock()
	defer a.mu.Unlock()
	if i < 0 || i >= len(a.orig) {
		a.other++
		return
	}
	if strings.HasSuffix(m.StatusCallback, ".r") {
		if a.retr[i] == 0 {
			a.retr[i] = at
			a.retracted++
		}
		return
	}
	if a.copies[i] < 1<<16-1 {
		a.copies[i]++
	}
	if a.orig[i] != 0 {
		a.again[i] = at
	}
	if a.orig[i] == 0 {
		a.orig[i] = at
		a.handed++
		if a.first == 0 {
			a.first = at
		}
	}
	a.last = max(a.last, at)
}

// Counts returns how many recipients have their original and their retraction.
func (a *Arrivals) Counts() (handed, retracted int) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.handed, a.retracted
}

// Span is when the first and the last original arrived.
func (a *Arrivals) Span() (first, last time.Time) {
	a.mu.Lock()
	defer a.mu.Unlock()
	return time.Unix(0, a.first), time.Unix(0, a.last)
}

// Snapshot calls f with the per-recipient records under the lock: first
// original, first retraction, last repeated original, originals received.
func (a *Arrivals) Snapshot(f func(orig, retr, again []int64, copies []uint16)) {
	a.mu.Lock()
	defer a.mu.Unlock()
	f(a.orig, a.retr, a.again, a.copies)
}
