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
// the kinds this queue has waited for (one slot: a gateway's urgent and
// bulk queues each take their own kinds' tokens) and wakes the workers of
// that kind waiting in this process. A token that comes while none of them
// waits is kept (pending) for the next: it may have come while a worker was
// claiming. A token taken by a busy instance wakes nobody elsewhere; its
// workers claim the work as they finish theirs.
type wakeup struct {
	once  sync.Once
	kinds map[alert.Kind]*kindWake
}

type kindWake struct {
	mu      sync.Mutex
	ch      chan struct{} // closed at the next wake
	waiters int
	pending bool // a wake came while nobody waited
	used    bool // a worker of this queue has waited for the kind
}

func (kw *kindWake) wake() {
	kw.mu.Lock()
	defer kw.mu.Unlock()
	if kw.waiters == 0 {
		kw.pending = true
		return
	}
	close(kw.ch)
	kw.ch = make(chan struct{})
}

func (w *wakeup) wait(ctx context.Context, q *Queue, kind alert.Kind, timeout time.Duration) error {
	w.once.Do(func() { w.start(q) })
	kw := w.kinds[kind]
	if kw == nil {
		return fmt.Errorf("wait: unknown channel kind %q", kind)
	}
	kw.mu.Lock()
	kw.used = true
	if kw.pending {
		kw.pending = false
		kw.mu.Unlock()
		return nil
	}
	kw.waiters++
	ch := kw.ch
	kw.mu.Unlock()
	defer func() {
		kw.mu.Lock()
		kw.waiters--
		kw.mu.Unlock()
	}()
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
		go w.read(q.rdb, sh)
	}
}

// read blocks on the shard's wake lists of the kinds waited for, a second at
// a time (so a kind waited for later joins within a second).
func (w *wakeup) read(rdb redis.UniversalClient, sh shard) {
	ctx := context.Background()
	byKey := map[string]*kindWake{}
	for {
		var keys []string
		for _, k := range alert.Kinds {
			kw := w.kinds[k]
			kw.mu.Lock()
			used := kw.used
			kw.mu.Unlock()
			if used {
				key := sh.lane(k).wake
				byKey[key] = kw
				keys = append(keys, key)
			}
		}
		if len(keys) == 0 {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		kv, err := rdb.BLPop(ctx, time.Second, keys...).Result()
		switch {
		case err == nil:
			byKey[kv[0]].wake()
		case errors.Is(err, redis.Nil):
		case errors.Is(err, redis.ErrClosed):
			return
		default:
			time.Sleep(100 * time.Millisecond) // Redis away: the workers' claims retry too
		}
	}
}
