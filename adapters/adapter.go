// Package adapters defines the one interface every channel kind implements and
// the decorators wrapped around every adapter in one place: a circuit breaker
// per target that parks work instead of dropping it, and retry with exponential
// backoff and jitter that re-checks the fence before each new attempt.
//
// Each channel kind is a package below this one (adapters/siren, …).
package adapters

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// Adapter delivers one delivery to its target.
//
// Deliver returns nil only when the target confirmed it (a siren's ack, a
// provider's acceptance). Every other outcome is an error: wrap it with
// Permanent when retrying cannot help (a rejected target), or with RetryAfter
// when the provider said when to come back. Deliver must return promptly once
// ctx is done. It must be safe for concurrent use, and it must never log a phone
// number or secret above debug level.
type Adapter interface {
	Deliver(ctx context.Context, d alert.Delivery) error
}

// Func adapts a function to Adapter.
type Func func(ctx context.Context, d alert.Delivery) error

// Deliver calls f.
func (f Func) Deliver(ctx context.Context, d alert.Delivery) error { return f(ctx, d) }

// Decorator wraps an adapter with behaviour every channel kind shares.
type Decorator func(Adapter) Adapter

// Chain wraps a in ds; the first decorator is the outermost.
func Chain(a Adapter, ds ...Decorator) Adapter {
	for i := len(ds) - 1; i >= 0; i-- {
		a = ds[i](a)
	}
	return a
}

type permanentError struct{ err error }

func (e permanentError) Error() string { return e.err.Error() }
func (e permanentError) Unwrap() error { return e.err }

// Permanent marks err as not worth retrying.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return permanentError{err}
}

// IsPermanent reports whether err was marked Permanent.
func IsPermanent(err error) bool {
	var p permanentError
	return errors.As(err, &p)
}

type notAttemptedError struct{ err error }

func (e notAttemptedError) Error() string { return e.err.Error() }
func (e notAttemptedError) Unwrap() error { return e.err }

// NotAttempted marks err as returned before anything was handed to the
// provider or device: the target was not reached by this call, so Fence does
// not count it as an attempt (and the target is owed no retraction for it).
func NotAttempted(err error) error {
	if err == nil {
		return nil
	}
	return notAttemptedError{err}
}

// IsNotAttempted reports whether err was marked NotAttempted.
func IsNotAttempted(err error) bool {
	var n notAttemptedError
	return errors.As(err, &n)
}

// DelayError asks Retry to wait at least After before the next attempt: a
// provider's Retry-After, or an open breaker's remaining time.
type DelayError struct {
	After time.Duration
	Err   error
}

func (e *DelayError) Error() string { return fmt.Sprintf("%v (retry after %v)", e.Err, e.After) }
func (e *DelayError) Unwrap() error { return e.Err }

// RetryAfter wraps err with the wait a provider asked for.
func RetryAfter(err error, after time.Duration) error { return &DelayError{After: after, Err: err} }

// ErrParked is returned (inside a DelayError) while a target's breaker is open:
// the delivery waits; it is not failed.
var ErrParked = errors.New("breaker open: delivery parked")

// ErrExpired is returned (NotAttempted and Permanent) by an adapter that
// refuses a delivery too close to its expiry to be worth sending: nothing
// went out, and the target reads expired, not failed.
var ErrExpired = errors.New("expired before it could be sent")

// ErrFenced is returned by Retry when the alert was retracted between attempts.
var ErrFenced = errors.New("alert retracted: no further attempts")
