package adapters

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/sony/gobreaker/v2"

	"github.com/tocsin-alert/tocsin/alert"
)

// BreakerOptions tune the per-target circuit breakers.
type BreakerOptions struct {
	// Failures in a row that open a breaker (5).
	Failures uint32
	// Open is how long a breaker stays open before it lets one attempt through (5s).
	Open time.Duration
	// OnStateChange is told of every transition, with the breaker's key.
	OnStateChange func(key string, from, to gobreaker.State)
	// Key names the breaker a delivery goes through (default: its target).
	Key func(d alert.Delivery) string
}

// Breaker returns a decorator that keeps one circuit breaker per target, or
// per provider endpoint when Key says so. While a breaker is open, Deliver returns a DelayError wrapping ErrParked,
// so Retry waits and tries again: an open breaker delays a delivery, it never
// fails it. Permanent errors, cancellations and ErrNoFallback do not count against a breaker.
func Breaker(o BreakerOptions) Decorator {
	if o.Failures == 0 {
		o.Failures = 5
	}
	if o.Open == 0 {
		o.Open = 5 * time.Second
	}
	return func(next Adapter) Adapter {
		return &breaker{next: next, o: o, cbs: map[string]*gobreaker.CircuitBreaker[struct{}]{}}
	}
}

type breaker struct {
	next Adapter
	o    BreakerOptions
	mu   sync.Mutex
	cbs  map[string]*gobreaker.CircuitBreaker[struct{}]
}

func (b *breaker) get(key string) *gobreaker.CircuitBreaker[struct{}] {
	b.mu.Lock()
	defer b.mu.Unlock()
	cb := b.cbs[key]
	if cb == nil {
		cb = gobreaker.NewCircuitBreaker[struct{}](gobreaker.Settings{
			Name:        key,
			MaxRequests: 1,
			Timeout:     b.o.Open,
			ReadyToTrip: func(c gobreaker.Counts) bool { return c.ConsecutiveFailures >= b.o.Failures },
			IsExcluded: func(err error) bool {
				return IsPermanent(err) || errors.Is(err, context.Canceled) || errors.Is(err, ErrFenced) || errors.Is(err, ErrNoFallback) ||
					errors.Is(err, ErrFenceUnchecked) // Redis, not the target
			},
			OnStateChange: func(name string, from, to gobreaker.State) {
				if b.o.OnStateChange != nil {
					b.o.OnStateChange(name, from, to)
				}
			},
		})
		b.cbs[key] = cb
	}
	return cb
}

func (b *breaker) Deliver(ctx context.Context, d alert.Delivery) error {
	key := d.Target.Key()
	if b.o.Key != nil {
		if k := b.o.Key(d); k != "" {
			key = k
		}
	}
	cb := b.get(key)
	_, err := cb.Execute(func() (struct{}, error) { return struct{}{}, b.next.Deliver(ctx, d) })
	if errors.Is(err, gobreaker.ErrOpenState) || errors.Is(err, gobreaker.ErrTooManyRequests) {
		return &DelayError{After: b.o.Open / 5, Err: ErrParked}
	}
	return err
}
