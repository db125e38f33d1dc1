package adapters

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// Route says where a delivery goes: the provider endpoint its breaker guards
// (a Twilio account, a PA controller) and the sender whose rate paces it.
type Route struct {
	// Breaker names the breaker; empty means one per target.
	Breaker string
	// Sender names the paced sender; empty means not paced.
	Sender string
	// Rate is the sender's units (SMS segments, calls) per second.
	Rate float64
}

// Router is implemented by adapters whose deliveries share a provider
// endpoint or a paced sender. Adapters that do not implement it get a breaker
// per target and no pacing.
type Router interface {
	Route(d alert.Delivery) Route
}

// Coster is implemented by adapters whose deliveries may take more than one
// unit of their sender's rate (an SMS of several segments). Pace asks it
// once per paced attempt; adapters that do not implement it cost 1.
type Coster interface {
	Cost(d alert.Delivery) int
}

// RouteOf is a's route for d.
func RouteOf(a Adapter, d alert.Delivery) Route {
	if r, ok := a.(Router); ok {
		return r.Route(d)
	}
	return Route{}
}

// Recipient is a person as the phone adapters need them. Their number is
// looked up by target id at the last moment and never logged above debug.
type Recipient struct {
	Phone    string
	Language string
}

// Pending is implemented by adapters for which a nil Deliver means "accepted
// by the provider" (the outcome comes later by callback), not "confirmed".
type Pending interface {
	Pending() bool
}

// Reserver hands out send slots for a sender at a rate, shared by every
// gateway instance (priority.Queue).
type Reserver interface {
	// TryReserve takes the sender's next slot for cost units if it is free
	// now (wait 0, and a slot to give back with Unreserve); otherwise it takes
	// nothing and says how long until it is free.
	TryReserve(ctx context.Context, sender string, rate float64, cost int) (wait time.Duration, slot int64, err error)
	// Unreserve gives back an unused slot, if no later one was taken since.
	Unreserve(ctx context.Context, sender string, rate float64, cost int, slot int64) error
}

// PaceHeadroom is the share of a sender's configured rate that Pace uses.
// Requests leave on schedule but reach the provider with network and
// scheduling jitter; at 100/s one late request followed by punctual ones is
// enough for the provider to see 102 in one second. 3% headroom absorbs
// ~30ms of jitter per second (BENCHMARKS.md, SMS pacing).
const PaceHeadroom = 0.97

// Pace returns a decorator that waits, before each attempt, for the next
// slot of the sender a routes the delivery to (RouteOf), so no sender ever
// exceeds its rate (in units, Coster: an SMS of two segments takes two): the backlog waits on our side, where a retraction can
// still stop it (Fence runs after the wait). Slots go by priority: in each
// instance one goroutine per sender hands the next free slot to the
// highest-priority delivery waiting (a retraction first), and a slot is
// taken only when it is free, so no slot is held for work the fence cuts
// short; one taken for a send that then did not happen is given back.
func Pace(r Reserver, a Adapter) Decorator {
	p := &pacer{r: r, senders: map[string]*paceQueue{}}
	return func(next Adapter) Adapter {
		return Func(func(ctx context.Context, d alert.Delivery) error {
			rt := RouteOf(a, d)
			if rt.Sender == "" || rt.Rate <= 0 {
				return next.Deliver(ctx, d)
			}
			cost := 1
			if c, ok := a.(Coster); ok {
				cost = max(c.Cost(d), 1)
			}
			rate := rt.Rate * PaceHeadroom
			slot, err := p.wait(ctx, rt.Sender, rate, cost, priorityOf(d))
			if err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				return fmt.Errorf("pace: %w", err)
			}
			err = next.Deliver(ctx, d)
			if IsNotAttempted(err) || errors.Is(err, ErrFenced) {
				p.giveBack(rt.Sender, rate, cost, slot) // nothing went out
			}
			return err
		})
	}
}

// priorityOf orders deliveries waiting for a pace slot: retractions first.
func priorityOf(d alert.Delivery) alert.Priority {
	if d.Message == alert.MessageRetraction || d.Alert == nil {
		return alert.PriorityRetraction
	}
	return d.Alert.Priority
}

// pacer keeps, per sender, the deliveries waiting for a slot in priority
// order, and one goroutine that serves them while any wait.
type pacer struct {
	r       Reserver
	mu      sync.Mutex
	seq     uint64
	senders map[string]*paceQueue
}

type paceQueue struct {
	waiting paceHeap
	serving bool
}

type paceWaiter struct {
	prio    alert.Priority
	seq     uint64
	rate    float64
	cost    int
	granted chan paceGrant // buffered 1
	gone    atomic.Bool    // the delivery stopped waiting
}

type paceGrant struct {
	slot int64
	err  error
}

// paceHeap orders waiters by priority, then arrival.
type paceHeap []*paceWaiter

func (h paceHeap) Len() int { return len(h) }
func (h paceHeap) Less(i, j int) bool {
	if h[i].prio != h[j].prio {
		return h[i].prio > h[j].prio
	}
	return h[i].seq < h[j].seq
}
func (h paceHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *paceHeap) Push(x any)   { *h = append(*h, x.(*paceWaiter)) }
func (h *paceHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	*h = old[:len(old)-1]
	return w
}

// wait queues for the sender's next slot and returns it once granted.
func (p *pacer) wait(ctx context.Context, sender string, rate float64, cost int, prio alert.Priority) (int64, error) {
	w := &paceWaiter{prio: prio, rate: rate, cost: cost, granted: make(chan paceGrant, 1)}
	p.mu.Lock()
	p.seq++
	w.seq = p.seq
	q := p.senders[sender]
	if q == nil {
		q = &paceQueue{}
		p.senders[sender] = q
	}
	heap.Push(&q.waiting, w)
	if !q.serving {
		q.serving = true
		go p.serve(sender, q) // exits when no delivery waits for this sender
	}
	p.mu.Unlock()
	select {
	case g := <-w.granted:
		return g.slot, g.err
	case <-ctx.Done():
		w.gone.Store(true)
		select {
		case g := <-w.granted: // granted meanwhile: the slot goes unused
			if g.err == nil {
				p.giveBack(sender, rate, cost, g.slot)
			}
		default:
		}
		return 0, ctx.Err()
	}
}

// serve hands out the sender's slots, each to the highest-priority delivery
// waiting when the slot comes free, until none waits.
func (p *pacer) serve(sender string, q *paceQueue) {
	for {
		p.mu.Lock()
		var w *paceWaiter
		for q.waiting.Len() > 0 && w == nil {
			if top := heap.Pop(&q.waiting).(*paceWaiter); !top.gone.Load() {
				w = top
			}
		}
		if w == nil {
			q.serving = false
			p.mu.Unlock()
			return
		}
		p.mu.Unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		wait, slot, err := p.r.TryReserve(ctx, sender, w.rate, w.cost)
		cancel()
		switch {
		case err != nil || wait == 0:
			w.granted <- paceGrant{slot: slot, err: err}
			if err == nil && w.gone.Load() {
				// It stopped waiting as the slot came: give it back, unless
				// wait's own check already did.
				select {
				case g := <-w.granted:
					p.giveBack(sender, w.rate, w.cost, g.slot)
				default:
				}
			}
		default:
			// Not free yet: back in line, and look again when it is (a
			// higher-priority delivery may have come by then).
			p.mu.Lock()
			heap.Push(&q.waiting, w)
			p.mu.Unlock()
			time.Sleep(wait)
		}
	}
}

func (p *pacer) giveBack(sender string, rate float64, cost int, slot int64) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	p.r.Unreserve(ctx, sender, rate, cost, slot) // best effort: a lost slot only slows the sender
}

// ErrNoFallback is returned by a fallback adapter that has no second route
// for a delivery's target (a PA zone without a fallback controller).
var ErrNoFallback = errors.New("no fallback route for this target")

// Failover returns an adapter that uses primary, and fallback while the
// primary's breaker is open (primary returns ErrParked). Where the fallback
// has no route for the target, the delivery stays parked.
func Failover(primary, fallback Adapter) Adapter {
	return Func(func(ctx context.Context, d alert.Delivery) error {
		err := primary.Deliver(ctx, d)
		if errors.Is(err, ErrParked) {
			if ferr := fallback.Deliver(ctx, d); !errors.Is(ferr, ErrNoFallback) {
				return ferr
			}
		}
		return err
	})
}
