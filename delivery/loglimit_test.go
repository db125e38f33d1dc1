package delivery

import (
	"bytes"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"
)

// A dead provider's failures make one line per channel and failure kind and
// window, then one summary line with how many more there were.
func TestLogLimiter(t *testing.T) {
	var buf bytes.Buffer
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	l := newLogLimiter(10*time.Second, zerolog.New(&buf))
	l.now = func() time.Time { return now }
	logged := 0
	for range 100000 {
		if l.allow("sms/timeout/retry", "Delivery retried") {
			logged++
		}
	}
	if l.allow("sms/breaker_open/retry", "Delivery retried") {
		logged++
	}
	if logged != 2 {
		t.Fatalf("%d lines for 100,001 failures of two kinds in one window; want 2", logged)
	}
	l.Flush(false) // the window has not ended: nothing yet
	if buf.Len() != 0 {
		t.Fatalf("summary before the window ended: %s", buf.String())
	}
	now = now.Add(11 * time.Second)
	l.Flush(false)
	if got := buf.String(); strings.Count(got, "\n") != 1 || !strings.Contains(got, `"more":99999`) || !strings.Contains(got, `"kind":"sms/timeout/retry"`) {
		t.Fatalf("summary: %s", got)
	}
	// A new window logs its first failure again.
	if !l.allow("sms/timeout/retry", "Delivery retried") {
		t.Fatal("the first failure of a new window was not logged")
	}
}

func TestFailureKind(t *testing.T) {
	for err, want := range map[error]string{
		gobreaker.ErrOpenState:                              "breaker_open",
		errors.Join(errors.New("x"), errors.ErrUnsupported): "error",
	} {
		if got := failureKind(err); got != want {
			t.Errorf("failureKind(%v) = %q, want %q", err, got, want)
		}
	}
}
