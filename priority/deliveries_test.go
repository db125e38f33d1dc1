package priority_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// Walking the ledger page by page finds every target exactly once, with
// its retraction, however the pages fall.
func TestDeliveriesPaged(t *testing.T) {
	ctx := context.Background()
	q := newQueue(t, testenv.Redis(t).Addr(), priority.Options{})
	a := newAlert("fire", alert.SeverityExtreme, alert.UrgencyImmediate)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(3000)}); err != nil {
		t.Fatal(err)
	}
	// A claimed and delivered job, then the retraction: its targets are
	// owed retractions, the rest cancelled.
	j, err := q.Claim(ctx, alert.KindSiren, 0)
	if err != nil || j == nil {
		t.Fatalf("Claim = %v, %v", j, err)
	}
	done := map[string]alert.State{}
	for _, tg := range j.Targets {
		done[tg] = alert.StateDelivered
	}
	if err := q.Finish(ctx, j, done, time.Time{}); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Retract(ctx, a.ID, "false_alarm", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Sweep(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	seen := map[string]int{}
	owed := 0
	var cursor uint64
	pages := 0
	for {
		page, next, err := q.DeliveriesPage(ctx, a.ID, cursor, 250)
		if err != nil {
			t.Fatal(err)
		}
		pages++
		for _, d := range page {
			seen[d.Target.ID]++
			if d.Retraction != "" {
				owed++
			}
		}
		if next == 0 {
			break
		}
		cursor = next
	}
	if len(seen) != 3000 || pages < 5 {
		t.Fatalf("%d targets in %d pages; want 3000 in several", len(seen), pages)
	}
	for id, n := range seen {
		if n != 1 {
			t.Errorf("%s on %d pages", id, n)
		}
	}
	if owed != len(done) {
		t.Errorf("%d rows with a retraction; want the %d delivered", owed, len(done))
	}
	all, err := q.Deliveries(ctx, a.ID)
	if err != nil || len(all) != 3000 {
		t.Fatalf("Deliveries = %d rows, %v", len(all), err)
	}
}

// BenchmarkDeliveriesPage reads one page of 1,000 targets from ledgers of
// 10,000 and 200,000 targets: the bytes per page stay the same, where the
// whole ledger (Deliveries) grows with the alert.
func BenchmarkDeliveriesPage(b *testing.B) {
	ctx := context.Background()
	srv := testenv.Redis(b, true)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	defer rdb.Close()
	q := priority.New(rdb, priority.Options{})
	for _, n := range []int{10000, 200000} {
		a := newAlert(fmt.Sprintf("ledger %d", n), alert.SeverityExtreme, alert.UrgencyImmediate)
		ts := make([]alert.Target, n)
		for i := range ts {
			ts[i] = alert.Target{Kind: alert.KindSMS, ID: fmt.Sprintf("staff.p%06d", i)}
		}
		if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: ts}); err != nil {
			b.Fatal(err)
		}
		b.Run(fmt.Sprintf("page/ledger=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := q.DeliveriesPage(ctx, a.ID, 0, 1000); err != nil {
					b.Fatal(err)
				}
			}
		})
		b.Run(fmt.Sprintf("whole/ledger=%d", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := q.Deliveries(ctx, a.ID); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
