package delivery

import (
	"context"
	"errors"
	"net"
	"sync"
	"time"

	"github.com/rs/zerolog"
	"github.com/sony/gobreaker/v2"
)

// logLimiter keeps a dead provider or a dead fleet from writing a line per
// delivery: per channel kind and failure kind, the first failure of a window
// is logged, the rest are counted and summed up in one line when the window
// ends (Flush, every window while the engine runs, and when it stops).
type logLimiter struct {
	window time.Duration
	now    func() time.Time
	log    zerolog.Logger

	mu   sync.Mutex
	keys map[string]*failureWindow
}

type failureWindow struct {
	start      time.Time
	suppressed int
	msg        string
}

func newLogLimiter(window time.Duration, log zerolog.Logger) *logLimiter {
	return &logLimiter{window: window, now: time.Now, log: log, keys: map[string]*failureWindow{}}
}

// allow reports whether the event with this key should be logged now; an
// event it refuses is counted for the key's summary line.
func (l *logLimiter) allow(key, msg string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	w := l.keys[key]
	if w != nil && now.Sub(w.start) < l.window {
		w.suppressed++
		return false
	}
	if w != nil {
		l.summary(key, w)
	}
	l.keys[key] = &failureWindow{start: now, msg: msg}
	return true
}

// Flush writes one summary line per key with events refused in a window
// that has ended (or in any window, with all), and forgets those windows.
func (l *logLimiter) Flush(all bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	for k, w := range l.keys {
		if all || now.Sub(w.start) >= l.window {
			l.summary(k, w)
			delete(l.keys, k)
		}
	}
}

func (l *logLimiter) summary(key string, w *failureWindow) {
	if w.suppressed > 0 {
		l.log.Warn().Str("kind", key).Int("more", w.suppressed).Dur("within", l.window).
			Msg(w.msg + ": more of the same kind, not logged one by one")
	}
}

// run flushes every window until ctx ends, and once more then.
func (l *logLimiter) run(ctx context.Context) {
	t := time.NewTicker(l.window)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			l.Flush(true)
			return
		case <-t.C:
			l.Flush(false)
		}
	}
}

// failureKind names an error's kind for the log's limits: the breaker is
// open, a timeout, the network, or the error's type.
func failureKind(err error) string {
	var ne net.Error
	switch {
	case errors.Is(err, gobreaker.ErrOpenState), errors.Is(err, gobreaker.ErrTooManyRequests):
		return "breaker_open"
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.As(err, &ne):
		return "network"
	}
	return "error"
}
