package priority_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// A Redis Cluster failover loses no answered alert. Four writers, each a
// principal of its own (so their alerts live in shards on different
// masters), enqueue alerts with wait_replicas 1 while the master of the
// first writer's shard is killed (kill -9); its replica takes over; every
// alert whose Enqueue returned nil — before, during or after — is found,
// claimed and finished; a retry after an error (same Idempotency-Key) is a
// duplicate of the alert stored, never a second one.
func TestClusterFailoverLosesNothing(t *testing.T) {
	c := testenv.RedisClusterReplicated(t)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs(),
		DialTimeout: 300 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second, MaxRetries: 0})
	t.Cleanup(func() { rdb.Close() })
	q := priority.New(rdb, priority.Options{Prefix: "clu", Shards: 12, WaitReplicas: 1, WaitTimeout: 500 * time.Millisecond})
	ctx := context.Background()
	principals := []string{"leitstelle", "feuerwehr", "polizei", "thw"}
	victim, err := rdb.MasterForKey(ctx, q.HomeKey(principals[0]))
	if err != nil {
		t.Fatal(err)
	}
	oldMaster := victim.Options().Addr

	var mu sync.Mutex
	acked := map[alert.ID]string{} // id -> idempotency key
	var failed, notReplicated, afterFailover int
	switched := make(chan struct{})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w, p := range principals {
		wg.Add(1)
		go func() { // ends when stop closes
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				time.Sleep(20 * time.Millisecond) // a steady stream, not a benchmark
				key := fmt.Sprintf("w%d-%d", w, i)
				a := newAlert("failover "+key, alert.SeveritySevere, alert.UrgencyImmediate)
				a.Principal = p
				for try := 0; try < 100; try++ {
					select {
					case <-stop: // a shard whose new master has no replica yet refuses (ErrNotReplicated)
						return
					default:
					}
					ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
					res, err := q.Enqueue(ctx, priority.Plan{Alert: a, IdempotencyKey: key, Targets: sirens(2)})
					cancel()
					mu.Lock()
					if err == nil {
						if prev, dup := acked[res.ID]; dup && prev != key {
							t.Errorf("alert %s answered for keys %s and %s", res.ID, prev, key)
						}
						acked[res.ID] = key
						select {
						case <-switched:
							afterFailover++
						default:
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
	killed := time.Now()
	c.Server(oldMaster).Kill()
	go func() { // ends once the cluster names another master for the shard
		for {
			rdb.ReloadState(context.Background())
			if m, err := rdb.MasterForKey(context.Background(), q.HomeKey(principals[0])); err == nil && m.Options().Addr != oldMaster {
				t.Logf("the replica %s took over %v after the kill", m.Options().Addr, time.Since(killed).Round(time.Millisecond))
				close(switched)
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := afterFailover
		mu.Unlock()
		if n >= 20 {
			t.Logf("20 alerts answered after the failover, %v after the kill", time.Since(killed).Round(time.Millisecond))
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no alerts taken 30s after the master was killed (%d after the failover)", n)
		}
		time.Sleep(100 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	t.Logf("writers stopped %v after the kill", time.Since(killed).Round(time.Millisecond))

	lost := 0
	for id, key := range acked {
		if _, _, err := q.Alert(ctx, id); err != nil {
			lost++
			t.Errorf("alert %s (key %s) was answered, and is not in the cluster now: %v", id, key, err)
		}
	}
	// Every answered alert's jobs are there too: claim and finish them all.
	jobs := map[alert.ID]int{}
	for {
		j, err := q.Claim(ctx, alert.KindSiren, 0)
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			break
		}
		jobs[j.AlertID]++
		out := map[string]alert.State{}
		for _, tg := range j.Targets {
			out[tg] = alert.StateDelivered
		}
		if err := q.Finish(ctx, j, out, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("claimed everything %v after the kill", time.Since(killed).Round(time.Millisecond))
	for id := range acked {
		if jobs[id] != 1 {
			t.Errorf("alert %s: %d jobs claimed, want 1", id, jobs[id])
		}
	}
	t.Logf("%d alerts answered (%d after the failover), %d attempts failed and were retried (%d stored but not confirmed by the replica), %d lost",
		len(acked), afterFailover, failed, notReplicated, lost)
}

// An upgrade in place keeps the maintenance windows and trigger decisions a
// gateway from before the shards kept under their old names: a window keeps
// its time left (a panel being serviced must not sound), and moving twice
// moves nothing more.
func TestMoveLegacyKeys(t *testing.T) {
	srv := testenv.Redis(t)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	ctx := context.Background()
	until := time.Now().Add(time.Hour).UTC().Truncate(time.Second)
	window := fmt.Sprintf(`{"source":"school-button","reason":"panel replaced","by":"operator:anna","since":"%s","until":"%s"}`,
		time.Now().UTC().Format(time.RFC3339), until.Format(time.RFC3339))
	rdb.Set(ctx, "old:maint:school-button", window, time.Hour)
	rdb.LPush(ctx, "old:audit", `{"source":"school-button","event_id":"e1","status":"accepted"}`)
	q := priority.New(rdb, priority.Options{Prefix: "old"})
	if m, _ := q.MaintenanceOf(ctx, "school-button"); m != nil {
		t.Fatal("the old window is found before the move: the test reads the old key")
	}
	n, err := q.MoveLegacyKeys(ctx)
	if err != nil || n != 2 {
		t.Fatalf("MoveLegacyKeys = %d, %v; want 2 keys", n, err)
	}
	m, err := q.MaintenanceOf(ctx, "school-button")
	if err != nil || m == nil || !m.Until.Equal(until) {
		t.Fatalf("after the move the window is %+v, %v; want until %v", m, err, until)
	}
	if log, _ := q.AuditLog(ctx, 10, false); len(log) != 1 || log[0].EventID != "e1" {
		t.Errorf("trigger decisions after the move: %+v", log)
	}
	if n, err := q.MoveLegacyKeys(ctx); err != nil || n != 0 {
		t.Errorf("a second move = %d, %v; want nothing", n, err)
	}
}
