package priority_test

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// bodyScript returns tocsin_body of its arguments: KEYS unused; ARGV[1]
// time JSON, ARGV[2] kind, ARGV[3] actor, ARGV[4] subject, ARGV[5..] detail pairs.
var bodyScript = redis.NewScript(priority.AuditLua + `
local d = {}
for i = 5, #ARGV, 2 do d[ARGV[i]] = ARGV[i + 1] end
return tocsin_body(ARGV[1], ARGV[2], ARGV[3], ARGV[4], d)
`)

// TestAuditBodyIsEntryBody: the Lua that builds entries writes what
// audit.Entry.Body writes, byte for byte, for any strings (control
// characters, <>&, U+2028, invalid UTF-8, …), on Redis and on miniredis.
func TestAuditBodyIsEntryBody(t *testing.T) {
	mini := miniredis.RunT(t)
	for _, srv := range []struct{ name, addr string }{{"redis", testenv.Redis(t, true).Addr()}, {"miniredis", mini.Addr()}} {
		t.Run(srv.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.addr})
			defer rdb.Close()
			ctx := context.Background()
			rapid.Check(t, func(rt *rapid.T) {
				raw := rapid.OneOf(rapid.String(), rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) string { return string(b) }),
					rapid.SampledFrom([]string{"", "\b\f\n\r\t\x00\x1f\x7f", "<a href=\"x\">&amp;</a>", "\u2028\u2029", "\xed\xa0\x80\xe2\x82a\xf4\x90\x80\x80\xc0\xaf", "é€𝄞", `\"\\`}))
				e := audit.Entry{
					Time:    time.UnixMilli(rapid.Int64Range(0, 4e12).Draw(rt, "ms")),
					Kind:    raw.Draw(rt, "kind"),
					Actor:   raw.Draw(rt, "actor"),
					Subject: raw.Draw(rt, "subject"),
				}
				args := []any{timeJSON(e.Time), e.Kind, e.Actor, e.Subject}
				seen := map[string]bool{}
				for range rapid.IntRange(0, 5).Draw(rt, "details") {
					k, v := raw.Draw(rt, "key"), raw.Draw(rt, "value")
					if seen[k] {
						continue
					}
					seen[k] = true
					args = append(args, k, v)
					if v != "" { // the scripts leave empty values out
						if e.Detail == nil {
							e.Detail = map[string]string{}
						}
						e.Detail[k] = v
					}
				}
				got, err := bodyScript.Run(ctx, rdb, nil, args...).Text()
				if err != nil {
					rt.Fatal(err)
				}
				if want := e.Body(); got != want {
					rt.Fatalf("tocsin_body = %q\nEntry.Body = %q", got, want)
				}
			})
		})
	}
}

func timeJSON(t time.Time) string {
	b, _ := json.Marshal(t.UTC().Truncate(time.Millisecond))
	return string(b)
}

// logged is one line of the audit log, decoded.
type logged struct {
	seq  int64
	body string
	e    audit.Entry
}

// auditLog reads the audit log under prefix and checks what every entry
// must satisfy: numbered 1, 2, … without gaps, the seq key at the last
// number, and each body byte-identical to its Entry's Body.
func auditLog(t fataler, rdb redis.UniversalClient, prefix string) []logged {
	t.Helper()
	ctx := context.Background()
	k := audit.KeysFor(prefix)
	lines, err := rdb.LRange(ctx, k.Log, 0, -1).Result()
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	seq, err := rdb.Get(ctx, k.Seq).Int64()
	if err != nil && err != redis.Nil {
		t.Fatalf("audit seq: %v", err)
	}
	if seq != int64(len(lines)) {
		t.Fatalf("audit seq is %d, the log has %d lines", seq, len(lines))
	}
	out := make([]logged, len(lines))
	for i, line := range lines {
		n, body, ok := strings.Cut(line, " ")
		if !ok {
			t.Fatalf("audit line %q has no number", line)
		}
		l := logged{body: body}
		if l.seq, err = strconv.ParseInt(n, 10, 64); err != nil || l.seq != int64(i+1) {
			t.Fatalf("audit line %d is numbered %q", i+1, n)
		}
		if err := json.Unmarshal([]byte(body), &l.e); err != nil {
			t.Fatalf("audit line %d: %v: %s", i+1, err, body)
		}
		if re := l.e.Body(); re != body {
			t.Fatalf("audit line %d is not canonical:\n got %s\nwant %s", i+1, body, re)
		}
		out[i] = l
	}
	return out
}

// fataler is a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatalf(format string, args ...any)
}

// ofKind are the entries of kind.
func ofKind(log []logged, kind string) []audit.Entry {
	var out []audit.Entry
	for _, l := range log {
		if l.e.Kind == kind {
			out = append(out, l.e)
		}
	}
	return out
}

// one is the single entry of kind; the test fails if there is not exactly one.
func one(t testing.TB, log []logged, kind string) audit.Entry {
	t.Helper()
	es := ofKind(log, kind)
	if len(es) != 1 {
		t.Fatalf("%d %s entries, want 1: %v", len(es), kind, es)
	}
	return es[0]
}

// wantEntry checks an entry's actor, subject, time and the detail keys named.
func wantEntry(t testing.TB, e audit.Entry, actor, subject string, at time.Time, detail map[string]string) {
	t.Helper()
	if e.Actor != actor || e.Subject != subject {
		t.Errorf("%s: actor %q subject %q, want %q %q", e.Kind, e.Actor, e.Subject, actor, subject)
	}
	if !e.Time.Equal(at.Truncate(time.Millisecond)) {
		t.Errorf("%s: time %v, want %v", e.Kind, e.Time, at)
	}
	for k, v := range detail {
		if got, ok := e.Detail[k]; !ok || got != v {
			t.Errorf("%s: detail %s = %q (set %v), want %q; detail %v", e.Kind, k, got, ok, v, e.Detail)
		}
	}
}

type auditEnv struct {
	rdb    *redis.Client
	prefix string
	now    time.Time
	mu     sync.Mutex
}

func (a *auditEnv) clock() time.Time {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.now
}

func (a *auditEnv) advance(d time.Duration) {
	a.mu.Lock()
	a.now = a.now.Add(d)
	a.mu.Unlock()
}

var auditRun atomic.Int64

func newAuditEnv(t *testing.T, addr string, o priority.Options) (*auditEnv, *priority.Queue) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { rdb.Close() })
	env := &auditEnv{rdb: rdb, prefix: fmt.Sprintf("audit%d", auditRun.Add(1)), now: time.UnixMilli(time.Now().UnixMilli()).Add(123 * time.Microsecond)}
	o.Prefix, o.Now = env.prefix, env.clock
	return env, priority.New(rdb, o)
}

// onBoth runs a test on Redis and on miniredis (the in-process demo's).
func onBoth(t *testing.T, test func(t *testing.T, addr string)) {
	t.Run("redis", func(t *testing.T) { test(t, testenv.Redis(t, true).Addr()) })
	t.Run("miniredis", func(t *testing.T) { test(t, miniredis.RunT(t).Addr()) })
}

// TestAuditEnqueue: a new alert appends alert.accepted with its plan; the
// same alert again (its idempotency key, or its fingerprint) appends
// alert.duplicate naming the alert that answered; an update appends
// alert.accepted and alert.retracted for the alert it supersedes.
func TestAuditEnqueue(t *testing.T) { onBoth(t, testAuditEnqueue) }

func testAuditEnqueue(t *testing.T, addr string) {
	env, q := newAuditEnv(t, addr, priority.Options{})
	ctx := audit.WithActor(context.Background(), "principal:leitstelle")
	a := newAlert("fire <&> \"x\"\u2028", alert.SeveritySevere, alert.UrgencyImmediate)
	a.Zones, a.Channels, a.Source = []string{"z1", "z2"}, []alert.Kind{alert.KindSiren, alert.KindSMS}, "cad"
	plan := priority.Plan{Alert: a, IdempotencyKey: "k1", Fingerprint: priority.Fingerprint(a), Targets: sirens(3)}
	if res, err := q.Enqueue(ctx, plan); err != nil || res.Duplicate {
		t.Fatalf("Enqueue = %+v, %v", res, err)
	}
	again := *a
	again.ID = "again"
	if res, err := q.Enqueue(ctx, priority.Plan{Alert: &again, IdempotencyKey: "k1", Fingerprint: priority.Fingerprint(&again), Targets: sirens(3)}); err != nil || !res.Duplicate {
		t.Fatalf("Enqueue(again) = %+v, %v", res, err)
	}
	third := *a
	third.ID = "third"
	ctx3 := audit.WithActor(context.Background(), "source:panel-3")
	if res, err := q.Enqueue(ctx3, priority.Plan{Alert: &third, Fingerprint: priority.Fingerprint(&third), Targets: sirens(3)}); err != nil || !res.Duplicate {
		t.Fatalf("Enqueue(third) = %+v, %v", res, err)
	}
	// A conflict changes nothing and appends nothing.
	other := *a
	other.ID, other.Headline = "other", "something else"
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: &other, IdempotencyKey: "k1", Targets: sirens(3)}); err != priority.ErrIdempotencyConflict {
		t.Fatalf("Enqueue(conflict) = %v", err)
	}
	log := auditLog(t, env.rdb, env.prefix)
	if len(log) != 3 {
		t.Fatalf("%d entries, want accepted and two duplicates: %v", len(log), log)
	}
	acc := one(t, log, "alert.accepted")
	wantEntry(t, acc, "principal:leitstelle", string(a.ID), env.now, map[string]string{
		"status": string(alert.StatusActual), "msg_type": "Alert", "event": a.Event, "severity": "Severe", "urgency": "Immediate",
		"priority": strconv.Itoa(int(a.Priority)), "zones": "z1,z2", "channels": "siren,sms", "principal": "leitstelle",
		"source": "cad", "targets": "3", "expires": a.Expires.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano),
	})
	fp := acc.Detail["fingerprint"]
	if len(fp) != 32 {
		t.Errorf("accepted fingerprint %q, want its 32-hex sum", fp)
	}
	for _, k := range []string{"why", "earlier", "supersedes", "trigger"} {
		if _, ok := acc.Detail[k]; ok {
			t.Errorf("accepted detail has empty %s: %v", k, acc.Detail)
		}
	}
	dups := ofKind(log, "alert.duplicate")
	if len(dups) != 2 {
		t.Fatalf("%d duplicates, want 2", len(dups))
	}
	wantEntry(t, dups[0], "principal:leitstelle", string(a.ID), env.now, map[string]string{"reason": "idempotency_key", "request": "again", "fingerprint": fp})
	wantEntry(t, dups[1], "source:panel-3", string(a.ID), env.now, map[string]string{"reason": "fingerprint", "request": "third", "fingerprint": fp})
	if log[0].e.Kind != "alert.accepted" {
		t.Errorf("first entry is %s, want alert.accepted", log[0].e.Kind)
	}

	// An update supersedes a: accepted, then a retracted (superseded).
	env.advance(time.Second)
	upd := newAlert(a.Event, alert.SeverityExtreme, alert.UrgencyImmediate)
	if _, err := q.Enqueue(ctx, priority.Plan{Alert: upd, Targets: sirens(1), Supersedes: []alert.ID{a.ID, "gone"}}); err != nil {
		t.Fatal(err)
	}
	log = auditLog(t, env.rdb, env.prefix)
	if len(log) != 5 || log[3].e.Kind != "alert.accepted" || log[4].e.Kind != "alert.retracted" {
		t.Fatalf("after the update: %v", log)
	}
	wantEntry(t, log[3].e, "principal:leitstelle", string(upd.ID), env.now, map[string]string{"supersedes": string(a.ID) + ",gone", "severity": "Extreme"})
	wantEntry(t, log[4].e, "principal:leitstelle", string(a.ID), env.now, map[string]string{
		"reason": "superseded", "note": "superseded by " + string(upd.ID), "superseded_by": string(upd.ID), "before_delivery": "true"})
	// a's fingerprint now names a fenced alert: the next one is new, and says why.
	fourth := *a
	fourth.ID = "fourth"
	if res, err := q.Enqueue(ctx, priority.Plan{Alert: &fourth, Fingerprint: priority.Fingerprint(&fourth), Targets: sirens(1)}); err != nil || res.Duplicate {
		t.Fatalf("Enqueue(fourth) = %+v, %v", res, err)
	}
	log = auditLog(t, env.rdb, env.prefix)
	wantEntry(t, log[5].e, "principal:leitstelle", "fourth", env.now, map[string]string{"why": "retracted", "earlier": string(a.ID), "fingerprint": fp})
}

// TestAuditRetract: a retraction appends alert.retracted once, with the
// actor, reason, note and whether anything had gone out; a repeated one
// appends nothing; of retractions racing each other exactly one appends.
func TestAuditRetract(t *testing.T) { onBoth(t, testAuditRetract) }

func testAuditRetract(t *testing.T, addr string) {
	env, q := newAuditEnv(t, addr, priority.Options{})
	bg := context.Background()
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	b := newAlert("flood", alert.SeveritySevere, alert.UrgencyImmediate)
	for _, x := range []*alert.Alert{a, b} {
		if _, err := q.Enqueue(bg, priority.Plan{Alert: x, Targets: sirens(2)}); err != nil {
			t.Fatal(err)
		}
	}
	// One of a's targets has been sent; nothing of b has gone out.
	if j, err := q.Claim(bg, alert.KindSiren, 0); err != nil || j == nil || j.AlertID != a.ID {
		t.Fatalf("Claim = %v, %v (want a job of %s)", j, err, a.ID)
	} else if err := q.Finish(bg, j, map[string]alert.State{j.Targets[0]: alert.StateSent}, time.Time{}); err != nil {
		t.Fatal(err)
	}
	op := audit.WithActor(bg, "operator:7")
	if _, err := q.Retract(op, b.ID, "false_alarm", "wrong zone"); err != nil {
		t.Fatal(err)
	}
	if _, err := q.Retract(op, b.ID, "false_alarm", "again"); err != priority.ErrRetracted {
		t.Fatalf("second Retract = %v, want ErrRetracted", err)
	}
	if _, err := q.Retract(op, "unknown", "false_alarm", ""); err != priority.ErrNotFound {
		t.Fatalf("Retract(unknown) = %v", err)
	}
	// Eight operators retract a at once.
	var wg sync.WaitGroup
	var won atomic.Int64
	for i := range 8 {
		wg.Go(func() {
			_, err := q.Retract(audit.WithActor(bg, fmt.Sprintf("operator:%d", 100+i)), a.ID, "ended", "race")
			if err == nil {
				won.Add(1)
			} else if err != priority.ErrRetracted {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d retractions took effect, want 1", won.Load())
	}
	log := auditLog(t, env.rdb, env.prefix)
	rs := ofKind(log, "alert.retracted")
	if len(rs) != 2 {
		t.Fatalf("%d alert.retracted entries, want 2 (b, then a once): %v", len(rs), rs)
	}
	wantEntry(t, rs[0], "operator:7", string(b.ID), env.now, map[string]string{"reason": "false_alarm", "note": "wrong zone", "before_delivery": "true"})
	wantEntry(t, rs[1], rs[1].Actor, string(a.ID), env.now, map[string]string{"reason": "ended", "note": "race", "before_delivery": "false"})
	if !strings.HasPrefix(rs[1].Actor, "operator:1") {
		t.Errorf("the race's entry names %q, want one of the racing operators", rs[1].Actor)
	}
}

// TestAuditExpired: an alert whose jobs expire unsent gets one alert.expired
// (by the system, when a claim drops the first of them).
func TestAuditExpired(t *testing.T) { onBoth(t, testAuditExpired) }

func testAuditExpired(t *testing.T, addr string) {
	env, q := newAuditEnv(t, addr, priority.Options{BatchSize: 2})
	bg := context.Background()
	a := newAlert("fire", alert.SeveritySevere, alert.UrgencyImmediate)
	a.Expires = env.now.Add(time.Minute)
	if _, err := q.Enqueue(bg, priority.Plan{Alert: a, Targets: sirens(3)}); err != nil {
		t.Fatal(err)
	}
	env.advance(2 * time.Minute)
	for range 2 {
		if j, err := q.Claim(bg, alert.KindSiren, 0); err != nil || j != nil {
			t.Fatalf("Claim = %v, %v; want nothing (expired)", j, err)
		}
	}
	if st, err := q.Status(bg, a.ID); err != nil || st.Counts[alert.KindSiren].Expired != 3 {
		t.Fatalf("Status = %+v, %v; want 3 expired", st, err)
	}
	log := auditLog(t, env.rdb, env.prefix)
	wantEntry(t, one(t, log, "alert.expired"), "system", string(a.ID), env.now, map[string]string{"kind": "siren", "unsent": "2"})
}

// TestAuditMaintenanceAndTriggers: maintenance windows and trigger decisions
// append their entries, and the list of recent decisions stays as it was.
func TestAuditMaintenanceAndTriggers(t *testing.T) { onBoth(t, testAuditMaintenanceAndTriggers) }

func testAuditMaintenanceAndTriggers(t *testing.T, addr string) {
	env, q := newAuditEnv(t, addr, priority.Options{})
	op := audit.WithActor(context.Background(), "operator:caretaker")
	until := time.Now().Add(time.Hour).Round(0)
	m := priority.Maintenance{Source: "panel-3", Reason: "battery swap", By: "caretaker", Since: time.Now(), Until: until}
	if err := q.SetMaintenance(op, m); err != nil {
		t.Fatal(err)
	}
	if got, err := q.MaintenanceOf(op, "panel-3"); err != nil || got == nil || got.Reason != "battery swap" {
		t.Fatalf("MaintenanceOf = %+v, %v", got, err)
	}
	if ended, err := q.EndMaintenance(op, "panel-3"); err != nil || !ended {
		t.Fatalf("EndMaintenance = %v, %v", ended, err)
	}
	if ended, err := q.EndMaintenance(op, "panel-3"); err != nil || ended {
		t.Fatalf("EndMaintenance (none) = %v, %v", ended, err)
	}
	src := audit.WithActor(context.Background(), "source:panel-3")
	for _, d := range []priority.AuditEntry{
		{At: time.Now(), Source: "panel-3", EventID: "e1", Trigger: "amok", Zone: "z1", Status: "accepted", AlertID: "a1"},
		{At: time.Now(), Source: "panel-3", Status: "rejected", Reason: "bad signature <forged>"},
	} {
		if err := q.Audit(src, d); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := q.AuditLog(src, 10, false); err != nil || len(got) != 1 || got[0].AlertID != "a1" {
		t.Fatalf("AuditLog = %+v, %v", got, err)
	}
	if got, err := q.AuditLog(src, 10, true); err != nil || len(got) != 1 || got[0].Reason != "bad signature <forged>" {
		t.Fatalf("AuditLog(rejected) = %+v, %v", got, err)
	}
	log := auditLog(t, env.rdb, env.prefix)
	if len(log) != 4 {
		t.Fatalf("%d entries, want 4: %v", len(log), log)
	}
	u := until.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
	wantEntry(t, one(t, log, "maintenance.started"), "operator:caretaker", "panel-3", env.now, map[string]string{"reason": "battery swap", "until": u, "by": "caretaker"})
	wantEntry(t, one(t, log, "maintenance.ended"), "operator:caretaker", "panel-3", env.now, map[string]string{"reason": "battery swap", "until": u, "by": "caretaker"})
	wantEntry(t, one(t, log, "trigger.accepted"), "source:panel-3", "panel-3", env.now, map[string]string{"event_id": "e1", "trigger": "amok", "zone": "z1", "alert_id": "a1"})
	wantEntry(t, one(t, log, "trigger.rejected"), "source:panel-3", "panel-3", env.now, map[string]string{"reason": "bad signature <forged>"})
}

// TestAuditConcurrentEnqueues: entries from concurrent enqueues are numbered
// 1, 2, … without gaps, one alert.accepted per alert.
func TestAuditConcurrentEnqueues(t *testing.T) {
	env, q := newAuditEnv(t, testenv.Redis(t, true).Addr(), priority.Options{})
	const n = 64
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Go(func() {
			ctx := audit.WithActor(context.Background(), fmt.Sprintf("principal:p%d", i))
			for range n / 16 {
				a := newAlert("storm", alert.SeverityMinor, alert.UrgencyFuture)
				if _, err := q.Enqueue(ctx, priority.Plan{Alert: a, Targets: sirens(1)}); err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	log := auditLog(t, env.rdb, env.prefix) // checks the numbering
	ids := map[string]bool{}
	for _, e := range ofKind(log, "alert.accepted") {
		ids[e.Subject] = true
	}
	if len(log) != n || len(ids) != n {
		t.Fatalf("%d entries for %d alerts, want %d each", len(log), len(ids), n)
	}
}

// TestAuditActorDefault: without an actor on the context, the actor is system.
func TestAuditActorDefault(t *testing.T) {
	if got := audit.ActorFrom(context.Background()); got != "system" {
		t.Fatalf("ActorFrom(background) = %q", got)
	}
	if got := audit.ActorFrom(audit.WithActor(context.Background(), "operator:1")); got != "operator:1" {
		t.Fatalf("ActorFrom = %q", got)
	}
}
