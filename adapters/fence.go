package adapters

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/tocsin-alert/tocsin/alert"
)

type attemptsKey struct{}

type inflightKey struct{}

// WithInflight returns a context under which calls that outlive their
// context register (Track), and a function that waits until they have all
// ended. A provider request already on its way cannot be recalled when a
// delivery is cut short; the worker waits for it before recording the job's
// outcomes, so the target's retraction is never queued while the original
// may still arrive after it.
func WithInflight(ctx context.Context) (context.Context, func()) {
	wg := new(sync.WaitGroup)
	return context.WithValue(ctx, inflightKey{}, wg), wg.Wait
}

// Track registers a call that may outlive ctx; done must be called when it
// has ended.
func Track(ctx context.Context) (done func()) {
	if wg, ok := ctx.Value(inflightKey{}).(*sync.WaitGroup); ok {
		wg.Add(1)
		return wg.Done
	}
	return func() {}
}

// WithAttempts returns a context under which Fence counts every call that
// reaches the adapter, and a function that reads the count. The worker uses it
// to tell a target that was never attempted (it must not be told of a
// retraction) from one that may have been reached.
func WithAttempts(ctx context.Context) (context.Context, func() int) {
	n := new(atomic.Int32)
	return context.WithValue(ctx, attemptsKey{}, n), func() int { return int(n.Load()) }
}

// ErrFenceUnchecked: the fence could not be read (Redis away), so nothing
// was sent. It says nothing about the target: breakers do not count it.
var ErrFenceUnchecked = errors.New("fence not checked")

// Fence returns the innermost decorator: right before each call to the
// adapter — after any pacing wait, before every retry — it runs check (the
// gateway's fence check) and stops, permanently, when the alert is fenced
// (ErrFenced). A check that could not be made (Redis away, failing over)
// sends nothing and is retried: nothing goes out unchecked, and a Redis blip
// never turns a target into a failed one. Each call it lets through is
// counted under WithAttempts.
func Fence(check func(ctx context.Context, d alert.Delivery) error) Decorator {
	return func(next Adapter) Adapter {
		return Func(func(ctx context.Context, d alert.Delivery) error {
			if err := check(ctx, d); errors.Is(err, ErrFenced) {
				return Permanent(err)
			} else if err != nil {
				return NotAttempted(fmt.Errorf("%w: %w", ErrFenceUnchecked, err))
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			n, counted := ctx.Value(attemptsKey{}).(*atomic.Int32)
			if counted {
				n.Add(1)
			}
			err := next.Deliver(ctx, d)
			if counted && IsNotAttempted(err) {
				n.Add(-1) // the adapter gave up before sending anything
			}
			return err
		})
	}
}
