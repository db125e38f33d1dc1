package priority_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// TestModel drives random sequences of sends (new alerts, repeats of earlier
// requests, updates superseding earlier alerts), retractions, workers that
// finish their jobs with random outcomes, workers that die holding a job,
// fences with claims racing the sweep, and a clock that moves on, against a
// real Redis. After every step it checks the queue against a reference
// model kept in Go:
//
//   - every send is decided as the dedup rules of enqueueCmd say (new,
//     duplicate of which alert by which rule, or an idempotency conflict);
//   - no original of a fenced (retracted or superseded) or expired alert is
//     ever claimed, and no target is handed out again after a worker reported
//     a final outcome for it;
//   - once a fenced alert's ledger is swept, every target that may have been
//     reached (a worker reported it sent, delivered, failed or to be retried,
//     or died holding it) has exactly one retraction, and no other target has
//     one; a retraction is never claimed while its original is in flight;
//   - a claim takes the highest priority that is ready on its lane (ready,
//     delayed and due, or leased and expired, and not fenced or expired);
//   - every job is on exactly one of its lane's ready, leases and delayed sets,
//     no target is on two jobs of one message, and every open ledger entry
//     is held by a job (no target is stranded);
//   - Status counters agree with the ledger (Deliveries) kind by kind;
//   - the audit log has one alert.accepted per alert accepted and one
//     alert.retracted per alert fenced (none per repeat), its entries
//     numbered without gaps up to its seq, each body canonical.
//
// Alerts go to two sirens, and to one PA zone when their channels include PA.
// Each rapid iteration uses its own key prefix on one Redis and a fake clock
// (leases, delays and alert expiry follow it). The number of sequences is
// rapid's -rapid.checks (100 by default), their average length -rapid.steps.
func TestModel(t *testing.T) {
	srv := testenv.Redis(t, true)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	runModel(t, rdb, 1)
}

// TestModelOnRedisCluster runs the model on a real three-master Redis
// Cluster with the queue spread over five shards: the two principals'
// alerts land in shards on different masters, and an update may supersede
// the other principal's alert.
func TestModelOnRedisCluster(t *testing.T) {
	c := testenv.RedisCluster(t, 3)
	rdb := redis.NewClusterClient(&redis.ClusterOptions{Addrs: c.Addrs()})
	t.Cleanup(func() { rdb.Close() })
	const shards = 5
	q := priority.New(rdb, priority.Options{Shards: shards})
	var masters []string
	for _, p := range mPrincipals {
		m, err := rdb.MasterForKey(context.Background(), q.HomeKey(p))
		if err != nil {
			t.Fatal(err)
		}
		masters = append(masters, m.Options().Addr)
	}
	if masters[0] == masters[1] {
		t.Fatalf("the principals' shards are both on %s: choose another shard count", masters[0])
	}
	runModel(t, rdb, shards)
}

func runModel(t *testing.T, rdb redis.UniversalClient, shards int) {
	rapid.Check(t, func(rt *rapid.T) {
		m := newModel(rdb, shards)
		rt.Repeat(map[string]func(*rapid.T){
			"send":    m.send,
			"resend":  m.resend,
			"update":  m.update,
			"retract": m.retract,
			"work":    m.work,
			"crash":   m.crash,
			"race":    m.race,
			"sweep":   m.sweep,
			"advance": m.advance,
			"":        m.check,
		})
	})
}

// The dimensions of the model: small, so that names collide.
var (
	mPrincipals = []string{"leitstelle", "feuerwehr"}
	mEvents     = []string{"fire", "flood"}
	mZones      = [][]string{{"north"}, {"north", "south"}, {"south", "north"}} // two zone sets, in either order
	mSeverities = []alert.Severity{alert.SeverityModerate, alert.SeveritySevere}
	mUrgencies  = []alert.Urgency{alert.UrgencyExpected, alert.UrgencyImmediate}
	mChannels   = [][]alert.Kind{{alert.KindSiren}, {alert.KindSiren, alert.KindPA}, {alert.KindPA, alert.KindSiren}}
	mKeys       = []string{"", "", "k1", "k2"} // Idempotency-Keys: reuse is the point
	mExpiries   = []time.Duration{90 * time.Second, 10 * time.Minute, 45 * time.Minute}
	mSteps      = []time.Duration{400 * time.Millisecond, 5 * time.Second, 2 * time.Minute, 20 * time.Minute}
	mKinds      = []alert.Kind{alert.KindSiren, alert.KindPA}
	mOutcomes   = []alert.State{alert.StateDelivered, alert.StateFailed, alert.StateSent, alert.StateRetry, alert.StateQueued}
)

const (
	crashLease = 300 * time.Millisecond
	// retryLater is how far a worker may push a handed-back target out.
	retryLater = 30 * time.Second
)

var modelRun atomic.Int64

// request is what a sender asks for: the content of an alert and how it is named.
type request struct {
	principal, event, msgType string
	zones                     []string
	sev                       alert.Severity
	urg                       alert.Urgency
	channels                  []alert.Kind
	key                       string
	expires                   time.Duration
	supersedes                []alert.ID
}

// fingerprint is the model's own fingerprint: sender, event, zone set, type, status.
func (r request) fingerprint() string {
	z := slices.Clone(r.zones)
	slices.Sort(z)
	return strings.Join([]string{r.principal, r.event, strings.Join(z, ","), r.msgType, string(alert.StatusActual)}, "|")
}

// content is what an Idempotency-Key's repeat must say again (not who, when,
// or what it supersedes).
func (r request) content() string {
	z := slices.Clone(r.zones)
	slices.Sort(z)
	return fmt.Sprintf("%s|%s|%s|%d|%d|%s", r.msgType, r.event, strings.Join(z, ","), r.sev, r.urg, kindSet(r.channels))
}

func kindSet(ks []alert.Kind) string {
	s := make([]string, len(ks))
	for i, k := range ks {
		s[i] = string(k)
	}
	slices.Sort(s)
	return strings.Join(s, ",")
}

func (r request) String() string {
	s := fmt.Sprintf("%s %s/%s %v %s/%s %v exp+%v", r.msgType, r.principal, r.event, r.zones, r.sev, r.urg, r.channels, r.expires)
	if r.key != "" {
		s += " key=" + r.key
	}
	if len(r.supersedes) > 0 {
		s += fmt.Sprintf(" supersedes=%v", r.supersedes)
	}
	return s
}

// route gives an alert's targets: two sirens, and the PA zone if it asks for PA.
func route(chs []alert.Kind) []alert.Target {
	ts := []alert.Target{{Kind: alert.KindSiren, ID: "s1"}, {Kind: alert.KindSiren, ID: "s2"}}
	if slices.Contains(chs, alert.KindPA) {
		ts = append(ts, alert.Target{Kind: alert.KindPA, ID: "p1"})
	}
	return ts
}

// mTarget is what the model knows of one target of one alert.
type mTarget struct {
	// reported: a worker reported an attempt (sent, delivered, failed, retry).
	reported bool
	// crashed: a worker died holding it, so it may have been reached.
	crashed bool
	// final: a worker reported a final outcome of the original.
	final bool
	// rFinal: a worker reported a final outcome of the retraction.
	rFinal bool
}

// attempted: the target may have been reached and is owed a retraction.
func (t *mTarget) attempted() bool { return t.reported || t.crashed }

func (t *mTarget) String() string {
	return fmt.Sprintf("{reported:%v crashed:%v final:%v retraction-final:%v}", t.reported, t.crashed, t.final, t.rFinal)
}

// mAlert is a stored alert in the model.
type mAlert struct {
	id      alert.ID
	req     request
	expires time.Time
	// fenced: retracted or superseded; swept: its ledger's sweep has run.
	fenced, swept bool
	targets       map[string]*mTarget // by target key "kind/id"
}

type model struct {
	ctx       context.Context
	rdb       redis.UniversalClient
	prefix    string
	now       time.Time
	q, doomed *priority.Queue

	n        int
	alerts   map[alert.ID]*mAlert
	stored   []alert.ID         // in order of creation
	absorbed []alert.ID         // ids of requests that made no alert
	idem     map[string]idemUse // principal and key -> the alert and the request's content
	fps      map[string]alert.ID
	requests []request
}

func newModel(rdb redis.UniversalClient, shards int) *model {
	m := &model{
		ctx: context.Background(), rdb: rdb,
		prefix: fmt.Sprintf("model%d", modelRun.Add(1)),
		now:    time.UnixMilli(time.Now().UnixMilli()), // whole ms: the scripts see ms
		alerts: map[alert.ID]*mAlert{}, idem: map[string]idemUse{}, fps: map[string]alert.ID{},
	}
	clock := func() time.Time { return m.now }
	// The dedup window is far longer than any sequence's clock span (and it
	// is a Redis TTL, in real time): the window never closes in the model.
	m.q = priority.New(rdb, priority.Options{Prefix: m.prefix, Now: clock, DedupWindow: time.Hour, BatchSize: 2, Shards: shards})
	m.doomed = priority.New(rdb, priority.Options{Prefix: m.prefix, Now: clock, DedupWindow: time.Hour, BatchSize: 2, Lease: crashLease, Shards: shards})
	return m
}

func (m *model) logf(t *rapid.T, format string, args ...any) {
	t.Logf("[%s] "+format, append([]any{m.now.Format("15:04:05.000")}, args...)...)
}

// --- sends ---

func (m *model) drawRequest(t *rapid.T) request {
	return request{
		principal: rapid.SampledFrom(mPrincipals).Draw(t, "principal"),
		event:     rapid.SampledFrom(mEvents).Draw(t, "event"),
		msgType:   "Alert",
		zones:     rapid.SampledFrom(mZones).Draw(t, "zones"),
		sev:       rapid.SampledFrom(mSeverities).Draw(t, "severity"),
		urg:       rapid.SampledFrom(mUrgencies).Draw(t, "urgency"),
		channels:  rapid.SampledFrom(mChannels).Draw(t, "channels"),
		key:       rapid.SampledFrom(mKeys).Draw(t, "key"),
		expires:   rapid.SampledFrom(mExpiries).Draw(t, "expires"),
	}
}

// send: a fresh alert.
func (m *model) send(t *rapid.T) { m.enqueue(t, m.drawRequest(t)) }

// resend: an earlier request again (a sender's retry, a second panel, a
// repeat with another key), or a fresh one if there was none.
func (m *model) resend(t *rapid.T) {
	if len(m.requests) == 0 {
		m.send(t)
		return
	}
	r := rapid.SampledFrom(m.requests).Draw(t, "earlier")
	switch rapid.IntRange(0, 3).Draw(t, "keyMode") {
	case 0: // the same request, same key
	case 1:
		r.key = ""
	case 2:
		r.key = rapid.SampledFrom(mKeys).Draw(t, "key")
	case 3: // same key, something else changed
		r.sev = rapid.SampledFrom(mSeverities).Draw(t, "severity")
		r.channels = rapid.SampledFrom(mChannels).Draw(t, "channels")
	}
	m.enqueue(t, r)
}

// update: an alert superseding one or two earlier ones (a CAP Update).
func (m *model) update(t *rapid.T) {
	r := m.drawRequest(t)
	r.msgType = "Update"
	if len(m.stored) > 0 {
		r.supersedes = []alert.ID{rapid.SampledFrom(m.stored).Draw(t, "supersedes")}
		if rapid.IntRange(0, 3).Draw(t, "two") == 0 {
			if o := rapid.SampledFrom(m.stored).Draw(t, "supersedes2"); o != r.supersedes[0] {
				r.supersedes = append(r.supersedes, o)
			}
		}
	}
	m.enqueue(t, r)
}

// verdict is how a send was decided.
type verdict struct {
	what    string // new, duplicate, conflict
	id      alert.ID
	why     string
	earlier alert.ID
	fenced  []alert.ID
}

func (v verdict) String() string {
	s := v.what + " " + string(v.id)
	if v.why != "" {
		s += " by " + v.why
	}
	if v.earlier != "" {
		s += " (earlier " + string(v.earlier) + ")"
	}
	if len(v.fenced) > 0 {
		s += fmt.Sprintf(" fencing %v", v.fenced)
	}
	return s
}

// idemUse is what an Idempotency-Key names: an alert, and the content of
// the request that used the key.
type idemUse struct {
	id      alert.ID
	content string
}

// predict applies the dedup rules of enqueueCmd's doc comment.
func (m *model) predict(r request, id alert.ID) verdict {
	if r.key != "" {
		if u, ok := m.idem[r.principal+"\x00"+r.key]; ok {
			if u.content != r.content() {
				return verdict{what: "conflict", id: u.id}
			}
			return verdict{what: "duplicate", id: u.id, why: "idempotency_key"}
		}
	}
	v := verdict{what: "new", id: id}
	if prev, ok := m.fps[r.fingerprint()]; ok && len(r.supersedes) == 0 { // an update is never absorbed
		e := m.alerts[prev]
		v.earlier = prev
		switch {
		case e.fenced:
			v.why = "retracted"
		case !m.now.Before(e.expires):
			v.why = "expired"
		case r.sev > e.req.sev || r.urg > e.req.urg:
			v.why = "escalated"
		default:
			for _, k := range r.channels {
				if !slices.Contains(e.req.channels, k) {
					v.why = "escalated"
				}
			}
		}
		if v.why == "" {
			return verdict{what: "duplicate", id: prev, why: "fingerprint"}
		}
	}
	for _, s := range r.supersedes {
		if e, ok := m.alerts[s]; ok && !e.fenced && !slices.Contains(v.fenced, s) {
			v.fenced = append(v.fenced, s)
		}
	}
	slices.Sort(v.fenced)
	return v
}

func (m *model) enqueue(t *rapid.T, r request) {
	m.n++
	id := alert.ID(fmt.Sprintf("a%d", m.n))
	a := &alert.Alert{ID: id, Principal: r.principal, Status: alert.StatusActual, MsgType: r.msgType, Event: r.event,
		Severity: r.sev, Urgency: r.urg, Zones: slices.Clone(r.zones), Channels: slices.Clone(r.channels),
		Sent: m.now, Expires: m.now.Add(r.expires), Priority: alert.PriorityOf(r.sev, r.urg)}
	want := m.predict(r, id)
	res, err := m.q.Enqueue(m.ctx, priority.Plan{Alert: a, IdempotencyKey: r.key, Fingerprint: priority.Fingerprint(a),
		Targets: route(r.channels), Supersedes: r.supersedes})
	var got verdict
	switch {
	case errors.Is(err, priority.ErrIdempotencyConflict):
		got = verdict{what: "conflict", id: res.ID}
	case err != nil:
		t.Fatalf("Enqueue(%s %s): %v", id, r, err)
	case res.Duplicate:
		got = verdict{what: "duplicate", id: res.ID, why: res.Why, earlier: res.Earlier}
	default:
		got = verdict{what: "new", id: res.ID, why: res.Why, earlier: res.Earlier, fenced: slices.Sorted(slices.Values(res.Fenced))}
	}
	m.logf(t, "send %s: %s -> %s", id, r, got)
	if got.String() != want.String() {
		t.Fatalf("SEND DECIDED WRONG: %s %s was decided %q, the dedup rules say %q", id, r, got, want)
	}
	m.requests = append(m.requests, r)
	if want.what == "duplicate" && want.why == "fingerprint" && r.key != "" {
		m.idem[r.principal+"\x00"+r.key] = idemUse{want.id, r.content()} // the key names the alert that absorbed it
	}
	if want.what != "new" {
		m.absorbed = append(m.absorbed, id)
		return
	}
	ma := &mAlert{id: id, req: r, expires: a.Expires, targets: map[string]*mTarget{}}
	for _, tg := range route(r.channels) {
		ma.targets[tg.Key()] = &mTarget{}
	}
	m.alerts[id] = ma
	m.stored = append(m.stored, id)
	if r.key != "" {
		m.idem[r.principal+"\x00"+r.key] = idemUse{id, r.content()}
	}
	m.fps[r.fingerprint()] = id
	for _, f := range want.fenced {
		m.alerts[f].fenced = true
	}
	if len(want.fenced) > 0 && rapid.Bool().Draw(t, "sweepNow") {
		for _, f := range want.fenced {
			m.sweepOne(t, f)
		}
	}
}

// --- retractions ---

func (m *model) retract(t *rapid.T) {
	ids := append(slices.Clone(m.stored), m.absorbed...)
	ids = append(ids, "unknown")
	id := rapid.SampledFrom(ids).Draw(t, "retract")
	_, err := m.q.Retract(m.ctx, id, "false_alarm", "model")
	ma := m.alerts[id]
	m.logf(t, "retract %s -> %v", id, err)
	switch {
	case ma == nil:
		if !errors.Is(err, priority.ErrNotFound) {
			t.Fatalf("Retract(%s), never stored: %v, want ErrNotFound", id, err)
		}
	case ma.fenced:
		if !errors.Is(err, priority.ErrRetracted) {
			t.Fatalf("Retract(%s), already fenced: %v, want ErrRetracted", id, err)
		}
	case err != nil:
		t.Fatalf("Retract(%s): %v", id, err)
	default:
		ma.fenced, ma.swept = true, true
	}
}

// sweep runs Sweep on a stored alert: a fenced one whose sweep is pending is
// swept now; for any other it must do nothing.
func (m *model) sweep(t *rapid.T) {
	if len(m.stored) == 0 {
		t.Skip("no alert")
	}
	var pending []alert.ID
	for _, id := range m.stored {
		if a := m.alerts[id]; a.fenced && !a.swept {
			pending = append(pending, id)
		}
	}
	ids := m.stored
	if len(pending) > 0 && rapid.Bool().Draw(t, "pending") {
		ids = pending
	}
	m.sweepOne(t, rapid.SampledFrom(ids).Draw(t, "sweep"))
}

func (m *model) sweepOne(t *rapid.T, id alert.ID) {
	ma := m.alerts[id]
	n, err := m.q.Sweep(m.ctx, id)
	m.logf(t, "sweep %s -> %d retractions, %v", id, n, err)
	if err != nil {
		t.Fatalf("Sweep(%s): %v", id, err)
	}
	if (!ma.fenced || ma.swept) && n != 0 {
		t.Fatalf("Sweep(%s) of an alert not fenced or already swept queued %d retractions, want 0", id, n)
	}
	if ma.fenced {
		ma.swept = true
	}
}

// --- workers ---

// laneState is a lane read straight from Redis.
type laneState struct {
	jobs                   map[string]priority.Job
	ready, leases, delayed map[string]float64
}

// Every shard's lane of kind counts as one: job ids are unique across
// shards (they start with the alert id).
func (m *model) lane(t *rapid.T, kind alert.Kind) laneState {
	ls := laneState{jobs: map[string]priority.Job{}, ready: map[string]float64{}, leases: map[string]float64{}, delayed: map[string]float64{}}
	for _, k := range m.q.LaneKeys(kind) {
		raw, err := m.rdb.HGetAll(m.ctx, k[1]).Result()
		if err != nil {
			t.Fatal(err)
		}
		for id, s := range raw {
			var j priority.Job
			if err := json.Unmarshal([]byte(s), &j); err != nil {
				t.Fatalf("job %s: %v: %s", id, err, s)
			}
			ls.jobs[id] = j
		}
		set := func(key string, out map[string]float64) {
			zs, err := m.rdb.ZRangeWithScores(m.ctx, key, 0, -1).Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, z := range zs {
				out[z.Member.(string)] = z.Score
			}
		}
		set(k[0], ls.ready)
		set(k[2], ls.leases)
		set(k[3], ls.delayed)
	}
	return ls
}

func (m *model) fencedInRedis(t *rapid.T, id alert.ID) bool {
	h, _ := m.q.AlertKeys(m.ctx, id)
	v, err := m.rdb.HGet(m.ctx, h, "fence").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return v == "1"
}

func (m *model) ledgerState(t *rapid.T, id alert.ID, field string) string {
	_, l := m.q.AlertKeys(m.ctx, id)
	v, err := m.rdb.HGet(m.ctx, l, field).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return v
}

// claim claims a job of kind with q and checks it against what was ready.
func (m *model) claim(t *rapid.T, q *priority.Queue, who string, kind alert.Kind, min alert.Priority) *priority.Job {
	// What the claim may take: ready jobs, delayed ones that are due and
	// leased ones whose lease has run out, less originals of fenced alerts
	// and expired jobs (the claim drops those).
	ls := m.lane(t, kind)
	nowMS := float64(m.now.UnixMilli())
	best, eligible := alert.Priority(-1), []string{}
	for id, j := range ls.jobs {
		_, ready := ls.ready[id]
		lease, leased := ls.leases[id]
		due, delayed := ls.delayed[id]
		if !ready && !(leased && lease <= nowMS) && !(delayed && due <= nowMS) {
			continue
		}
		if (j.Msg == "a" && m.fencedInRedis(t, j.AlertID)) || m.now.UnixMilli() >= j.ExpireMS || j.Priority < min {
			continue
		}
		eligible = append(eligible, fmt.Sprintf("%s(p%d)", id, j.Priority))
		best = max(best, j.Priority)
	}
	j, err := q.Claim(m.ctx, kind, min)
	if err != nil {
		t.Fatalf("Claim(%s): %v", kind, err)
	}
	if j == nil {
		m.logf(t, "%s claims %s (min %d) -> nothing", who, kind, min)
		if len(eligible) > 0 {
			t.Fatalf("CLAIM MISSED WORK: %s claim on %s (min %d) returned nothing, but these jobs were ready: %v", who, kind, min, eligible)
		}
		return nil
	}
	m.logf(t, "%s claims %s (min %d) -> %s %s/%s p%d %v", who, kind, min, j.ID, j.AlertID, j.Msg, j.Priority, j.Targets)
	ma := m.alerts[j.AlertID]
	if ma == nil {
		t.Fatalf("claimed %s of alert %s, which the model never stored", j.ID, j.AlertID)
	}
	for _, tg := range j.Targets {
		key := string(kind) + "/" + tg
		mt := ma.targets[key]
		if mt == nil {
			t.Fatalf("claimed %s with target %s, not a target of %s", j.ID, key, j.AlertID)
		}
		switch j.Msg {
		case "a":
			if ma.fenced {
				t.Fatalf("ORIGINAL AFTER THE FENCE: %s claimed %s, an original of %s, which was fenced (retracted or superseded) before", who, j.ID, j.AlertID)
			}
			if !m.now.Before(ma.expires) {
				t.Fatalf("ORIGINAL AFTER EXPIRY: %s claimed %s of %s, which expired at %s", who, j.ID, j.AlertID, ma.expires.Format("15:04:05.000"))
			}
			if mt.final {
				t.Fatalf("DELIVERED TWICE: %s claimed %s, whose target %s already had a final outcome", who, j.ID, key)
			}
		case "r":
			if !ma.fenced {
				t.Fatalf("retraction job %s claimed for %s, which was never fenced", j.ID, j.AlertID)
			}
			if st := m.ledgerState(t, j.AlertID, key); st == string(alert.StateInFlight) {
				t.Fatalf("RETRACTION BEFORE ITS ORIGINAL ENDED: %s claimed retraction %s for %s while its original is in flight", who, j.ID, key)
			}
			if !mt.attempted() {
				t.Fatalf("RETRACTION OF A TARGET NEVER ATTEMPTED: %s claimed retraction %s for %s %s", who, j.ID, key, mt)
			}
			if mt.rFinal {
				t.Fatalf("RETRACTION DELIVERED TWICE: %s claimed %s, whose target %s's retraction already had a final outcome", who, j.ID, key)
			}
		default:
			t.Fatalf("job %s has message %q", j.ID, j.Msg)
		}
	}
	if _, known := ls.jobs[j.ID]; !known {
		// Made in this claim: dropping a fenced original whose targets a dead
		// worker left in flight queues their retractions, and the claim
		// goes on to take one. Priority 10 is the top: nothing outranks it.
		if j.Msg != "r" || j.Priority != alert.PriorityRetraction {
			t.Fatalf("%s claimed %s (%s, p%d), which was not on the lane before the claim", who, j.ID, j.Msg, j.Priority)
		}
	} else if j.Priority != best {
		t.Fatalf("STRICT PRIORITY BROKEN: %s claimed %s of priority %d; the best ready on %s was %d: %v", who, j.ID, j.Priority, kind, best, eligible)
	}
	return j
}

// ending is how a worker ends a job: the outcome of each target (all
// StateQueued for a release) and when handed-back targets may go again.
type ending struct {
	release bool
	out     map[string]alert.State
	retryAt time.Time
}

func isFinal(st alert.State) bool {
	return st == alert.StateDelivered || st == alert.StateFailed || st == alert.StateSent
}

// drawEnding draws how j ends and, sometimes, reports its final outcomes
// early (Progress) as workers do in batches; the Finish that follows says
// the same again.
func (m *model) drawEnding(t *rapid.T, j *priority.Job) ending {
	e := ending{out: map[string]alert.State{}}
	if rapid.IntRange(0, 4).Draw(t, "release") == 0 {
		e.release = true
		for _, tg := range j.Targets {
			e.out[tg] = alert.StateQueued
		}
		return e
	}
	for _, tg := range j.Targets {
		e.out[tg] = rapid.SampledFrom(mOutcomes).Draw(t, "outcome")
	}
	switch rapid.IntRange(0, 2).Draw(t, "retryAt") {
	case 1:
		e.retryAt = m.now
	case 2:
		e.retryAt = m.now.Add(retryLater)
	}
	early := map[string]alert.State{}
	for tg, st := range e.out {
		if isFinal(st) {
			early[tg] = st
		}
	}
	if len(early) > 0 && rapid.IntRange(0, 2).Draw(t, "progress") == 0 {
		m.logf(t, "progress %s %v", j.ID, early)
		if err := m.q.Progress(m.ctx, j, early); err != nil {
			t.Fatalf("Progress(%s): %v", j.ID, err)
		}
		m.record(j, early)
	}
	return e
}

// end ends j as drawn.
func (m *model) end(t *rapid.T, j *priority.Job, e ending) {
	var err error
	if e.release {
		m.logf(t, "release %s", j.ID)
		err = m.q.Release(m.ctx, j)
	} else {
		m.logf(t, "finish %s %v retryAt=%s", j.ID, e.out, fmtTime(e.retryAt))
		err = m.q.Finish(m.ctx, j, e.out, e.retryAt)
	}
	if err != nil {
		t.Fatalf("Finish(%s): %v", j.ID, err)
	}
	m.record(j, e.out)
}

// finish ends a claimed job with random outcomes, or releases it.
func (m *model) finish(t *rapid.T, j *priority.Job) { m.end(t, j, m.drawEnding(t, j)) }

// record notes what a worker reported of j's targets.
func (m *model) record(j *priority.Job, out map[string]alert.State) {
	ma := m.alerts[j.AlertID]
	for tg, st := range out {
		mt := ma.targets[string(j.Kind)+"/"+tg]
		switch {
		case j.Msg == "r":
			mt.rFinal = mt.rFinal || isFinal(st)
		case isFinal(st):
			mt.final, mt.reported = true, true
		case st == alert.StateRetry:
			// A target handed back as never attempted (StateQueued) after
			// an earlier attempt stays attempted: the ledger keeps it.
			mt.reported = true
		}
	}
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return "zero"
	}
	return t.Format("15:04:05.000")
}

func (m *model) drawMin(t *rapid.T) alert.Priority {
	if rapid.IntRange(0, 3).Draw(t, "useMin") == 0 {
		return alert.Priority(rapid.IntRange(0, 10).Draw(t, "min"))
	}
	return 0
}

// workOne claims one job and finishes it.
func (m *model) workOne(t *rapid.T) {
	kind := rapid.SampledFrom(mKinds).Draw(t, "kind")
	if j := m.claim(t, m.q, "worker", kind, m.drawMin(t)); j != nil {
		m.finish(t, j)
	}
}

// work: a worker takes up to four jobs in turn.
func (m *model) work(t *rapid.T) {
	for range rapid.IntRange(1, 4).Draw(t, "jobs") {
		m.workOne(t)
	}
}

// crash: a worker with a short lease claims a job and dies with it.
func (m *model) crash(t *rapid.T) {
	kind := rapid.SampledFrom(mKinds).Draw(t, "kind")
	j := m.claim(t, m.doomed, "doomed worker", kind, 0)
	if j == nil {
		return
	}
	if j.Msg == "a" {
		for _, tg := range j.Targets {
			mt := m.alerts[j.AlertID].targets[string(kind)+"/"+tg]
			mt.crashed = true
		}
	}
	m.logf(t, "worker holding %s dies", j.ID)
	if rapid.Bool().Draw(t, "pastLease") {
		m.now = m.now.Add(crashLease + time.Millisecond)
		m.logf(t, "clock past its lease")
	}
}

// race fences an alert with claims between the fence and its sweep: a job may
// be held across the fence, a few more are claimed and finished, the held one
// is finished, and the sweep runs, in a random order.
func (m *model) race(t *rapid.T) {
	if len(m.stored) == 0 {
		t.Skip("no alert")
	}
	id := rapid.SampledFrom(m.stored).Draw(t, "fence")
	ma := m.alerts[id]
	var held *priority.Job
	var heldEnding ending
	if rapid.Bool().Draw(t, "hold") {
		held = m.claim(t, m.q, "worker (holds it)", rapid.SampledFrom(mKinds).Draw(t, "kind"), 0)
		if held != nil {
			heldEnding = m.drawEnding(t, held) // its early outcomes go in before the fence
		}
	}
	var first []alert.Target
	for _, tg := range route(ma.req.channels) {
		if rapid.IntRange(0, 2).Draw(t, "first") == 0 {
			first = append(first, tg)
		}
	}
	r, err := m.q.Fence(m.ctx, id, "all_clear", "race", first...)
	m.logf(t, "fence %s first=%v -> %+v, %v", id, first, r, err)
	switch {
	case ma.fenced:
		if !errors.Is(err, priority.ErrRetracted) {
			t.Fatalf("Fence(%s), already fenced: %v, want ErrRetracted", id, err)
		}
	case err != nil:
		t.Fatalf("Fence(%s): %v", id, err)
	default:
		ma.fenced = true
	}
	k := rapid.IntRange(0, 3).Draw(t, "between")
	finishAt := rapid.IntRange(0, k).Draw(t, "finishHeldAt")
	sweepAt := rapid.IntRange(0, k).Draw(t, "sweepAt")
	for i := 0; i <= k; i++ {
		if held != nil && i == finishAt {
			m.end(t, held, heldEnding)
		}
		if i == sweepAt {
			m.sweepOne(t, id)
		}
		if i < k {
			m.workOne(t)
		}
	}
}

// advance moves the clock on: leases run out, delayed jobs come due, alerts expire.
func (m *model) advance(t *rapid.T) {
	d := rapid.SampledFrom(mSteps).Draw(t, "by")
	m.now = m.now.Add(d)
	m.logf(t, "clock +%v", d)
}

// --- invariants ---

func (m *model) check(t *rapid.T) {
	// The lanes: every job on exactly one of ready, leases, delayed; no
	// target on two jobs of one message; what each job holds.
	holds := map[string]string{} // "alert|msg|kind/target" -> job id
	for _, kind := range mKinds {
		ls := m.lane(t, kind)
		for id, j := range ls.jobs {
			_, r := ls.ready[id]
			_, l := ls.leases[id]
			_, d := ls.delayed[id]
			if n := btoi(r) + btoi(l) + btoi(d); n != 1 {
				t.Fatalf("JOB LOST OR DOUBLED: job %s is on %d of ready/leases/delayed (ready %v, leased %v, delayed %v)", id, n, r, l, d)
			}
			for _, tg := range j.Targets {
				k := fmt.Sprintf("%s|%s|%s/%s", j.AlertID, j.Msg, kind, tg)
				if other, ok := holds[k]; ok {
					t.Fatalf("TARGET ON TWO JOBS: %s is on %s and %s", k, other, id)
				}
				holds[k] = id
			}
		}
		for _, set := range []map[string]float64{ls.ready, ls.leases, ls.delayed} {
			for id := range set {
				if _, ok := ls.jobs[id]; !ok {
					t.Fatalf("lane %s lists job %s, which has no body", kind, id)
				}
			}
		}
	}
	for _, id := range m.stored {
		m.checkAlert(t, m.alerts[id], holds)
	}
	// The audit: numbered without gaps, canonical (auditLog), and one
	// alert.accepted per alert stored.
	log := auditLog(t, m.rdb, m.prefix)
	if n := len(ofKind(log, "alert.accepted")); n != len(m.stored) {
		t.Fatalf("AUDIT: %d alert.accepted entries for %d alerts accepted", n, len(m.stored))
	}
	retracted := map[string]int{}
	for _, e := range ofKind(log, "alert.retracted") {
		retracted[e.Subject]++
	}
	for _, id := range m.stored {
		if want := btoi(m.alerts[id].fenced); retracted[string(id)] != want {
			t.Fatalf("AUDIT: %s has %d alert.retracted entries, want %d", id, retracted[string(id)], want)
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func (m *model) checkAlert(t *rapid.T, ma *mAlert, holds map[string]string) {
	st, err := m.q.Status(m.ctx, ma.id)
	if err != nil {
		t.Fatalf("Status(%s): %v", ma.id, err)
	}
	ds, err := m.q.Deliveries(m.ctx, ma.id)
	if err != nil {
		t.Fatalf("Deliveries(%s): %v", ma.id, err)
	}
	if (st.State == "retracted") != ma.fenced {
		t.Fatalf("Status(%s).State = %s, but the model says fenced=%v", ma.id, st.State, ma.fenced)
	}

	// Counters against the ledger.
	want := map[alert.Kind]*priority.Counts{}
	for _, d := range ds {
		c := want[d.Target.Kind]
		if c == nil {
			c = &priority.Counts{}
			want[d.Target.Kind] = c
		}
		if d.State == "" {
			t.Fatalf("%s: %s has a retraction (%s) and no original", ma.id, d.Target.Key(), d.Retraction)
		}
		c.Targets++
		switch d.State {
		case alert.StateQueued:
			c.Queued++
		case alert.StateInFlight:
			c.InFlight++
		case alert.StateRetry:
			c.Retrying++
		case alert.StateSent:
			c.Sent++
		case alert.StateDelivered:
			c.Delivered++
		case alert.StateFailed:
			c.Failed++
		case alert.StateCancelled:
			c.Cancelled++
		case alert.StateExpired:
			c.Expired++
		default:
			t.Fatalf("%s: %s is in unknown state %q", ma.id, d.Target.Key(), d.State)
		}
		if d.Retraction != "" {
			c.Owed++
			switch d.Retraction {
			case alert.StateDelivered, alert.StateSent:
				c.Retracted++
			case alert.StateFailed, alert.StateExpired:
				c.RetractFailed++
			}
		}
	}
	for _, kind := range mKinds {
		got, w := priority.Counts{}, priority.Counts{}
		if c := st.Counts[kind]; c != nil {
			got = *c
		}
		if c := want[kind]; c != nil {
			w = *c
		}
		if ma.fenced {
			got.Owed -= got.InFlight // Status counts in-flight targets as owed
		}
		got.Summary = ""
		if got != w {
			t.Fatalf("COUNTERS DISAGREE WITH THE LEDGER: %s %s: Status counts %+v, ledger %+v (%v)", ma.id, kind, got, w, ds)
		}
	}

	// Every ledger entry against the model.
	seen := 0
	for _, d := range ds {
		key := d.Target.Key()
		mt := ma.targets[key]
		if mt == nil {
			t.Fatalf("%s: ledger has %s, not one of its targets", ma.id, key)
		}
		seen++
		if open := d.State == alert.StateQueued || d.State == alert.StateRetry || d.State == alert.StateInFlight; open && holds[string(ma.id)+"|a|"+key] == "" {
			t.Fatalf("TARGET STRANDED: %s %s is %s in the ledger, but no job holds it", ma.id, key, d.State)
		}
		if open := d.Retraction == alert.StateQueued || d.Retraction == alert.StateRetry || d.Retraction == alert.StateInFlight; open && holds[string(ma.id)+"|r|"+key] == "" {
			t.Fatalf("RETRACTION STRANDED: %s %s's retraction is %s in the ledger, but no job holds it", ma.id, key, d.Retraction)
		}
		if mt.final && d.State != alert.StateDelivered && d.State != alert.StateFailed && d.State != alert.StateSent {
			t.Fatalf("%s %s: a worker reported a final outcome, the ledger says %s", ma.id, key, d.State)
		}
		if d.State == alert.StateCancelled && !ma.fenced {
			t.Fatalf("%s %s is cancelled, but %s was never fenced", ma.id, key, ma.id)
		}
		if d.State == alert.StateExpired && m.now.Before(ma.expires) {
			t.Fatalf("%s %s is expired before its alert expires (%s)", ma.id, key, ma.expires.Format("15:04:05.000"))
		}
		if d.Retraction != "" && !ma.fenced {
			t.Fatalf("%s %s has a retraction, but %s was never fenced", ma.id, key, ma.id)
		}
		if d.Retraction != "" && !mt.attempted() {
			t.Fatalf("RETRACTION OF A TARGET NEVER ATTEMPTED: %s %s (ledger %s) has retraction %s; model %s", ma.id, key, d.State, d.Retraction, mt)
		}
		if !ma.fenced || !ma.swept {
			continue
		}
		switch {
		case d.State == alert.StateInFlight:
			// A dead worker's job still holds it (checked above): its
			// retraction is queued when the attempt ends, not before.
			if d.Retraction != "" {
				t.Fatalf("RETRACTION BEFORE ITS ORIGINAL ENDED: %s %s is in flight and its retraction is %s", ma.id, key, d.Retraction)
			}
		case mt.attempted():
			if d.Retraction == "" {
				t.Fatalf("RETRACTION MISSING: %s was fenced and swept; %s may have been reached %s, the ledger says %s and it has no retraction", ma.id, key, mt, d.State)
			}
		default:
			if d.State != alert.StateCancelled && d.State != alert.StateExpired {
				t.Fatalf("%s was fenced and swept; %s was never attempted, the ledger says %s (want cancelled or expired)", ma.id, key, d.State)
			}
		}
	}
	if seen != len(ma.targets) {
		t.Fatalf("%s: ledger has %d targets, the alert %d: %v", ma.id, seen, len(ma.targets), ds)
	}
}
