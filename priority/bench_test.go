package priority_test

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
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

// BenchmarkAuditCost is what the audit adds to accepting an alert: the
// enqueue script (idempotency key, fingerprint, 3 sirens) with its
// alert.accepted entry, against the same script told to append nothing
// (priority.WithoutAudit). b.N alerts go each way, in alternating blocks of
// 10 so that the noise of a shared machine falls on both alike. It reports
// Redis time per alert each way (INFO commandstats: usec of EVALSHA and
// EVAL, read around every block) and their difference, the main thread's
// CPU time per alert each way (INFO cpu, read around every block: it
// includes reading, parsing and answering the call, and the INFO calls),
// and the log's memory per
// entry (MEMORY USAGE of the log list / entries) and mean line length.
var costRun atomic.Int64

func BenchmarkAuditCost(b *testing.B) {
	srv := testenv.Redis(b, true)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	ctx := audit.WithActor(context.Background(), "principal:leitstelle")
	prefix := fmt.Sprintf("cost%d", costRun.Add(1))
	queues := []*priority.Queue{
		priority.New(rdb, priority.Options{Prefix: prefix}),
		priority.WithoutAudit(priority.New(rdb, priority.Options{Prefix: prefix + "-none"})),
	}
	var usec [2]int64
	var cpu [2]float64
	var done [2]int
	const block = 10
	for v, q := range queues { // load the script before measuring
		a := newAlert("warm-up", alert.SeverityMinor, alert.UrgencyFuture)
		if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(3)}); err != nil {
			b.Fatal(err)
		}
		done[v] = 0
	}
	b.ResetTimer()
	for i := 0; done[0] < b.N || done[1] < b.N; i++ {
		v := i % 2
		n := min(block, b.N-done[v])
		before, cpuBefore := scriptUsec(b, rdb), mainThreadCPU(b, rdb)
		for range n {
			a := newAlert(fmt.Sprintf("event-%d-%d", v, done[v]), alert.SeveritySevere, alert.UrgencyImmediate)
			if _, err := queues[v].Enqueue(ctx, priority.Plan{Alert: a, IdempotencyKey: string(a.ID),
				Fingerprint: priority.Fingerprint(a), Targets: sirens(3)}); err != nil {
				b.Fatal(err)
			}
			done[v]++
		}
		usec[v] += scriptUsec(b, rdb) - before
		cpu[v] += mainThreadCPU(b, rdb) - cpuBefore
	}
	b.StopTimer()
	with, without := float64(usec[0])/float64(b.N), float64(usec[1])/float64(b.N)
	b.ReportMetric(with, "redis-µs/alert")
	b.ReportMetric(without, "redis-µs/alert-no-audit")
	b.ReportMetric(with-without, "redis-µs/entry")
	b.ReportMetric(cpu[0]*1e6/float64(b.N), "cpu-µs/alert")
	b.ReportMetric(cpu[1]*1e6/float64(b.N), "cpu-µs/alert-no-audit")
	log := audit.KeysFor(prefix).Log
	entries, err := rdb.LLen(ctx, log).Result()
	if err != nil {
		b.Fatal(err)
	}
	if none, _ := rdb.LLen(ctx, audit.KeysFor(prefix+"-none").Log).Result(); entries != int64(b.N)+1 || none != 0 {
		b.Fatalf("%d and %d entries for %d alerts each way", entries, none, b.N)
	}
	mem, err := rdb.MemoryUsage(ctx, log, 0).Result()
	if err != nil {
		b.Fatal(err)
	}
	lines, err := rdb.LRange(ctx, log, 0, -1).Result()
	if err != nil {
		b.Fatal(err)
	}
	total := 0
	for _, l := range lines {
		total += len(l)
	}
	b.ReportMetric(float64(mem)/float64(entries), "mem-B/entry")
	b.ReportMetric(float64(total)/float64(entries), "line-B/entry")
}

// mainThreadCPU is the CPU time Redis's main thread has used (INFO cpu:
// used_cpu_sys_main_thread + used_cpu_user_main_thread), in seconds: unlike
// commandstats' usec, which is wall time, it does not grow while another
// process has the core.
func mainThreadCPU(b *testing.B, rdb *redis.Client) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total float64
	for _, line := range strings.Split(info, "\n") {
		name, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (name == "used_cpu_sys_main_thread" || name == "used_cpu_user_main_thread") {
			f, _ := strconv.ParseFloat(v, 64)
			total += f
		}
	}
	return total
}

// scriptUsec is the Redis CPU time spent in EVALSHA and EVAL since the last
// CONFIG RESETSTAT (INFO commandstats), in µs.
func scriptUsec(b *testing.B, rdb *redis.Client) int64 {
	info, err := rdb.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	var total int64
	for _, line := range strings.Split(info, "\n") {
		name, stats, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || (name != "cmdstat_evalsha" && name != "cmdstat_eval") {
			continue
		}
		for _, f := range strings.Split(stats, ",") {
			if v, ok := strings.CutPrefix(f, "usec="); ok {
				n, _ := strconv.ParseInt(v, 10, 64)
				total += n
			}
		}
	}
	return total
}

// BenchmarkEnqueueSentinel is the cost of redis.wait_replicas: the same
// enqueue of a 3-siren alert from 16 callers on a Sentinel-watched master
// with two replicas (all AOF always), without and with waiting for one
// replica (WAIT in the same pipeline), in the same run.
func BenchmarkEnqueueSentinel(b *testing.B) {
	sen := testenv.RedisSentinel(b)
	rdb := redis.NewFailoverClient(&redis.FailoverOptions{MasterName: sen.Name, SentinelAddrs: []string{sen.Sentinel.Addr()}, PoolSize: 32})
	b.Cleanup(func() { rdb.Close() })
	for _, w := range []int{0, 1} {
		q := priority.New(rdb, priority.Options{Prefix: fmt.Sprintf("w%d", w), WaitReplicas: w})
		var n atomic.Int64
		b.Run(fmt.Sprintf("wait-replicas-%d", w), func(b *testing.B) {
			b.SetParallelism(8)
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					a := newAlert(fmt.Sprintf("sentinel-%d", n.Add(1)), alert.SeveritySevere, alert.UrgencyImmediate)
					if _, err := q.Enqueue(context.Background(), priority.Plan{Alert: a, Targets: sirens(3)}); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
