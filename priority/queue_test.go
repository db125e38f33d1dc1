package priority_test

import (
	"context"
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

func newQueue(t *testing.T, addr string, o priority.Options) *priority.Queue {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	return priority.New(rdb, o)
}

var seq atomic.Int64

func newAlert(event string, sev alert.Severity, urg alert.Urgency) *alert.Alert {
	n := seq.Add(1)
	return &alert.Alert{
		ID: alert.ID(fmt.Sprintf("a%d-%d", time.Now().UnixNano(), n)), Principal: "leitstelle",
		Status: alert.StatusActual, MsgType: "Alert", Event: event, Severity: sev, Urgency: urg,
		Zones: []string{"z1"}, Sent: time.Now(), Expires: time.Now().Add(time.Hour),
		Priority: alert.PriorityOf(sev, urg),
	}
}

func sirens(n int) []alert.Target {
	ts := make([]alert.Target, n)
	for i := range ts {
		ts[i] = alert.Target{Kind: alert.KindSiren, ID: fmt.Sprintf("s%05d", i)}
	}
	return ts
}

func TestDedupByIdempotencyKeyAndFingerprint(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t).Addr(), priority.Options{DedupWindow: 300 * time.Millisecond})

	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	first, err := q.Enqueue(ctx, priority.Plan{Alert: a, IdempotencyKey: "k1", Targets: sirens(2)})
	if err != nil || first.Duplicate || first.ID != a.ID {
		t.Fatalf("Enqueue(first) = %+v, %v; want new %s", first, err, a.ID)
	}
	// Same key, same principal, same content: the request repeated.
	b := *a
	b.ID = "retry-of-k1"
	got, err := q.Enqueue(ctx, priority.Plan{Alert: &b, IdempotencyKey: "k1", Targets: sirens(2)})
	if err != nil || !got.Duplicate || got.ID != a.ID || got.Why != "idempotency_key" {
		t.Fatalf("Enqueue(same key) = %+v, %v; want duplicate of %s by idempotency_key", got, err, a.ID)
	}
	// Same key from another principal is a new alert.
	c := newAlert("storm", alert.SeverityMinor, alert.UrgencyFuture)
	c.Principal = "other"
	got, err = q.Enqueue(ctx, priority.Plan{Alert: c, IdempotencyKey: "k1", Targets: sirens(1)})
	if err != nil || got.Duplicate {
		t.Fatalf("Enqueue(key of another principal) = %+v, %v; want new", got, err)
	}

	// Fingerprint: 52 triggers of one event become one alert.
	var ids = map[alert.ID]int{}
	var wg sync.WaitGroup
	var mu sync.Mutex
	for i := range 52 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			x := newAlert("amok", alert.SeverityExtreme, alert.UrgencyImmediate)
			x.ID = alert.ID(fmt.Sprintf("burst-%d", i))
			got, err := q.Enqueue(ctx, priority.Plan{Alert: x, Fingerprint: priority.Fingerprint(x), Targets: sirens(3)})
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			ids[got.ID]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	if len(ids) != 1 {
		t.Fatalf("52 identical triggers made %d alerts, want 1: %v", len(ids), ids)
	}
	// After the window the same fingerprint is a new alert.
	time.Sleep(400 * time.Millisecond)
	x := newAlert("amok", alert.SeverityExtreme, alert.UrgencyImmediate)
	got, err = q.Enqueue(ctx, priority.Plan{Alert: x, Fingerprint: priority.Fingerprint(x), Targets: sirens(3)})
	if err != nil || got.Duplicate {
		t.Fatalf("Enqueue(after window) = %+v, %v; want new", got, err)
	}
}

func TestStrictPriorityBehindTenThousandJobs(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t).Addr(), priority.Options{BatchSize: 1})

	low := newAlert("bulk info", alert.SeverityMinor, alert.UrgencyFuture)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: low, Targets: sirens(10000)}); err != nil {
		t.Fatal(err)
	}
	high := newAlert("amok", alert.SeverityExtreme, alert.UrgencyImmediate)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: high, Targets: sirens(1)}); err != nil {
		t.Fatal(err)
	}
	if d, _ := q.Depth(ctx, alert.KindSiren); d != 10001 {
		t.Fatalf("Depth = %d, want 10001", d)
	}
	j, err := q.Claim(ctx, alert.KindSiren, 0)
	if err != nil || j == nil || j.AlertID != high.ID {
		t.Fatalf("Claim = %+v, %v; want the life-safety alert %s first", j, err, high.ID)
	}
	if err := q.Finish(ctx, j, map[string]alert.State{j.Targets[0]: alert.StateDelivered}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	// A retraction outranks everything, even life-safety alerts queued before it.
	high2 := newAlert("amok 2", alert.SeverityExtreme, alert.UrgencyImmediate)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: high2, Targets: sirens(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Retract(ctx, high.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	j, err = q.Claim(ctx, alert.KindSiren, 0)
	if err != nil || j == nil || j.AlertID != high.ID || j.Message() != alert.MessageRetraction {
		t.Fatalf("Claim = %+v, %v; want the retraction of %s", j, err, high.ID)
	}
	j, _ = q.Claim(ctx, alert.KindSiren, 0)
	if j == nil || j.AlertID != high2.ID {
		t.Fatalf("Claim = %+v; want %s next", j, high2.ID)
	}
	j, _ = q.Claim(ctx, alert.KindSiren, 0)
	if j == nil || j.AlertID != low.ID || j.Targets[0] != "s00000" {
		t.Fatalf("Claim = %+v; want the oldest bulk job", j)
	}
}

func TestExpiredLeaseIsReclaimedByAnotherInstance(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Redis(t).Addr()
	opts := priority.Options{Lease: time.Second}
	crashed, survivor := newQueue(t, addr, opts), newQueue(t, addr, opts)

	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	if _, err := crashed.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(3)}); err != nil {
		t.Fatal(err)
	}
	j, err := crashed.Claim(ctx, alert.KindSiren, 0)
	if err != nil || j == nil {
		t.Fatalf("Claim = %v, %v", j, err)
	}
	// The first instance dies here without finishing. The survivor only waits
	// (blocking read) and claims; it must get the job within 5 s.
	start := time.Now()
	var got *priority.Job
	for got == nil && time.Since(start) < 5*time.Second {
		if got, err = survivor.Claim(ctx, alert.KindSiren, 0); err != nil {
			t.Fatal(err)
		}
		if got == nil {
			survivor.Wait(ctx, alert.KindSiren, time.Second)
		}
	}
	if got == nil || got.ID != j.ID {
		t.Fatalf("survivor claimed %+v within 5s, want %s", got, j.ID)
	}
	t.Logf("reclaimed after %v (lease %v)", time.Since(start), opts.Lease)
	// While held and extended, the lease is not reclaimed.
	if ok, err := survivor.Extend(ctx, got); !ok || err != nil {
		t.Fatalf("Extend = %v, %v; want true", ok, err)
	}
	if again, _ := crashed.Claim(ctx, alert.KindSiren, 0); again != nil {
		t.Fatalf("Claim while leased = %+v, want nothing", again)
	}
}

// TestFenceAgainstConcurrentClaims retracts an alert while four workers claim
// and finish its jobs as fast as they can. After Retract returns no original job
// is claimed; every target some worker claimed gets a retraction, and every
// other target is cancelled.
func TestFenceAgainstConcurrentClaims(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Redis(t, true).Addr()
	o := priority.Options{BatchSize: 1}
	q := newQueue(t, addr, o)
	a := newAlert("amok", alert.SeverityExtreme, alert.UrgencyImmediate)
	const n = 400
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(n)}); err != nil {
		t.Fatal(err)
	}
	var (
		mu        sync.Mutex
		claimed   = map[string]bool{}
		retracted bool
		late      []string
		retractWg sync.WaitGroup
	)
	retractWg.Add(1)
	go func() {
		defer retractWg.Done()
		time.Sleep(20 * time.Millisecond)
		if _, err := q.Retract(ctx, a.ID, "false_alarm", "test"); err != nil {
			t.Error(err)
		}
		mu.Lock()
		retracted = true
		mu.Unlock()
	}()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			w := newQueue(t, addr, o)
			for {
				mu.Lock()
				wasRetracted := retracted
				mu.Unlock()
				j, err := w.Claim(ctx, alert.KindSiren, 0)
				if err != nil {
					t.Error(err)
					return
				}
				if j == nil {
					if wasRetracted {
						return // Retract has queued every retraction, and the lane is empty
					}
					time.Sleep(time.Millisecond) // the sweep may still be queueing retractions
					continue
				}
				if j.Message() == alert.MessageRetraction {
					w.Finish(ctx, j, map[string]alert.State{j.Targets[0]: alert.StateDelivered}, time.Time{})
					continue
				}
				mu.Lock()
				claimed[j.Targets[0]] = true
				if wasRetracted {
					late = append(late, j.ID)
				}
				mu.Unlock()
				w.Finish(ctx, j, map[string]alert.State{j.Targets[0]: alert.StateDelivered}, time.Time{})
			}
		}()
	}
	wg.Wait()
	retractWg.Wait()
	if len(late) > 0 {
		t.Fatalf("%d original jobs claimed after Retract returned: %v", len(late), late)
	}
	ds, err := q.Deliveries(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	st, err := q.Status(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	counted := map[alert.State]int{}
	for _, d := range ds {
		counted[d.State]++
		switch {
		case claimed[d.Target.ID] && (d.State != alert.StateDelivered || d.Retraction != alert.StateDelivered):
			t.Errorf("claimed %s: state %s retraction %q; want delivered, delivered", d.Target.ID, d.State, d.Retraction)
		case !claimed[d.Target.ID] && (d.State != alert.StateCancelled || d.Retraction != ""):
			t.Errorf("unclaimed %s: state %s retraction %q; want cancelled, none", d.Target.ID, d.State, d.Retraction)
		}
	}
	c := st.Counts[alert.KindSiren]
	// The counters the scripts keep agree with the ledger they summarise.
	if c.Targets != len(ds) || c.Delivered != counted[alert.StateDelivered] || c.Cancelled != counted[alert.StateCancelled] || c.Queued+c.InFlight != 0 {
		t.Fatalf("counts %+v disagree with the ledger: %d rows, %v", c, len(ds), counted)
	}
	if st.State != "retracted" || c.Summary != fmt.Sprintf("%d/%d", len(claimed), len(claimed)) {
		t.Fatalf("status %s, retracted %q; want retracted %d/%d", st.State, c.Summary, len(claimed), len(claimed))
	}
	if len(claimed) == 0 || len(claimed) == n {
		t.Logf("the retraction landed at an edge (%d of %d claimed); the test still holds", len(claimed), n)
	}
}

func TestRetractUnknownAndTwice(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	if _, err := q.Retract(ctx, "nope", "false_alarm", ""); err != priority.ErrNotFound {
		t.Fatalf("Retract(unknown) = %v, want ErrNotFound", err)
	}
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(2)})
	if _, err := q.Retract(ctx, a.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Retract(ctx, a.ID, "false_alarm", ""); err != priority.ErrRetracted {
		t.Fatalf("Retract(twice) = %v, want ErrRetracted", err)
	}
	// Never attempted: nothing owed, all cancelled.
	st, _ := q.Status(ctx, a.ID)
	if c := st.Counts[alert.KindSiren]; c.Cancelled != 2 || c.Summary != "0/0" {
		t.Fatalf("counts = %+v; want 2 cancelled, retracted 0/0", c)
	}
	if j, _ := q.Claim(ctx, alert.KindSiren, 0); j != nil {
		t.Fatalf("Claim after retract = %+v, want nothing", j)
	}
}

func TestCrashedWorkerOfFencedAlertOwesRetraction(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{Lease: 500 * time.Millisecond})
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(2)})
	if j, _ := q.Claim(ctx, alert.KindSiren, 0); j == nil {
		t.Fatal("no job")
	}
	// The worker dies mid-send; then the alert is retracted.
	q.Retract(ctx, a.ID, "false_alarm", "")
	time.Sleep(600 * time.Millisecond)
	j, err := q.Claim(ctx, alert.KindSiren, 0)
	if err != nil || j == nil || j.Message() != alert.MessageRetraction || len(j.Targets) != 2 {
		t.Fatalf("Claim = %+v, %v; want the retraction of both in-flight sirens", j, err)
	}
}

// A job claimed just before the fence and handed back untried (a worker
// shutting down, or one that could not read the alert) was never attempted:
// its targets are cancelled, not owed a retraction. One handed back after an
// attempt (retry) is owed one.
func TestHandedBackJobIsNotAttempted(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(3)})
	j, _ := q.Claim(ctx, alert.KindSiren, 0)
	if j == nil {
		t.Fatal("no job")
	}
	if _, err := q.Fence(ctx, a.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	// s00000 was attempted without an ack; the other two never left.
	out := map[string]alert.State{"s00000": alert.StateRetry, "s00001": alert.StateQueued, "s00002": alert.StateQueued}
	if err := q.Finish(ctx, j, out, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Sweep(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	st, _ := q.Status(ctx, a.ID)
	if c := st.Counts[alert.KindSiren]; c.Cancelled != 2 || c.Failed != 1 || c.Owed != 1 || c.Queued+c.InFlight+c.Retrying != 0 {
		t.Fatalf("counts = %+v; want 2 cancelled, 1 failed and owed its retraction, nothing handed back", c)
	}
	r, _ := q.Claim(ctx, alert.KindSiren, 0)
	if r == nil || r.Message() != alert.MessageRetraction || len(r.Targets) != 1 || r.Targets[0] != "s00000" {
		t.Fatalf("Claim = %+v; want the retraction of the one attempted siren only", r)
	}
	if again, _ := q.Claim(ctx, alert.KindSiren, 0); again != nil {
		t.Fatalf("Claim = %+v; want nothing more (no job handed back under the fence)", again)
	}
}

// An attempt is never forgotten: a siren tried without an ack, then handed
// back untried by the next worker (shutdown), may still be sounding, so the
// retraction owes it all_clear. Found by TestModel.
func TestAttemptSurvivesAHandBack(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	a, j := triedOnce(t, q)
	if err := q.Release(ctx, j); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Retract(ctx, a.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	st, _ := q.Status(ctx, a.ID)
	if c := st.Counts[alert.KindSiren]; c.Owed != 1 || c.Cancelled != 0 {
		t.Fatalf("counts = %+v; want the once-tried siren owed its retraction, not cancelled", c)
	}
}

// triedOnce queues an alert to one siren, reports its first attempt
// unconfirmed (retry) and claims the retry: the job of a second attempt.
func triedOnce(t *testing.T, q *priority.Queue) (*alert.Alert, *priority.Job) {
	t.Helper()
	ctx := context.Background()
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(1)})
	j, _ := q.Claim(ctx, alert.KindSiren, 0)
	q.Finish(ctx, j, map[string]alert.State{"s00000": alert.StateRetry}, time.Time{})
	if j, _ = q.Claim(ctx, alert.KindSiren, 0); j == nil {
		t.Fatal("the retry was not handed out again")
	}
	return a, j
}

// The same for a later job that the fence stops before it tries again (it
// reports the target cancelled) or that runs out of time (expired): the
// earlier attempt still counts. Found in review.
func TestAttemptSurvivesACancelledRetry(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	for _, outcome := range []alert.State{alert.StateCancelled, alert.StateExpired} {
		a, j := triedOnce(t, q)
		if _, err := q.Fence(ctx, a.ID, "false_alarm", ""); err != nil {
			t.Fatal(err)
		}
		if _, err := q.Sweep(ctx, a.ID); err != nil {
			t.Fatal(err)
		}
		if err := q.Progress(ctx, j, map[string]alert.State{"s00000": outcome}); err != nil {
			t.Fatal(err)
		}
		if err := q.Finish(ctx, j, map[string]alert.State{"s00000": outcome}, time.Time{}); err != nil {
			t.Fatal(err)
		}
		st, _ := q.Status(ctx, a.ID)
		if c := st.Counts[alert.KindSiren]; c.Owed != 1 || c.Failed != 1 {
			t.Fatalf("%s after an earlier attempt: counts = %+v; want failed and owed its retraction", outcome, c)
		}
		if r, _ := q.Claim(ctx, alert.KindSiren, 0); r == nil || r.Message() != alert.MessageRetraction {
			t.Fatalf("Claim = %+v; want the retraction", r)
		}
	}
}

// A handed-back delivery waits on the delayed set until its time, keeping
// its retry count; meanwhile the lane hands out other work.
func TestHandedBackWaitsItsTurn(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(2)})
	j, _ := q.Claim(ctx, alert.KindSiren, 0)
	if err := q.Finish(ctx, j, map[string]alert.State{"s00000": alert.StateDelivered, "s00001": alert.StateRetry}, time.Now().Add(300*time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	b := newAlert("info", alert.SeverityMinor, alert.UrgencyFuture)
	q.Enqueue(ctx, priority.Plan{Alert: b, Targets: sirens(1)})
	if o, _ := q.Claim(ctx, alert.KindSiren, 0); o == nil || o.AlertID != b.ID {
		t.Fatalf("Claim = %+v; want the other alert's job while the dead siren waits", o)
	}
	if st, _ := q.Status(ctx, a.ID); st.Counts[alert.KindSiren].Retrying != 1 || st.State != "delivering" {
		t.Fatalf("status = %s %+v; want 1 retrying, delivering", st.State, st.Counts[alert.KindSiren])
	}
	time.Sleep(350 * time.Millisecond)
	r, _ := q.Claim(ctx, alert.KindSiren, 0)
	if r == nil || r.AlertID != a.ID || len(r.Targets) != 1 || r.Targets[0] != "s00001" || r.Retries != 1 {
		t.Fatalf("Claim = %+v; want the handed-back siren, retry 1", r)
	}
}

func TestExpiredJobIsNotHandedOut(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	a.Expires = time.Now().Add(-time.Second)
	q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(2)})
	if j, _ := q.Claim(ctx, alert.KindSiren, 0); j != nil {
		t.Fatalf("Claim = %+v, want nothing (expired)", j)
	}
	st, _ := q.Status(ctx, a.ID)
	if c := st.Counts[alert.KindSiren]; c.Expired != 2 {
		t.Fatalf("counts = %+v, want 2 expired", c)
	}
}

// drain claims every job of kind and finishes it delivered, counting how many
// times each target was handed out.
func drain(t *testing.T, q *priority.Queue, kind alert.Kind) map[string]int {
	t.Helper()
	ctx := context.Background()
	got := map[string]int{}
	for {
		j, err := q.Claim(ctx, kind, 0)
		if err != nil {
			t.Fatal(err)
		}
		if j == nil {
			return got
		}
		out := map[string]alert.State{}
		for _, id := range j.Targets {
			got[id]++
			out[id] = alert.StateDelivered
		}
		if err := q.Finish(ctx, j, out, time.Time{}); err != nil {
			t.Fatal(err)
		}
	}
}

// A large plan is queued in chunks; every target is handed out exactly once.
// If the planning instance dies after the first chunk, another one finishes
// the plan after a lease; a retraction in between stops it, and the targets
// never planned are told nothing.
func TestLargePlanInChunks(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Redis(t, true).Addr()
	opts := priority.Options{BatchSize: 7, PlanChunk: 50, Lease: 500 * time.Millisecond}
	q, other := newQueue(t, addr, opts), newQueue(t, addr, opts)
	route := func(*alert.Alert) []alert.Target { return sirens(1000) }
	exactlyOnce := func(got map[string]int, n int) {
		t.Helper()
		if len(got) != n {
			t.Fatalf("%d targets handed out, want %d", len(got), n)
		}
		for id, c := range got {
			if c != 1 {
				t.Fatalf("target %s handed out %d times", id, c)
			}
		}
	}

	a := newAlert("flood", alert.SeveritySevere, alert.UrgencyImmediate)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: route(a)}); err != nil {
		t.Fatal(err)
	}
	exactlyOnce(drain(t, q, alert.KindSiren), 1000)

	crashed := newAlert("storm", alert.SeveritySevere, alert.UrgencyImmediate)
	if _, err := q.EnqueueFirstChunk(ctx, priority.Plan{Alert: crashed, Targets: route(crashed)}); err != nil {
		t.Fatal(err)
	}
	if n, err := other.Resume(ctx, route); n != 0 || err != nil {
		t.Fatalf("Resume inside the lease = %d, %v; want 0 (the planner may still be alive)", n, err)
	}
	time.Sleep(opts.Lease + 50*time.Millisecond)
	if n, err := other.Resume(ctx, route); n != 1 || err != nil {
		t.Fatalf("Resume after the lease = %d, %v; want 1", n, err)
	}
	exactlyOnce(drain(t, q, alert.KindSiren), 1000)
	if n, _ := other.Resume(ctx, route); n != 0 {
		t.Fatalf("Resume of a finished plan = %d, want 0", n)
	}

	retracted := newAlert("gas", alert.SeveritySevere, alert.UrgencyImmediate)
	q.EnqueueFirstChunk(ctx, priority.Plan{Alert: retracted, Targets: route(retracted)})
	if _, err := q.Retract(ctx, retracted.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	time.Sleep(opts.Lease + 50*time.Millisecond)
	other.Resume(ctx, route)
	if got := drain(t, q, alert.KindSiren); len(got) != 0 {
		t.Fatalf("a retracted plan handed out %d targets, want 0", len(got))
	}
	st, err := q.Status(ctx, retracted.ID)
	if err != nil {
		t.Fatal(err)
	}
	ds, _ := q.Deliveries(ctx, retracted.ID)
	if c := st.Counts[alert.KindSiren]; c.Cancelled != 49 || len(ds) != 49 {
		t.Fatalf("retracted after its first chunk: counts %+v, %d ledger rows; want the chunk's 49 cancelled and nothing more", c, len(ds))
	}
}

// Fence queues the named urgent targets' retractions at once; the sweep of
// the rest, if the fencing instance dies before it, is finished by another
// after a lease. Every reached target gets exactly one retraction.
func TestSweepResumedAfterCrash(t *testing.T) {
	ctx := context.Background()
	addr := testenv.Redis(t, true).Addr()
	opts := priority.Options{BatchSize: 100, Lease: 500 * time.Millisecond}
	q, other := newQueue(t, addr, opts), newQueue(t, addr, opts)
	a := newAlert("flood", alert.SeveritySevere, alert.UrgencyImmediate)
	all := sirens(5000)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: all}); err != nil {
		t.Fatal(err)
	}
	drain(t, q, alert.KindSiren)
	r, err := q.Fence(ctx, a.ID, "false_alarm", "", all[:3]...)
	if err != nil || r.Queued != 3 {
		t.Fatalf("Fence = %+v, %v; want the 3 named targets' retractions queued", r, err)
	}
	if n, _ := other.Resume(ctx, nil); n != 0 {
		t.Fatalf("Resume inside the lease = %d, want 0", n)
	}
	time.Sleep(opts.Lease + 50*time.Millisecond)
	if n, err := other.Resume(ctx, nil); n != 1 || err != nil {
		t.Fatalf("Resume after the lease = %d, %v; want the sweep resumed", n, err)
	}
	got := drain(t, q, alert.KindSiren)
	if len(got) != 5000 {
		t.Fatalf("%d retractions handed out, want 5000", len(got))
	}
	for id, c := range got {
		if c != 1 {
			t.Fatalf("%s retracted %d times", id, c)
		}
	}
	if n, _ := q.Sweep(ctx, a.ID); n != 0 {
		t.Fatalf("a second sweep queued %d, want 0", n)
	}
}

// Progress records a batch of a running job's outcomes: only targets in
// flight move, and the counters follow.
func TestProgressInBatches(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t, true).Addr(), priority.Options{})
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(3)}); err != nil {
		t.Fatal(err)
	}
	j, err := q.Claim(ctx, alert.KindSiren, 0)
	if err != nil || j == nil {
		t.Fatalf("Claim = %v, %v", j, err)
	}
	if err := q.Progress(ctx, j, map[string]alert.State{j.Targets[0]: alert.StateDelivered, j.Targets[1]: alert.StateFailed}); err != nil {
		t.Fatal(err)
	}
	// A second report for a target no longer in flight changes nothing.
	if err := q.Progress(ctx, j, map[string]alert.State{j.Targets[0]: alert.StateFailed}); err != nil {
		t.Fatal(err)
	}
	st, err := q.Status(ctx, a.ID)
	if err != nil {
		t.Fatal(err)
	}
	if c := st.Counts[alert.KindSiren]; c.Delivered != 1 || c.Failed != 1 || c.InFlight != 1 || st.State != "delivering" {
		t.Fatalf("status %s, counts %+v; want 1 delivered, 1 failed, 1 in flight", st.State, c)
	}
}
