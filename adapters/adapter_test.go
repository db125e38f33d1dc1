package adapters_test

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
)

func delivery(target string, expires time.Duration) alert.Delivery {
	a := &alert.Alert{ID: "a1"}
	t := alert.Target{Kind: alert.KindSiren, ID: target}
	return alert.Delivery{ID: alert.DeliveryID(a.ID, t, alert.MessageAlert), Alert: a, Target: t,
		Message: alert.MessageAlert, Expires: time.Now().Add(expires)}
}

// failing fails n times with err, then succeeds.
func failing(n int32, err error) (adapters.Adapter, *atomic.Int32) {
	var calls atomic.Int32
	return adapters.Func(func(ctx context.Context, d alert.Delivery) error {
		if calls.Add(1) <= n {
			return err
		}
		return nil
	}), &calls
}

func TestRetry(t *testing.T) {
	boom := errors.New("boom")
	fast := adapters.RetryOptions{Initial: time.Millisecond, Max: 5 * time.Millisecond}
	t.Run("retries until success", func(t *testing.T) {
		a, calls := failing(3, boom)
		if err := adapters.Retry(fast)(a).Deliver(context.Background(), delivery("s1", time.Minute)); err != nil || calls.Load() != 4 {
			t.Fatalf("Deliver = %v after %d calls, want nil after 4", err, calls.Load())
		}
	})
	t.Run("permanent stops at once", func(t *testing.T) {
		a, calls := failing(3, adapters.Permanent(boom))
		err := adapters.Retry(fast)(a).Deliver(context.Background(), delivery("s1", time.Minute))
		if !errors.Is(err, boom) || !adapters.IsPermanent(err) || calls.Load() != 1 {
			t.Fatalf("Deliver = %v after %d calls, want the permanent error after 1", err, calls.Load())
		}
	})
	t.Run("fence stops retries and counts attempts", func(t *testing.T) {
		a, calls := failing(100, boom)
		fenced := func(ctx context.Context, d alert.Delivery) error {
			if calls.Load() >= 2 {
				return adapters.ErrFenced
			}
			return nil
		}
		ctx, attempts := adapters.WithAttempts(context.Background())
		err := adapters.Chain(a, adapters.Retry(fast), adapters.Fence(fenced)).Deliver(ctx, delivery("s1", time.Minute))
		if !errors.Is(err, adapters.ErrFenced) || calls.Load() != 2 || attempts() != 2 {
			t.Fatalf("Deliver = %v after %d calls, %d attempts; want ErrFenced after 2", err, calls.Load(), attempts())
		}
	})
	t.Run("fenced before the first attempt is never attempted", func(t *testing.T) {
		a, calls := failing(0, nil)
		ctx, attempts := adapters.WithAttempts(context.Background())
		err := adapters.Chain(a, adapters.Retry(fast), adapters.Fence(func(context.Context, alert.Delivery) error { return adapters.ErrFenced })).
			Deliver(ctx, delivery("s1", time.Minute))
		if !errors.Is(err, adapters.ErrFenced) || calls.Load() != 0 || attempts() != 0 {
			t.Fatalf("Deliver = %v, %d calls, %d attempts; want ErrFenced and none", err, calls.Load(), attempts())
		}
	})
	t.Run("honours Retry-After", func(t *testing.T) {
		a, _ := failing(1, adapters.RetryAfter(boom, 150*time.Millisecond))
		start := time.Now()
		if err := adapters.Retry(fast)(a).Deliver(context.Background(), delivery("s1", time.Minute)); err != nil {
			t.Fatal(err)
		}
		if d := time.Since(start); d < 150*time.Millisecond {
			t.Fatalf("second attempt after %v, want ≥ 150ms", d)
		}
	})
	t.Run("gives up at expiry", func(t *testing.T) {
		a, _ := failing(1000, boom)
		start := time.Now()
		err := adapters.Retry(fast)(a).Deliver(context.Background(), delivery("s1", 50*time.Millisecond))
		if !errors.Is(err, boom) || time.Since(start) > time.Second {
			t.Fatalf("Deliver = %v after %v, want boom soon after expiry", err, time.Since(start))
		}
	})
	t.Run("stops on context end", func(t *testing.T) {
		a, _ := failing(1000, boom)
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
		defer cancel()
		if err := adapters.Retry(fast)(a).Deliver(ctx, delivery("s1", time.Minute)); err == nil {
			t.Fatal("Deliver = nil, want an error")
		}
	})
}

// Promise 8: an open breaker parks a delivery (it is retried later and
// succeeds), and one target's breaker costs other targets nothing.
func TestBreakerParksNeverDrops(t *testing.T) {
	var down atomic.Bool
	down.Store(true)
	var calls atomic.Int32
	inner := adapters.Func(func(ctx context.Context, d alert.Delivery) error {
		if d.Target.ID == "broken" {
			calls.Add(1)
			if down.Load() {
				return errors.New("no answer")
			}
		}
		return nil
	})
	a := adapters.Chain(inner,
		adapters.Retry(adapters.RetryOptions{Initial: time.Millisecond, Max: 10 * time.Millisecond}),
		adapters.Breaker(adapters.BreakerOptions{Failures: 3, Open: 200 * time.Millisecond}))

	done := make(chan error, 1)
	go func() { done <- a.Deliver(context.Background(), delivery("broken", time.Minute)) }()
	time.Sleep(100 * time.Millisecond)
	if n := calls.Load(); n != 3 {
		t.Fatalf("%d calls reached the broken target, want 3 before its breaker opened", n)
	}
	// Another target is not held up by the open breaker.
	start := time.Now()
	if err := a.Deliver(context.Background(), delivery("fine", time.Minute)); err != nil || time.Since(start) > 20*time.Millisecond {
		t.Fatalf("healthy target: %v after %v", err, time.Since(start))
	}
	down.Store(false)
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("parked delivery = %v, want delivered once the target recovered", err)
		}
	case <-time.After(3 * time.Second):
		t.Fatal("parked delivery never resumed")
	}
}

func TestPermanentErrorsDoNotTripBreaker(t *testing.T) {
	var calls atomic.Int32
	inner := adapters.Func(func(ctx context.Context, d alert.Delivery) error {
		calls.Add(1)
		return adapters.Permanent(errors.New("invalid target"))
	})
	a := adapters.Breaker(adapters.BreakerOptions{Failures: 2})(inner)
	for range 5 {
		a.Deliver(context.Background(), delivery("s1", time.Minute))
	}
	if calls.Load() != 5 {
		t.Fatalf("%d of 5 calls reached the adapter; permanent errors must not open the breaker", calls.Load())
	}
}

// Fence counts a call as an attempt unless the adapter says it sent nothing,
// and WithInflight waits for a call that outlived its delivery's context.
func TestAttemptsAndInflight(t *testing.T) {
	notSent := adapters.Func(func(ctx context.Context, d alert.Delivery) error {
		return adapters.NotAttempted(context.Canceled)
	})
	late := make(chan struct{})
	sentLate := adapters.Func(func(ctx context.Context, d alert.Delivery) error {
		done := adapters.Track(ctx)
		go func() { <-late; done() }() // the request still on its way
		return context.Canceled
	})
	open := func(context.Context, alert.Delivery) error { return nil }
	for _, tt := range []struct {
		name string
		a    adapters.Adapter
		want int
	}{{"gave up before sending", notSent, 0}, {"cut short on the wire", sentLate, 1}} {
		ctx, attempts := adapters.WithAttempts(context.Background())
		ctx, wait := adapters.WithInflight(ctx)
		adapters.Fence(open)(tt.a).Deliver(ctx, alert.Delivery{})
		if attempts() != tt.want {
			t.Errorf("%s: %d attempts, want %d", tt.name, attempts(), tt.want)
		}
		waited := make(chan struct{})
		go func() { wait(); close(waited) }()
		if tt.want == 1 {
			select {
			case <-waited:
				t.Fatalf("%s: WithInflight did not wait for the call still on its way", tt.name)
			case <-time.After(50 * time.Millisecond):
			}
			close(late)
		}
		select {
		case <-waited:
		case <-time.After(time.Second):
			t.Fatalf("%s: WithInflight still waiting after the call ended", tt.name)
		}
	}
}

// A fence that cannot be read (Redis away, failing over) sends nothing and
// is retried: not permanent, not an attempt, and no failure of the target
// for its breaker. A fenced alert stops for good.
func TestFenceUncheckedIsRetried(t *testing.T) {
	var calls atomic.Int32
	inner := adapters.Func(func(ctx context.Context, d alert.Delivery) error { calls.Add(1); return nil })
	redisDown := errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	var check atomic.Pointer[error]
	set := func(err error) { check.Store(&err) }
	set(redisDown)
	a := adapters.Chain(inner, adapters.Breaker(adapters.BreakerOptions{Failures: 1}), adapters.Fence(func(context.Context, alert.Delivery) error {
		return *check.Load()
	}))
	ctx, attempts := adapters.WithAttempts(context.Background())
	for range 3 {
		err := a.Deliver(ctx, delivery("s1", time.Minute))
		if err == nil || adapters.IsPermanent(err) || !adapters.IsNotAttempted(err) || !errors.Is(err, redisDown) {
			t.Fatalf("Deliver with the fence unreadable = %v; want a retryable, not-attempted error", err)
		}
	}
	if attempts() != 0 || calls.Load() != 0 {
		t.Fatalf("%d attempts, %d calls; want none", attempts(), calls.Load())
	}
	set(nil)
	if err := a.Deliver(ctx, delivery("s1", time.Minute)); err != nil || calls.Load() != 1 {
		t.Fatalf("with Redis back: %v, %d calls; want the delivery made (the breaker stayed closed)", err, calls.Load())
	}
	set(adapters.ErrFenced)
	if err := a.Deliver(ctx, delivery("s1", time.Minute)); !adapters.IsPermanent(err) {
		t.Fatalf("fenced: %v; want permanent", err)
	}
}
