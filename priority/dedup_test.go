package priority_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// The dedup table (README.md, "What makes two requests the same alert"),
// one row each. Every row sends an earlier alert and then a second request
// under the same name — the same Idempotency-Key or the same fingerprint —
// because a test that names every alert uniquely cannot see a dedup bug.
func TestDedupTable(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	type req struct {
		principal, source, event string
		sev                      alert.Severity
		urg                      alert.Urgency
		zones                    []string
		channels                 []alert.Kind
		key                      string // Idempotency-Key
		expires                  time.Duration
		supersedesFirst          bool // a CAP Update of the first alert
	}
	base := req{principal: "leitstelle", event: "Amok", sev: alert.SeveritySevere, urg: alert.UrgencyExpected,
		zones: []string{"school"}, channels: []alert.Kind{alert.KindPA}, expires: time.Hour}
	with := func(f func(*req)) req { r := base; f(&r); return r }
	for _, tt := range []struct {
		name   string
		second req
		// between runs after the first alert is stored.
		between func(t *testing.T, q *priority.Queue, first alert.ID)
		// want: "duplicate", "new", "conflict"; why: Enqueued.Why.
		want, why string
	}{
		{name: "same fingerprint, earlier live: one alert", second: base, want: "duplicate", why: "fingerprint"},
		{name: "same fingerprint, fewer channels and lower severity: one alert",
			second: with(func(r *req) { r.sev = alert.SeverityModerate; r.channels = nil }), want: "duplicate", why: "fingerprint"},
		{name: "earlier retracted as a false alarm: a real alarm after it is new", second: base,
			between: func(t *testing.T, q *priority.Queue, first alert.ID) {
				if _, err := q.Retract(ctx, first, "false_alarm", ""); err != nil {
					t.Fatal(err)
				}
			}, want: "new", why: "retracted"},
		{name: "earlier superseded: new", second: base,
			between: func(t *testing.T, q *priority.Queue, first alert.ID) {
				up := newAlert("Update", alert.SeverityMinor, alert.UrgencyFuture)
				if _, err := q.Enqueue(ctx, priority.Plan{Alert: up, Targets: sirens(1), Supersedes: []alert.ID{first}}); err != nil {
					t.Fatal(err)
				}
			}, want: "new", why: "retracted"},
		{name: "earlier expired: new", second: base,
			between: func(t *testing.T, q *priority.Queue, first alert.ID) { time.Sleep(350 * time.Millisecond) },
			want:    "new", why: "expired"},
		{name: "an update superseding the alert its fingerprint names: new, and the earlier one fenced",
			second: with(func(r *req) { r.supersedesFirst = true }), want: "new"},
		{name: "higher severity escalates: new", second: with(func(r *req) { r.sev = alert.SeverityExtreme }), want: "new", why: "escalated"},
		{name: "higher urgency escalates: new", second: with(func(r *req) { r.urg = alert.UrgencyImmediate }), want: "new", why: "escalated"},
		{name: "sirens after a PA-only alert escalate: new",
			second: with(func(r *req) { r.channels = []alert.Kind{alert.KindPA, alert.KindSiren} }), want: "new", why: "escalated"},
		{name: "more zones: another fingerprint, new", second: with(func(r *req) { r.zones = []string{"school", "town"} }), want: "new"},
		{name: "another principal, same event and source: new (no sender absorbs another's alert)",
			second: with(func(r *req) { r.principal = "other-centre" }), want: "new"},
		{name: "another principal naming the same source: new",
			second: with(func(r *req) { r.principal, r.source = "other-centre", "shared-source" }), want: "new"},
		{name: "trigger sources, same template and zone: one alert (the 52-panel burst)",
			second: with(func(r *req) { r.principal = priority.TriggerPrincipalPrefix + "panel-2" }), want: "duplicate", why: "fingerprint"},
		{name: "same Idempotency-Key, same content: the request repeated", second: with(func(r *req) { r.key = "k" }),
			want: "duplicate", why: "idempotency_key"},
		{name: "same Idempotency-Key after a retraction: still the request repeated, its answer says retracted",
			second: with(func(r *req) { r.key = "k" }),
			between: func(t *testing.T, q *priority.Queue, first alert.ID) {
				if _, err := q.Retract(ctx, first, "false_alarm", ""); err != nil {
					t.Fatal(err)
				}
			}, want: "duplicate", why: "idempotency_key"},
		{name: "same Idempotency-Key, other content: refused", second: with(func(r *req) { r.key = "k"; r.event = "Fire" }), want: "conflict"},
		{name: "same Idempotency-Key from another principal: new", second: with(func(r *req) { r.key = "k"; r.principal = "other-centre"; r.event = "Fire" }), want: "new"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			q := newQueue(t, srv.Addr(), priority.Options{Prefix: "t" + time.Now().Format("150405.000000"), DedupWindow: time.Minute})
			var firstID alert.ID
			send := func(r req) (priority.Enqueued, *alert.Alert, error) {
				a := newAlert(r.event, r.sev, r.urg)
				a.Principal, a.Source, a.Zones, a.Channels = r.principal, r.source, r.zones, r.channels
				if a.Principal == priority.TriggerPrincipalPrefix+"panel-2" || a.Principal == priority.TriggerPrincipalPrefix+"panel-1" {
					a.Source = "trigger/amok-button"
				}
				a.Expires = time.Now().Add(r.expires)
				var sup []alert.ID
				if r.supersedesFirst {
					sup = []alert.ID{firstID}
				}
				res, err := q.Enqueue(ctx, priority.Plan{Alert: a, IdempotencyKey: r.key, Fingerprint: priority.Fingerprint(a), Targets: sirens(2), Supersedes: sup})
				return res, a, err
			}
			first := base
			if tt.why == "expired" {
				first.expires = 300 * time.Millisecond
			}
			if tt.second.key != "" {
				first.key = "k"
			}
			if tt.second.principal == priority.TriggerPrincipalPrefix+"panel-2" {
				first.principal = priority.TriggerPrincipalPrefix + "panel-1"
			}
			r1, a1, err := send(first)
			if err != nil || r1.Duplicate {
				t.Fatalf("first = %+v, %v; want a new alert", r1, err)
			}
			firstID = a1.ID
			if tt.between != nil {
				tt.between(t, q, a1.ID)
			}
			r2, a2, err := send(tt.second)
			switch tt.want {
			case "duplicate":
				if err != nil || !r2.Duplicate || r2.ID != a1.ID || r2.Why != tt.why {
					t.Fatalf("second = %+v, %v; want a duplicate of %s by %s", r2, err, a1.ID, tt.why)
				}
			case "new":
				if err != nil || r2.Duplicate || r2.ID != a2.ID || r2.Why != tt.why {
					t.Fatalf("second = %+v, %v; want new alert %s (why %q)", r2, err, a2.ID, tt.why)
				}
				if tt.why != "" && r2.Earlier != a1.ID {
					t.Fatalf("second.Earlier = %q, want %s", r2.Earlier, a1.ID)
				}
				if tt.second.supersedesFirst {
					return // an update is never absorbed, so nothing joins it either
				}
				// The new alert takes the name over: a third request joins it.
				r3, _, err := send(tt.second)
				if err != nil || !r3.Duplicate || r3.ID != a2.ID {
					t.Fatalf("third = %+v, %v; want a duplicate of the new alert %s", r3, err, a2.ID)
				}
			case "conflict":
				if !errors.Is(err, priority.ErrIdempotencyConflict) || r2.ID != a1.ID {
					t.Fatalf("second = %+v, %v; want ErrIdempotencyConflict naming %s", r2, err, a1.ID)
				}
			}
		})
	}
}

// A trigger's event id is spent in the step that stores its decision: a
// replay is refused, and a call that failed (Redis down) spent nothing, so
// the source's retry is heard.
func TestTriggerEventSpentWithTheDecision(t *testing.T) {
	ctx := context.Background()
	srv := testenv.Redis(t)
	q := newQueue(t, srv.Addr(), priority.Options{})
	a := newAlert("Amok", alert.SeverityExtreme, alert.UrgencyImmediate)
	a.Principal, a.Source = priority.TriggerPrincipalPrefix+"button", "trigger/amok-button"
	plan := priority.Plan{Alert: a, Fingerprint: priority.Fingerprint(a), Targets: sirens(1),
		Trigger: &priority.TriggerEvent{Source: "button", Event: "ev-1", TTL: time.Minute}}

	srv.Kill()
	if _, err := q.Enqueue(ctx, plan); err == nil {
		t.Fatal("Enqueue with Redis down succeeded")
	}
	srv.Restart()
	var res priority.Enqueued
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if res, err = q.Enqueue(ctx, plan); err == nil {
			break
		}
	}
	if err != nil || res.Duplicate || res.ID != a.ID {
		t.Fatalf("retry after the failure = %+v, %v; want the alert stored", res, err)
	}
	if got, err := q.EventAlertOf(ctx, "button", "ev-1"); err != nil || got != a.ID {
		t.Fatalf("EventAlertOf = %q, %v; want %s", got, err, a.ID)
	}
	if res, err := q.Enqueue(ctx, plan); !errors.Is(err, priority.ErrReplay) || res.ID != a.ID {
		t.Fatalf("replay = %+v, %v; want ErrReplay naming %s", res, err, a.ID)
	}
}
