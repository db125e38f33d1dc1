package priority_test

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// persistence modes measured side by side: production (AOF, fsync always) and off.
var modes = []struct {
	name string
	fast bool
}{{"aof-always", false}, {"no-persistence", true}}

// BenchmarkEnqueue is the dedup + store + enqueue script for a 3-siren alert,
// from 16 concurrent callers; BenchmarkEnqueue/.../redis-set is a plain SET of
// the same alert document from the same callers: the ceiling one round trip
// with the same fsync policy allows.
func BenchmarkEnqueue(b *testing.B) {
	for _, m := range modes {
		srv := testenv.Redis(b, m.fast)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr(), PoolSize: 32})
		q := priority.New(rdb, priority.Options{})
		var n atomic.Int64
		b.Run(m.name+"/tocsin-enqueue", func(b *testing.B) {
			b.SetParallelism(8) // 16 goroutines on 2 cores
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					i := n.Add(1)
					a := newAlert(fmt.Sprintf("event-%d", i), alert.SeveritySevere, alert.UrgencyImmediate)
					a.ID = alert.ID(fmt.Sprintf("bench-%d", i))
					if _, err := q.Enqueue(context.Background(), priority.Plan{Alert: a, IdempotencyKey: string(a.ID),
						Fingerprint: priority.Fingerprint(a), Targets: sirens(3)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "alerts/s")
		})
		b.Run(m.name+"/redis-set", func(b *testing.B) {
			doc := make([]byte, 400)
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if err := rdb.Set(context.Background(), fmt.Sprintf("set-%d", n.Add(1)), doc, time.Hour).Err(); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ops/s")
		})
		rdb.Close()
	}
}

// BenchmarkClaimFinish is one worker's cost per job (claim + finish, 1 target)
// with a deep lane, against a bare ZPOPMIN + HDEL pair as the ceiling.
func BenchmarkClaimFinish(b *testing.B) {
	srv := testenv.Redis(b, true)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	q := priority.New(rdb, priority.Options{BatchSize: 1})
	ctx := context.Background()
	b.Run("tocsin-claim-finish", func(b *testing.B) {
		a := newAlert("bulk", alert.SeverityMinor, alert.UrgencyFuture)
		if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(b.N)}); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		for range b.N {
			j, err := q.Claim(ctx, alert.KindSiren, 0)
			if err != nil || j == nil {
				b.Fatalf("Claim = %v, %v", j, err)
			}
			if err := q.Finish(ctx, j, map[string]alert.State{j.Targets[0]: alert.StateDelivered}, time.Time{}); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
	b.Run("redis-zpopmin-hdel", func(b *testing.B) {
		for i := range b.N {
			rdb.ZAdd(ctx, "z", redis.Z{Score: float64(i), Member: i})
			rdb.HSet(ctx, "h", i, "x")
		}
		b.ResetTimer()
		for i := range b.N {
			rdb.ZPopMin(ctx, "z")
			rdb.HDel(ctx, "h", fmt.Sprint(i))
		}
		b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "jobs/s")
	})
}

// BenchmarkPlan10k queues one alert to 10,000 people (SMS, 100 per job: five
// enqueue/plan calls of 2,000) and then claims and finishes its 100 jobs. The
// ceiling for planning is the same 10,000 ledger fields written as plain
// HSETs, 2,000 per call, with no jobs, counters or checks.
func BenchmarkPlan10k(b *testing.B) {
	const n = 10_000
	people := make([]alert.Target, n)
	for i := range people {
		people[i] = alert.Target{Kind: alert.KindSMS, ID: fmt.Sprintf("town.p%07d", i)}
	}
	for _, m := range modes {
		srv := testenv.Redis(b, m.fast)
		rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
		q := priority.New(rdb, priority.Options{BatchSize: 100})
		ctx := context.Background()
		b.Run(m.name+"/tocsin-plan", func(b *testing.B) {
			for range b.N {
				a := newAlert("flood", alert.SeveritySevere, alert.UrgencyImmediate)
				if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: people}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "targets/s")
		})
		b.Run(m.name+"/redis-hset", func(b *testing.B) {
			args := make([]any, 0, 4000)
			for i := range b.N {
				for c := 0; c < n; c += 2000 {
					args = args[:0]
					for _, t := range people[c : c+2000] {
						args = append(args, t.Key(), "queued")
					}
					if err := rdb.HSet(ctx, fmt.Sprintf("ledger-%d", i), args...).Err(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(n*b.N)/b.Elapsed().Seconds(), "targets/s")
		})
		b.Run(m.name+"/tocsin-claim-finish-100", func(b *testing.B) {
			b.StopTimer()
			rdb.FlushAll(ctx)
			for range b.N/100 + 1 {
				if _, err := q.Enqueue(ctx, priority.Plan{Alert: newAlert("flood", alert.SeveritySevere, alert.UrgencyImmediate), Targets: people}); err != nil {
					b.Fatal(err)
				}
			}
			b.StartTimer()
			for range b.N {
				j, err := q.Claim(ctx, alert.KindSMS, 0)
				if err != nil || j == nil {
					b.Fatalf("Claim = %v, %v", j, err)
				}
				out := make(map[string]alert.State, len(j.Targets))
				for _, t := range j.Targets {
					out[t] = alert.StateSent
				}
				if err := q.Finish(ctx, j, out, time.Time{}); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(100*b.N)/b.Elapsed().Seconds(), "targets/s")
		})
		rdb.Close()
	}
}
