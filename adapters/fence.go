package adapters

import (
	"context"
	"sync/atomic"

	"github.com/tocsin-alert/tocsin/alert"
)

type attemptsKey struct{}

// WithAttempts returns a context under which Fence counts every call that
// reaches the adapter, and a function that reads the count. The worker uses it
// to tell a target that was never attempted (it must not be told of a
// retraction) from one that may have been reached.
func WithAttempts(ctx context.Context) (context.Context, func() int) {
	n := new(atomic.Int32)
	return context.WithValue(ctx, attemptsKey{}, n), func() int { return int(n.Load()) }
}

// Fence returns the innermost decorator: right before each call to the
// adapter — after any pacing wait, before every retry — it runs check (the
// gateway's fence check) and stops with check's error, permanently, if it
// fails. Each call it lets through is counted under WithAttempts.
func Fence(check func(ctx context.Context, d alert.Delivery) error) Decorator {
	return func(next Adapter) Adapter {
		return Func(func(ctx context.Context, d alert.Delivery) error {
			if err := check(ctx, d); err != nil {
				return Permanent(err)
			}
			if err := ctx.Err(); err != nil {
				return err
			}
			if n, ok := ctx.Value(attemptsKey{}).(*atomic.Int32); ok {
				n.Add(1)
			}
			return next.Deliver(ctx, d)
		})
	}
}
