package adapters

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// RetryOptions tune Retry.
type RetryOptions struct {
	// Initial is the first backoff (250ms); each next one doubles up to Max (5s).
	Initial, Max time.Duration
	// Hold, if set, bounds how long Retry keeps a delivery: when the next
	// attempt would start later than Hold after the first, Retry returns a
	// DeferError instead of waiting, and the worker hands the delivery back
	// to the queue (a dead target then waits in Redis, not in a worker).
	Hold time.Duration
	// OnRetry is told of each failed attempt that will be retried.
	OnRetry func(d alert.Delivery, attempt int, err error, wait time.Duration)
}

// DeferError is Retry's answer for a delivery it could not make within its
// hold: try it again after After, from the queue. Err is the last attempt's
// error.
type DeferError struct {
	After time.Duration
	Err   error
}

func (e *DeferError) Error() string { return fmt.Sprintf("deferred for %v: %v", e.After, e.Err) }
func (e *DeferError) Unwrap() error { return e.Err }

// Retry returns a decorator that retries a delivery with exponential backoff
// and full jitter until it succeeds, fails permanently, its context ends, it
// expires (d.Expires) or its hold is up (DeferError). A DelayError's wait is
// honoured as a lower bound. The fence is checked by the Fence decorator
// inside it, before every attempt.
func Retry(o RetryOptions) Decorator {
	if o.Initial == 0 {
		o.Initial = 250 * time.Millisecond
	}
	if o.Max == 0 {
		o.Max = 5 * time.Second
	}
	return func(next Adapter) Adapter {
		return Func(func(ctx context.Context, d alert.Delivery) error {
			backoff := o.Initial
			start := time.Now()
			for attempt := 1; ; attempt++ {
				err := next.Deliver(ctx, d)
				if err == nil || IsPermanent(err) || ctx.Err() != nil {
					return err
				}
				wait := time.Duration(rand.Int64N(int64(backoff)) + 1)
				var de *DelayError
				if errors.As(err, &de) && de.After > wait {
					wait = de.After
				}
				backoff = min(backoff*2, o.Max)
				if !d.Expires.IsZero() && time.Now().Add(wait).After(d.Expires) {
					return err
				}
				if o.Hold > 0 && time.Since(start)+wait > o.Hold {
					return &DeferError{After: wait, Err: err}
				}
				if o.OnRetry != nil {
					o.OnRetry(d, attempt, err, wait)
				}
				t := time.NewTimer(wait)
				select {
				case <-ctx.Done():
					t.Stop()
					return err
				case <-t.C:
				}
			}
		})
	}
}
