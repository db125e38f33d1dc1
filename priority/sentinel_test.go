package priority_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// A Sentinel failover loses no answered alert. Writers enqueue alerts
// through a Sentinel-aware client while the master is killed (kill -9);
// the Sentinel promotes the replica; every alert whose Enqueue returned
// nil — before, during or after the failover — is on the new master, and
// alerts are taken again after it. Each acknowledged write waited (WAIT)
// until the replica had it; what could not be confirmed was an error, and
// its retry (same Idempotency-Key) is a duplicate of the one stored, never a
// second alert.
func TestSentinelFailoverLosesNothing(t *testing.T) {
	sen := testenv.RedisSentinel(t)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sen.Name, SentinelAddrs: []string{sen.Sentinel.Addr()},
		DialTimeout: 300 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 0})
	t.Cleanup(func() { rdb.Close() })
	q := priority.New(rdb, priority.Options{Prefix: "sent", WaitReplicas: 1, WaitTimeout: 500 * time.Millisecond})
	oldMaster := sen.MasterAddr(t)

	var mu sync.Mutex
	acked := map[alert.ID]string{} // id -> idempotency key
	var failed, notReplicated, afterFailover int
	var switched atomic.Bool
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Add(1)
		go func() { // ends when stop closes
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				key := fmt.Sprintf("w%d-%d", w, i)
				a := newAlert("failover "+key, alert.SeveritySevere, alert.UrgencyImmediate)
				// A failed attempt is retried with the same key, as a client would.
				for try := 0; try < 50; try++ {
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					res, err := q.Enqueue(ctx, priority.Plan{Alert: a, IdempotencyKey: key, Targets: sirens(2)})
					cancel()
					mu.Lock()
					if err == nil {
						if prev, dup := acked[res.ID]; dup && prev != key {
							t.Errorf("alert %s answered for keys %s and %s", res.ID, prev, key)
						}
						acked[res.ID] = key
						if switched.Load() {
							afterFailover++
						}
						mu.Unlock()
						break
					}
					failed++
					if errors.Is(err, priority.ErrNotReplicated) {
						notReplicated++
					}
					mu.Unlock()
					time.Sleep(50 * time.Millisecond)
				}
			}
		}()
	}
	time.Sleep(500 * time.Millisecond)
	sen.Master.Kill()
	go func() { // ends once the Sentinel names the new master
		sc := redis.NewSentinelClient(&redis.Options{Addr: sen.Sentinel.Addr()})
		defer sc.Close()
		for !switched.Load() {
			if a, err := sc.GetMasterAddrByName(context.Background(), sen.Name).Result(); err == nil && a[0]+":"+a[1] != oldMaster {
				switched.Store(true)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(20 * time.Second)
	for {
		mu.Lock()
		n := afterFailover
		mu.Unlock()
		if n >= 20 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alerts taken 20s after the master was killed (%d after the failover)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if sen.MasterAddr(t) == oldMaster {
		t.Fatal("the Sentinel did not fail over")
	}
	ctx := context.Background()
	lost := 0
	for id, key := range acked {
		if _, _, err := q.Alert(ctx, id); err != nil {
			lost++
			t.Errorf("alert %s (key %s) was answered, and is not on the new master: %v", id, key, err)
		}
	}
	t.Logf("%d alerts answered (%d after the failover), %d attempts failed and were retried (%d stored but not confirmed by the replica), %d lost",
		len(acked), afterFailover, failed, notReplicated, lost)
}
