// Package adapterstest is the conformance suite every channel adapter passes,
// in the spirit of watermill's pubsub tests: each adapter's test builds its
// adapter against real or faked endpoints and hands it to Run with a Harness
// that says what the far end received.
package adapterstest

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
)

// Harness connects the suite to one adapter under test.
type Harness struct {
	// New builds the adapter, logging to log.
	New func(t *testing.T, log zerolog.Logger) adapters.Adapter
	// Target is a reachable target that confirms deliveries.
	Target alert.Target
	// Silent is a reachable target that never confirms (an offline device):
	// delivering to it must fail retryably. Adapters whose provider confirms
	// every accepted request set Break instead.
	Silent *alert.Target
	// Break makes the far end fail: "error" (5xx), "hang" (no answer), or ""
	// (healthy again). With Break, the failure tests deliver to Target.
	Break func(mode string)
	// Invalid, if set, is a target the adapter must refuse permanently.
	Invalid *alert.Target
	// Received reports how many messages of msg for delivery id the far end got.
	Received func(id string, msg alert.Message) int
	// Secrets must never appear in logs above debug (phone numbers, tokens).
	Secrets []string
}

func delivery(t alert.Target, msg alert.Message) alert.Delivery {
	a := &alert.Alert{ID: alert.ID("conf-" + time.Now().Format("150405.000000")), Status: alert.StatusActual,
		Event: "Conformance", Severity: alert.SeverityExtreme, Urgency: alert.UrgencyImmediate, Headline: "Test"}
	return alert.Delivery{ID: alert.DeliveryID(a.ID, t, msg), Alert: a, Target: t, Message: msg, Expires: time.Now().Add(time.Minute)}
}

// Run runs the conformance suite.
func Run(t *testing.T, h Harness) {
	var logs bytes.Buffer
	log := zerolog.New(&logs).Level(zerolog.InfoLevel)
	a := h.New(t, log)

	t.Run("delivers the alert and its retraction", func(t *testing.T) {
		for _, msg := range []alert.Message{alert.MessageAlert, alert.MessageRetraction} {
			d := delivery(h.Target, msg)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := a.Deliver(ctx, d)
			cancel()
			if err != nil {
				t.Fatalf("Deliver(%s) = %v, want nil", msg, err)
			}
			if n := h.Received(d.ID, msg); n < 1 {
				t.Fatalf("far end received %d of %s %s, want ≥ 1", n, msg, d.ID)
			}
		}
	})
	failing := func(mode string) alert.Target {
		if h.Break != nil {
			h.Break(mode)
			return h.Target
		}
		return *h.Silent
	}
	healthy := func() {
		if h.Break != nil {
			h.Break("")
		}
	}
	t.Run("unconfirmed is a retryable error", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		defer healthy()
		err := a.Deliver(ctx, delivery(failing("error"), alert.MessageAlert))
		if err == nil || adapters.IsPermanent(err) {
			t.Fatalf("Deliver(failing far end) = %v, want a retryable error", err)
		}
	})
	if h.Invalid != nil {
		t.Run("invalid target is a permanent error", func(t *testing.T) {
			err := a.Deliver(context.Background(), delivery(*h.Invalid, alert.MessageAlert))
			if !adapters.IsPermanent(err) {
				t.Fatalf("Deliver(invalid) = %v, want a permanent error", err)
			}
		})
	}
	t.Run("honours context cancellation", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		defer healthy()
		target := failing("hang")
		start := time.Now()
		err := a.Deliver(ctx, delivery(target, alert.MessageAlert))
		if err == nil || time.Since(start) > time.Second {
			t.Fatalf("Deliver(cancelled) = %v after %v, want an error within ~50ms", err, time.Since(start))
		}
		if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "ack") {
			t.Logf("cancelled delivery returned %v", err)
		}
	})
	t.Run("no secret in logs above debug", func(t *testing.T) {
		for _, s := range h.Secrets {
			if s != "" && strings.Contains(logs.String(), s) {
				t.Fatalf("logs contain the secret %q:\n%s", s, logs.String())
			}
		}
	})
}
