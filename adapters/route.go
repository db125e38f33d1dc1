package adapters

import (
	"context"
	"errors"
	"fmt"
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
	// Rate is the sender's sends per second.
	Rate float64
}

// Router is implemented by adapters whose deliveries share a provider
// endpoint or a paced sender. Adapters that do not implement it get a breaker
// per target and no pacing.
type Router interface {
	Route(d alert.Delivery) Route
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
// gateway instance (priority.Queue.Reserve).
type Reserver interface {
	Reserve(ctx context.Context, sender string, rate float64) (time.Duration, error)
}

// PaceHeadroom is the share of a sender's configured rate that Pace uses.
// Requests leave on schedule but reach the provider with network and
// scheduling jitter; at 100/s one late request followed by punctual ones is
// enough for the provider to see 102 in one second. 3% headroom absorbs
// ~30ms of jitter per second (BENCHMARKS.md, SMS pacing).
const PaceHeadroom = 0.97

// Pace returns a decorator that waits for the sender's next slot before each
// attempt, so no sender ever exceeds its rate: the backlog waits on our side,
// where a retraction can still stop it (Fence runs after the wait).
func Pace(r Reserver, route func(alert.Delivery) Route) Decorator {
	return func(next Adapter) Adapter {
		return Func(func(ctx context.Context, d alert.Delivery) error {
			rt := route(d)
			if rt.Sender == "" || rt.Rate <= 0 {
				return next.Deliver(ctx, d)
			}
			wait, err := r.Reserve(ctx, rt.Sender, rt.Rate*PaceHeadroom)
			if err != nil {
				return fmt.Errorf("pace: %w", err)
			}
			if wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return ctx.Err()
				case <-t.C:
				}
			}
			return next.Deliver(ctx, d)
		})
	}
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
