package priority

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
)

// wakeup lets the workers of a process wait on a kind's wake list in every
// shard on Redis Cluster, where one blocking read cannot name keys of
// several slots: one reader per shard blocks on the shard's wake lists of
// every kind (one slot) and wakes the workers of that kind waiting in this
// process.
type wakeup struct {
	once  sync.Once
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
	w.once.Do(func() { w.start(q) })
	kw := w.kinds[kind]
	if kw == nil {
		return fmt.Errorf("wait: unknown channel kind %q", kind)
	}
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

// start starts the readers, one per shard; they run until the Redis client
// is closed.
func (w *wakeup) start(q *Queue) {
	w.kinds = map[alert.Kind]*kindWake{}
	for _, k := range alert.Kinds {
		w.kinds[k] = &kindWake{ch: make(chan struct{})}
	}
	for _, sh := range q.shards {
		byKey := map[string]*kindWake{}
		var keys []string
		for _, k := range alert.Kinds {
			key := sh.lane(k).wake
			byKey[key] = w.kinds[k]
			keys = append(keys, key)
		}
		go read(q.rdb, keys, byKey)
	}
}

func read(rdb redis.UniversalClient, keys []string, byKey map[string]*kindWake) {
	ctx := context.Background()
	for {
		kv, err := rdb.BLPop(ctx, 5*time.Second, keys...).Result()
		switch {
		case err == nil:
			kw := byKey[kv[0]]
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
