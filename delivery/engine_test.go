package delivery_test

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/delivery"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// The Engine turns each delivery's result into its target's ledger state,
// and a retraction cuts it short, against a real Redis and a real
// three-master Redis Cluster. Four sirens: "ok" acks, "broken" fails for
// good, "dead" never answers (held, handed back to the queue for later),
// "slow" is still sending when the alert is retracted. After the
// retraction no original reaches the adapter again; each siren ends in the
// state the outcome rules give it (delivered; failed; failed, as attempted;
// failed, cut short) and, every one of them having been attempted, each gets
// its retraction.
func TestEngineOutcomes(t *testing.T) {
	t.Run("redis", func(t *testing.T) {
		srv := testenv.Redis(t)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		t.Cleanup(func() { rdb.Close() })
		engineOutcomes(t, rdb, 1)
	})
	t.Run("cluster", func(t *testing.T) {
		c := testenv.RedisCluster(t, 3)
		rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
		t.Cleanup(func() { rdb.Close() })
		engineOutcomes(t, rdb, 6)
	})
}

func engineOutcomes(t *testing.T, rdb redis.UniversalClient, shards int) {
	// One target per job: each siren's job ends on its own.
	q := priority.New(rdb, priority.Options{Prefix: "eng", Lease: time.Second, Shards: shards, BatchSize: 1})
	var fenced atomic.Bool
	var mu sync.Mutex
	var afterFence []string
	slowStarted := make(chan struct{})
	var once sync.Once
	siren := adapters.Func(func(ctx context.Context, d alert.Delivery) error {
		if d.Message == alert.MessageRetraction {
			return nil
		}
		if fenced.Load() {
			mu.Lock()
			afterFence = append(afterFence, d.Target.ID)
			mu.Unlock()
		}
		switch d.Target.ID {
		case "ok":
			return nil
		case "broken":
			return adapters.Permanent(errors.New("siren reports a blown horn"))
		case "dead":
			return errors.New("no ack")
		}
		once.Do(func() { close(slowStarted) })
		<-ctx.Done() // "slow": sending until cut short
		return context.Cause(ctx)
	})
	e := delivery.New(delivery.Deps{
		Queue:    q,
		Adapters: map[alert.Kind]adapters.Adapter{alert.KindSiren: siren},
		Retry:    adapters.RetryOptions{Initial: 20 * time.Millisecond, Max: 50 * time.Millisecond, Hold: 200 * time.Millisecond},
		Breaker:  adapters.BreakerOptions{Failures: 1000, Open: time.Second},
		Workers:  4, UrgentWorkers: 2, RetryInitial: 300 * time.Millisecond, RetryMax: time.Second,
		Log: zerolog.Nop(),
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.Run(ctx, 2*time.Second); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	a := &alert.Alert{ID: alert.ID(fmt.Sprintf("eng-%d", time.Now().UnixNano())), Principal: "leitstelle",
		Status: alert.StatusActual, MsgType: "Alert", Event: "Gas", Severity: alert.SeverityExtreme, Urgency: alert.UrgencyImmediate,
		Zones: []string{"z"}, Sent: time.Now(), Expires: time.Now().Add(time.Hour), Priority: alert.PriorityOf(alert.SeverityExtreme, alert.UrgencyImmediate)}
	var targets []alert.Target
	for _, id := range []string{"ok", "broken", "dead", "slow"} {
		targets = append(targets, alert.Target{Kind: alert.KindSiren, ID: id})
	}
	bg := context.Background()
	if _, err := q.Enqueue(bg, priority.Plan{Alert: a, Targets: targets}); err != nil {
		t.Fatal(err)
	}
	states := func() map[string]priority.DeliveryState {
		ds, err := q.Deliveries(bg, a.ID)
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]priority.DeliveryState{}
		for _, d := range ds {
			out[d.Target.ID] = d
		}
		return out
	}
	eventually(t, 5*time.Second, "ok delivered, broken failed, dead waiting to retry, slow sending", func() bool {
		select {
		case <-slowStarted:
		default:
			return false
		}
		s := states()
		return s["ok"].State == alert.StateDelivered && s["broken"].State == alert.StateFailed && s["dead"].State == alert.StateRetry
	})
	fenced.Store(true)
	if _, err := q.Retract(bg, a.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	want := map[string]alert.State{"ok": alert.StateDelivered, "broken": alert.StateFailed, "dead": alert.StateFailed, "slow": alert.StateFailed}
	eventually(t, 10*time.Second, "every siren in its final state with its retraction delivered", func() bool {
		s := states()
		for id, st := range want {
			if s[id].State != st || s[id].Retraction != alert.StateDelivered {
				t.Logf("%s: %s, retraction %q", id, s[id].State, s[id].Retraction)
				return false
			}
		}
		return true
	})
	mu.Lock()
	defer mu.Unlock()
	if len(afterFence) > 0 {
		t.Errorf("originals reached the adapter after the retraction: %v", afterFence)
	}
}

func eventually(t *testing.T, within time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("not within %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
