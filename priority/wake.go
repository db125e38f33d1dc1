package priority

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
)

// wakeup lets the workers of a process wait on a kind's wake list in every
// shard on Redis Cluster, where one blocking read cannot name keys of
// several slots: one reader per kind and shard blocks on the shard's list
// and wakes every worker of the kind waiting in this process.
type wakeup struct {
	mu    sync.Mutex
	kinds map[alert.Kind]*kindWake
}

type kindWake struct {
	mu   sync.Mutex
	ch   chan struct{} // closed at the next wake
	last time.Time     // when the last wake came
}

// recent is how long after a wake a worker that starts waiting goes back to
// claim at once: the wake may have come while it was claiming.
const recent = 20 * time.Millisecond

func (w *wakeup) wait(ctx context.Context, q *Queue, kind alert.Kind, timeout time.Duration) error {
	kw := w.start(q, kind)
	kw.mu.Lock()
	ch, last := kw.ch, kw.last
	kw.mu.Unlock()
	if time.Since(last) < recent {
		return nil
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-ch:
	case <-t.C:
	case <-ctx.Done():
		return ctx.Err()
	}
	return nil
}

// start returns kind's wake, starting its readers the first time. They run
// until the Redis client is closed.
func (w *wakeup) start(q *Queue, kind alert.Kind) *kindWake {
	w.mu.Lock()
	defer w.mu.Unlock()
	if kw, ok := w.kinds[kind]; ok {
		return kw
	}
	if w.kinds == nil {
		w.kinds = map[alert.Kind]*kindWake{}
	}
	kw := &kindWake{ch: make(chan struct{})}
	w.kinds[kind] = kw
	for _, sh := range q.shards {
		go kw.read(q.rdb, sh.lane(kind).wake)
	}
	return kw
}

func (kw *kindWake) read(rdb redis.UniversalClient, key string) {
	ctx := context.Background()
	for {
		err := rdb.BLPop(ctx, 5*time.Second, key).Err()
		switch {
		case err == nil:
			kw.mu.Lock()
			close(kw.ch)
			kw.ch, kw.last = make(chan struct{}), time.Now()
			kw.mu.Unlock()
		case errors.Is(err, redis.Nil):
		case errors.Is(err, redis.ErrClosed):
			return
		default:
			time.Sleep(100 * time.Millisecond) // Redis away: the workers' claims retry too
		}
	}
}
