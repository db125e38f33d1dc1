// Package priority is Tocsin's Redis-backed queue: deduplication, strict
// priority lanes per channel kind, leases and their reclaim, the per-alert
// delivery ledger, and the fence that stops a retracted alert's deliveries.
//
// Every invariant that spans keys lives in one Lua script (scripts.go); key
// shapes live in keys.go.
package priority

import (
	"cmp"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
)

// Sentinel errors.
var (
	// ErrNotFound: no alert has that id (or it has aged out).
	ErrNotFound = errors.New("alert not found")
	// ErrRetracted: the alert is already retracted.
	ErrRetracted = errors.New("alert already retracted")
	// ErrIdempotencyConflict: the principal's Idempotency-Key names an
	// earlier request with other content (Enqueued.ID names its alert).
	ErrIdempotencyConflict = errors.New("idempotency key reused for a different alert")
	// ErrReplay: the trigger event was seen before.
	ErrReplay = errors.New("trigger event already seen")
	// ErrNotReplicated: the write is on the master, but fewer replicas than
	// Options.WaitReplicas confirmed it in time. Retrying the same request
	// (its Idempotency-Key, or its fingerprint) finds it and waits again.
	ErrNotReplicated = errors.New("stored on the Redis master but not yet on enough replicas")
)

// Options tune a Queue. Zero values take the defaults named on each field.
type Options struct {
	// Prefix goes in front of every key ("tocsin").
	Prefix string
	// DedupWindow is how long a fingerprint makes later alerts duplicates (5m).
	DedupWindow time.Duration
	// IdempotencyTTL is how long an Idempotency-Key is remembered (24h).
	IdempotencyTTL time.Duration
	// Lease is how long a claimed job belongs to its worker without Extend (3s).
	Lease time.Duration
	// BatchSize is the number of targets per job (50).
	BatchSize int
	// PlanChunk is how many targets one enqueue or plan script call queues at
	// most (2,000): the longest Redis is busy with one alert's plan.
	PlanChunk int
	// RetractionTTL is how long a retraction stays worth delivering (1h).
	RetractionTTL time.Duration
	// Retain is how long an alert's record is kept after it expires (7 days).
	Retain time.Duration
	// Now is the clock (time.Now).
	Now func() time.Time
	// WaitReplicas, when above 0, makes the writes an answer promises —
	// storing an alert, fencing one — wait (Redis WAIT, on the same
	// connection) until that many replicas have them, for at most
	// WaitTimeout (1s); fewer in time is ErrNotReplicated. With Sentinel, a
	// failover then loses no alert or retraction that was answered.
	WaitReplicas int
	WaitTimeout  time.Duration
	// Shards is the number of shards (hash slots) the queue spreads its
	// alerts and lanes over (keys.go); 1 by default. On Redis Cluster, use
	// a few per master (e.g. 12 for three). Every instance must use the
	// same number; changing it needs an empty queue.
	Shards int
}

// Queue is the Redis queue. It is safe for concurrent use.
type Queue struct {
	rdb    redis.UniversalClient
	k      keys
	opts   Options
	shards []shard
	// cluster is rdb on Redis Cluster: scripts append audit entries to
	// their shard's outbox, and WAIT goes to the master of the script's slot.
	cluster *redis.ClusterClient
	// homes caches alert id -> shard number (shardOf) with more than one shard.
	homes     sync.Map
	homeCount atomic.Int64
	wake      wakeup
	// noAudit: the scripts append no audit entries (benchmarks measure the
	// audit's cost against it; see export_test.go).
	noAudit bool
}

// New returns a Queue on rdb.
func New(rdb redis.UniversalClient, o Options) *Queue {
	if o.Prefix == "" {
		o.Prefix = "tocsin"
	}
	if o.DedupWindow == 0 {
		o.DedupWindow = 5 * time.Minute
	}
	if o.IdempotencyTTL == 0 {
		o.IdempotencyTTL = 24 * time.Hour
	}
	if o.Lease == 0 {
		o.Lease = 3 * time.Second
	}
	if o.BatchSize == 0 {
		o.BatchSize = 50
	}
	if o.PlanChunk == 0 {
		o.PlanChunk = 2000
	}
	if o.RetractionTTL == 0 {
		o.RetractionTTL = time.Hour
	}
	if o.Retain == 0 {
		o.Retain = 7 * 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.WaitTimeout == 0 {
		o.WaitTimeout = time.Second
	}
	if o.Shards < 1 {
		o.Shards = 1
	}
	q := &Queue{rdb: rdb, k: keys{prefix: o.Prefix}, opts: o}
	q.cluster, _ = rdb.(*redis.ClusterClient)
	for n := range o.Shards {
		q.shards = append(q.shards, q.k.shard(n))
	}
	return q
}

// shardFor is the shard of alerts sent by principal with source.
func (q *Queue) shardFor(principal, source string) shard {
	return q.shards[shardNum(homeOf(principal, source), len(q.shards))]
}

// shardOf is the shard an alert lives in: the only one, or the one whose
// alert hash exists (one pipelined look in every shard, remembered), or
// shard 0 for an unknown alert. An id names no shard of its own: ids are
// the sender's business (a trigger's are made from its event id).
func (q *Queue) shardOf(ctx context.Context, id alert.ID) (shard, error) {
	if len(q.shards) == 1 {
		return q.shards[0], nil
	}
	if n, ok := q.homes.Load(id); ok {
		return q.shards[n.(int)], nil
	}
	found := make([]*redis.IntCmd, len(q.shards))
	q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sh := range q.shards {
			found[i] = p.Exists(ctx, sh.alert(id))
		}
		return nil
	})
	// A shard that cannot answer (its master failing over) is an error only
	// when no other shard has the alert.
	var errs []error
	for i, c := range found {
		if c.Val() == 1 {
			q.remember(id, i)
			return q.shards[i], nil
		}
		errs = append(errs, c.Err())
	}
	if err := errors.Join(errs...); err != nil {
		return shard{}, fmt.Errorf("alert %s: find its shard: %w", id, err)
	}
	return q.shards[0], nil
}

// remember caches an alert's shard; the cache starts over past 100,000
// alerts (a look in every shard finds any alert again).
func (q *Queue) remember(id alert.ID, n int) {
	if q.homeCount.Add(1) > 100000 {
		q.homes.Clear()
		q.homeCount.Store(0)
	}
	q.homes.Store(id, n)
}

// runAcked runs a script whose effect an answer promises. With
// WaitReplicas, the script and a WAIT go in one pipeline, so on one
// connection: WAIT counts the replicas that have this client's writes.
func (q *Queue) runAcked(ctx context.Context, s *redis.Script, keys []string, args ...any) *redis.Cmd {
	if q.opts.WaitReplicas <= 0 {
		return s.Run(ctx, q.rdb, keys, args...)
	}
	// WAIT counts the replicas of the connection's own server: on Redis
	// Cluster, the master of the script's slot.
	var node redis.Cmdable = q.rdb
	if q.cluster != nil {
		m, err := q.cluster.MasterForKey(ctx, keys[0])
		if err != nil {
			out := redis.NewCmd(ctx)
			out.SetErr(err)
			return out
		}
		node = m
	}
	run := func() (*redis.Cmd, *redis.Cmd) {
		var cmd, wait *redis.Cmd
		node.Pipelined(ctx, func(p redis.Pipeliner) error {
			cmd = s.EvalSha(ctx, p, keys, args...)
			wait = p.Do(ctx, "WAIT", q.opts.WaitReplicas, q.opts.WaitTimeout.Milliseconds())
			return nil
		})
		return cmd, wait
	}
	cmd, wait := run()
	if err := cmd.Err(); err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") {
		// A new master (after a failover) has not cached the script yet.
		if err := s.Load(ctx, node.(redis.Scripter)).Err(); err != nil {
			return cmd
		}
		cmd, wait = run()
	}
	if cmd.Err() != nil {
		return cmd
	}
	if n, err := wait.Int(); err != nil || n < q.opts.WaitReplicas {
		out := redis.NewCmd(ctx)
		out.SetErr(fmt.Errorf("%w (%d of %d within %v)", ErrNotReplicated, n, q.opts.WaitReplicas, q.opts.WaitTimeout))
		return out
	}
	return cmd
}

// Lease is the configured lease length.
func (q *Queue) Lease() time.Duration { return q.opts.Lease }

// Ping checks that Redis answers.
func (q *Queue) Ping(ctx context.Context) error { return q.rdb.Ping(ctx).Err() }

// Plan is an alert ready to be queued: the alert, how to recognise a repeat of
// it, and the targets it goes to.
type Plan struct {
	Alert *alert.Alert
	// IdempotencyKey is the sender's Idempotency-Key, if any; it is scoped to Alert.Principal.
	IdempotencyKey string
	// Fingerprint identifies the event (sender, event, zones, type); empty disables it.
	Fingerprint string
	Targets     []alert.Target
	// Supersedes are alerts this one replaces (a CAP Update): they are fenced
	// in the step that stores it, and their ledgers swept (Sweep).
	Supersedes []alert.ID
	// Trigger, if set, is the building system's event this alert comes
	// from: its id is spent in the same step (a replay is ErrReplay).
	Trigger *TriggerEvent
}

// TriggerEvent names a trigger source's event and how long its id is remembered.
type TriggerEvent struct {
	Source, Event string
	TTL           time.Duration
}

// TriggerPrincipalPrefix starts the principal id a trigger source acts as
// ("source:school-button").
const TriggerPrincipalPrefix = "source:"

// Fingerprint builds the dedup fingerprint of an alert: who sent it, its
// event, sorted zones, message type and status. An API principal's alerts
// are its own (with the source it names, if any): one sender can never
// absorb another's alert. Trigger sources coalesce by trigger template
// (Source "trigger/amok-button"): each source was authenticated and allowed
// the zone before it got here, so 52 panels pressed for one event make one
// alert, each panel recorded on it.
func Fingerprint(a *alert.Alert) string {
	zones := slices.Clone(a.Zones)
	slices.Sort(zones)
	who := "p\x00" + a.Principal + "\x00" + a.Source
	if strings.HasPrefix(a.Principal, TriggerPrincipalPrefix) {
		who = "t\x00" + a.Source
	}
	return strings.Join([]string{who, strings.ToLower(a.Event), strings.Join(zones, ","), a.MsgType, string(a.Status)}, "\x00")
}

// contentDigest sums what an alert says and to whom (not its id, times or
// expiry): an Idempotency-Key repeated with another digest is a conflict.
func contentDigest(a *alert.Alert) string {
	zones, kinds := slices.Clone(a.Zones), make([]string, len(a.Channels))
	slices.Sort(zones)
	for i, k := range a.Channels {
		kinds[i] = string(k)
	}
	slices.Sort(kinds)
	return sum(string(a.Status), a.MsgType, a.Source, a.Event, a.Severity.String(), a.Urgency.String(), a.Certainty,
		a.Headline, a.Description, a.Instruction, a.Language, strings.Join(zones, ","), strings.Join(kinds, ","), fmt.Sprint(a.Infos))
}

// channelSet writes an alert's channel kinds as ",siren,sms," for the
// enqueue script's escalation check.
func channelSet(ks []alert.Kind) string {
	var b strings.Builder
	b.WriteString(",")
	for _, k := range ks {
		b.WriteString(string(k) + ",")
	}
	return b.String()
}

// Enqueued is what Enqueue did.
type Enqueued struct {
	// ID is the new alert, or the alert that absorbed the request.
	ID        alert.ID
	Duplicate bool
	// Why says which rule decided: for a duplicate "idempotency_key" or
	// "fingerprint"; for a new alert, why the earlier alert with the same
	// fingerprint (Earlier) did not absorb it: "retracted" (or superseded),
	// "expired" or "escalated"; "" when there was none.
	Why     string
	Earlier alert.ID
	// Fenced are the superseded alerts fenced in the same step.
	Fenced []alert.ID
}

type jobSpec struct {
	K alert.Kind `json:"k"`
	T []string   `json:"t"`
}

func sum(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	return hex.EncodeToString(h.Sum(nil)[:16])
}

// Enqueue stores a new alert, its ledger and its jobs, or returns the alert
// that absorbs it with Duplicate set, by the rules written at enqueueCmd (a
// retracted, superseded or expired alert never absorbs a new one, nor does
// one the new request escalates). When it returns nil the alert is committed
// in Redis with every job planned, and the alerts it supersedes are fenced.
// A reused Idempotency-Key with other content is ErrIdempotencyConflict, a
// trigger event seen before ErrReplay; either way nothing was stored.
//
// A plan of more than PlanChunk targets is queued in chunks, one script call
// each, so Redis is never blocked for long (a siren trigger waits behind one
// chunk, not a million people) and the first messages go out while the rest is
// planned. The alert sits on the planning set meanwhile; if this process dies,
// Resume in another instance finishes the plan after a lease.
func (q *Queue) Enqueue(ctx context.Context, p Plan) (Enqueued, error) {
	res, specs, planned, err := q.enqueueFirst(ctx, p)
	if err != nil || res.Duplicate || planned >= len(specs) {
		return res, err
	}
	return res, q.planRest(ctx, p.Alert, specs, planned)
}

// enqueueFirst runs the enqueue script with the plan's first chunk.
func (q *Queue) enqueueFirst(ctx context.Context, p Plan) (res Enqueued, specs []jobSpec, planned int, err error) {
	a := p.Alert
	doc, err := json.Marshal(a)
	if err != nil {
		return res, nil, 0, fmt.Errorf("enqueue: encode alert: %w", err)
	}
	specs = q.specs(p.Targets)
	planned = q.chunk(specs, 0)
	jobs, err := json.Marshal(specs[:planned])
	if err != nil {
		return res, nil, 0, fmt.Errorf("enqueue: encode jobs: %w", err)
	}
	now := q.opts.Now()
	sh := q.shardFor(a.Principal, a.Source)
	idemTTL, fpTTL := int64(0), int64(0)
	idemKey, fpKey, eventKey := sh.p+":-", sh.p+":-", sh.p+":-"
	eventTTL := int64(0)
	digest := "" // only a request with a key is ever compared by content
	if p.IdempotencyKey != "" {
		idemTTL = q.opts.IdempotencyTTL.Milliseconds()
		idemKey = sh.dedup("i", sum(a.Principal, p.IdempotencyKey))
		digest = contentDigest(a)
	}
	fpSum := ""
	if p.Fingerprint != "" && q.opts.DedupWindow > 0 {
		fpTTL = q.opts.DedupWindow.Milliseconds()
		fpSum = sum(p.Fingerprint)
		fpKey = sh.dedup("f", fpSum)
	}
	if p.Trigger != nil {
		eventKey, eventTTL = sh.triggerEvent(p.Trigger.Source, p.Trigger.Event), p.Trigger.TTL.Milliseconds()
	}
	keep := a.Expires.Add(q.opts.Retain)
	// Superseded alerts of this shard are fenced in the enqueue's step;
	// another home's (an Update naming someone else's message) right after.
	var here, elsewhere []alert.ID
	for _, id := range p.Supersedes {
		o, err := q.shardOf(ctx, id)
		if err != nil {
			return res, nil, 0, fmt.Errorf("enqueue: %w", err)
		}
		if o.n == sh.n {
			here = append(here, id)
		} else {
			elsewhere = append(elsewhere, id)
		}
	}
	args := []any{sh.p, string(a.ID), doc, idemTTL, fpTTL, now.UnixMilli(), keep.UnixMilli(),
		a.Expires.UnixMilli(), int(a.Priority), jobs, now.Add(-q.opts.Retain).UnixMilli(),
		len(specs), now.Add(q.opts.Lease).UnixMilli(),
		int(a.Severity), int(a.Urgency), channelSet(a.Channels), digest,
		eventTTL, q.k.fence(), now.Add(q.opts.Lease).UnixMilli(), triggerSource(p.Trigger)}
	who := actor(ctx)
	accHead, acc := q.auditParts(audit.Entry{Time: now, Kind: "alert.accepted", Actor: who, Subject: string(a.ID),
		Detail: acceptedDetail(p, fpSum)}, "earlier", "why")
	dupHead, dup := q.auditParts(audit.Entry{Time: now, Kind: "alert.duplicate", Actor: who,
		Detail: detailOf("request", string(a.ID), "fingerprint", fpSum, "trigger", triggerSource(p.Trigger))}, "reason")
	args = append(args, accHead, acc[0], acc[1], acc[2], dupHead, dup[0], dup[1], q.auditTime(now), who)
	update := ""
	if len(p.Supersedes) > 0 {
		update = "+" + strings.Join(idStrings(elsewhere), ",")
	}
	args = append(args, update)
	for _, id := range here {
		args = append(args, string(id))
	}
	r, err := q.runAcked(ctx, enqueueCmd,
		append([]string{idemKey, fpKey, sh.alert(a.ID), sh.ledger(a.ID), sh.alerts(), sh.planning(), eventKey, sh.retracting()},
			q.auditKeys(sh)...),
		args...).Slice()
	if err != nil {
		return res, nil, 0, fmt.Errorf("enqueue: %w", err)
	}
	q.moved(ctx, sh)
	res = Enqueued{ID: alert.ID(str(r[1])), Why: str(r[2]), Earlier: alert.ID(str(r[3]))}
	if f, ok := r[4].([]any); ok {
		for _, id := range f {
			res.Fenced = append(res.Fenced, alert.ID(str(id)))
		}
	}
	switch r[0].(int64) {
	case 1:
		res.Duplicate = true
	case 2:
		return res, nil, 0, ErrIdempotencyConflict
	case 3:
		return res, nil, 0, ErrReplay
	}
	if !res.Duplicate && len(q.shards) > 1 {
		q.remember(a.ID, sh.n)
	}
	// A crash before these leaves the other home's alerts in force beside
	// their update (never neither); the sender's repeat of the update (a
	// duplicate, by its Idempotency-Key) fences them then: the update keeps
	// their ids.
	if res.Duplicate {
		elsewhere = nil
		if res.Why == "idempotency_key" && !IsTombstone(res.ID) {
			if v, err := q.rdb.HGet(ctx, sh.alert(res.ID), "sup_else").Result(); err == nil && v != "" {
				for _, id := range strings.Split(v, ",") {
					elsewhere = append(elsewhere, alert.ID(id))
				}
			}
		}
	}
	for _, id := range elsewhere {
		_, err := q.Fence(ctx, id, "superseded", "superseded by "+string(res.ID))
		if err == nil {
			res.Fenced = append(res.Fenced, id)
		} else if !errors.Is(err, ErrRetracted) && !errors.Is(err, ErrNotFound) {
			return res, specs, planned, fmt.Errorf("enqueue: fence superseded %s: %w", id, err)
		}
	}
	return res, specs, planned, nil
}

// acceptedDetail is the detail of an alert.accepted entry that Go knows
// (the script adds why and earlier).
func acceptedDetail(p Plan, fingerprint string) map[string]string {
	a := p.Alert
	kinds := make([]string, len(a.Channels))
	for i, k := range a.Channels {
		kinds[i] = string(k)
	}
	sup := make([]string, len(p.Supersedes))
	for i, id := range p.Supersedes {
		sup[i] = string(id)
	}
	return detailOf(
		"status", string(a.Status), "msg_type", a.MsgType, "event", a.Event,
		"severity", a.Severity.String(), "urgency", a.Urgency.String(), "priority", strconv.Itoa(int(a.Priority)),
		"zones", strings.Join(a.Zones, ","), "channels", strings.Join(kinds, ","),
		"principal", a.Principal, "source", a.Source, "trigger", triggerSource(p.Trigger),
		"targets", strconv.Itoa(len(p.Targets)), "expires", auditDetailTime(a.Expires),
		"supersedes", strings.Join(sup, ","), "fingerprint", fingerprint,
	)
}

func triggerSource(t *TriggerEvent) string {
	if t == nil {
		return ""
	}
	return t.Source
}

func idStrings(ids []alert.ID) []string {
	out := make([]string, len(ids))
	for i, id := range ids {
		out[i] = string(id)
	}
	return out
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// specs batches targets into jobs per kind, keeping their order: the plan.
func (q *Queue) specs(targets []alert.Target) []jobSpec {
	count := map[alert.Kind]int{}
	var order []alert.Kind
	for _, t := range targets {
		if count[t.Kind] == 0 {
			order = append(order, t.Kind)
		}
		count[t.Kind]++
	}
	specs := make([]jobSpec, 0, len(targets)/q.opts.BatchSize+len(order))
	for _, k := range order {
		ids := make([]string, 0, count[k])
		for _, t := range targets {
			if t.Kind == k {
				ids = append(ids, t.ID)
			}
		}
		for chunk := range slices.Chunk(ids, q.opts.BatchSize) {
			specs = append(specs, jobSpec{K: k, T: chunk})
		}
	}
	return specs
}

// chunk returns where the chunk of jobs starting at from ends: after at least
// one job and at most PlanChunk targets.
func (q *Queue) chunk(specs []jobSpec, from int) int {
	n, i := 0, from
	for i < len(specs) && (i == from || n+len(specs[i].T) <= q.opts.PlanChunk) {
		n += len(specs[i].T)
		i++
	}
	return i
}

// planRest queues the jobs from planned on, a chunk per script call. It stops
// early, without error, when the alert was retracted or another instance
// took the plan over.
func (q *Queue) planRest(ctx context.Context, a *alert.Alert, specs []jobSpec, planned int) error {
	keep := a.Expires.Add(q.opts.Retain).UnixMilli()
	sh := q.shardFor(a.Principal, a.Source)
	for planned < len(specs) {
		end := q.chunk(specs, planned)
		jobs, err := json.Marshal(specs[planned:end])
		if err != nil {
			return fmt.Errorf("plan: encode jobs: %w", err)
		}
		now := q.opts.Now()
		n, err := planCmd.Run(ctx, q.rdb, []string{sh.alert(a.ID), sh.ledger(a.ID), sh.planning()},
			sh.p, string(a.ID), planned, jobs, now.UnixMilli(), now.Add(q.opts.Lease).UnixMilli(), int(a.Priority), keep).Int()
		if err != nil {
			return fmt.Errorf("plan %s: %w", a.ID, err)
		}
		if n != end {
			return nil // retracted, expired, or planned by another instance
		}
		planned = end
	}
	return nil
}

// Resume finishes the plans of alerts whose planner missed its
// deadline (an instance that died while queueing a large alert), and the
// sweeps of retractions whose instance died. route must give the alert's
// targets in the same order as when it was accepted: the routing of the same
// configuration. It returns how many plans and sweeps it resumed.
func (q *Queue) Resume(ctx context.Context, route func(*alert.Alert) []alert.Target) (int, error) {
	// One shard's trouble (its master failing over) holds up no other's.
	resumed := 0
	var errs []error
	for _, sh := range q.shards {
		n, err := q.resume(ctx, sh, route)
		resumed += n
		errs = append(errs, err, q.moveAudit(ctx, sh))
	}
	return resumed, errors.Join(errs...)
}

// resume is Resume in one shard.
func (q *Queue) resume(ctx context.Context, sh shard, route func(*alert.Alert) []alert.Target) (int, error) {
	now := q.opts.Now()
	sweeps, err := q.rdb.ZRangeByScore(ctx, sh.retracting(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 10}).Result()
	if err != nil {
		return 0, fmt.Errorf("resume sweeps: %w", err)
	}
	resumed := 0
	for _, id := range sweeps {
		ok, err := takeOverCmd.Run(ctx, q.rdb, []string{sh.retracting()}, id, now.UnixMilli(), now.Add(q.opts.Lease).UnixMilli()).Int()
		if err != nil {
			return resumed, fmt.Errorf("resume sweeps: %w", err)
		}
		if ok == 1 {
			if err := q.resumeSweep(ctx, sh, alert.ID(id)); err != nil {
				return resumed, err
			}
			resumed++
		}
	}
	ids, err := q.rdb.ZRangeByScore(ctx, sh.planning(), &redis.ZRangeBy{Min: "-inf", Max: strconv.FormatInt(now.UnixMilli(), 10), Count: 10}).Result()
	if err != nil {
		return resumed, fmt.Errorf("resume planning: %w", err)
	}
	for _, id := range ids {
		ok, err := takeOverCmd.Run(ctx, q.rdb, []string{sh.planning()}, id, now.UnixMilli(), now.Add(q.opts.Lease).UnixMilli()).Int()
		if err != nil {
			return resumed, fmt.Errorf("resume planning: %w", err)
		}
		if ok == 0 {
			continue
		}
		a, _, err := q.alertIn(ctx, sh, alert.ID(id))
		if errors.Is(err, ErrNotFound) {
			q.rdb.ZRem(ctx, sh.planning(), id) // aged out
			continue
		}
		if err != nil {
			return resumed, err
		}
		planned, err := q.rdb.HGet(ctx, sh.alert(a.ID), "jobs_planned").Int()
		if err != nil {
			return resumed, fmt.Errorf("resume planning %s: %w", id, err)
		}
		if err := q.planRest(ctx, a, q.specs(route(a)), planned); err != nil {
			return resumed, err
		}
		resumed++
	}
	return resumed, nil
}

// resumeSweep goes on with a sweep from the cursor its instance left.
func (q *Queue) resumeSweep(ctx context.Context, sh shard, id alert.ID) error {
	cursor, err := q.rdb.HGet(ctx, sh.alert(id), "sweep").Result()
	if errors.Is(err, redis.Nil) {
		q.rdb.ZRem(ctx, sh.retracting(), string(id)) // done or aged out
		return nil
	}
	if err != nil {
		return fmt.Errorf("resume sweep %s: %w", id, err)
	}
	_, err = q.sweepFrom(ctx, sh, id, cursor)
	return err
}

// Job is a batch of targets of one kind to be told one thing about one alert.
type Job struct {
	ID       string         `json:"id"`
	AlertID  alert.ID       `json:"a"`
	Kind     alert.Kind     `json:"k"`
	Msg      string         `json:"m"`
	Priority alert.Priority `json:"p"`
	Seq      int64          `json:"q"`
	Targets  []string       `json:"t"`
	ExpireMS int64          `json:"x"`
	// Retries counts how often the job's targets were handed back for a
	// later attempt (the backoff grows with it).
	Retries int `json:"n,omitempty"`
	// shard is the shard the job was claimed from.
	shard shard
}

// Message is what the job tells its targets.
func (j *Job) Message() alert.Message {
	if j.Msg == "r" {
		return alert.MessageRetraction
	}
	return alert.MessageAlert
}

// Expires is when the job stops being worth doing.
func (j *Job) Expires() time.Time { return time.UnixMilli(j.ExpireMS) }

// Claim takes the highest-priority job of kind's lane whose priority is at
// least min, leases it and marks its targets in flight, after first
// reclaiming expired leases and readying handed-back jobs whose time has
// come. It returns nil, nil when no such job is ready. A fenced alert's
// original jobs are never returned.
//
// With several shards it first looks at the head of kind's lane in each
// (one pipelined round) and claims from the shard with the highest-priority
// job, or expired leases and due jobs to ready: priority holds across
// shards, up to a job queued between the look and the claim.
func (q *Queue) Claim(ctx context.Context, kind alert.Kind, min alert.Priority) (*Job, error) {
	if len(q.shards) == 1 {
		j, _, err := q.claimIn(ctx, q.shards[0], kind, min, "")
		return j, err
	}
	heads, due, err := q.heads(ctx, kind)
	if err != nil {
		return nil, err
	}
	if due {
		// Expired leases and handed-back jobs whose time has come go back on
		// their ready sets first (a claim of nothing: no priority reaches
		// 11), so the look below sees them.
		for _, h := range heads {
			if h.due {
				if _, _, err := q.claimIn(ctx, h.sh, kind, alert.Priority(11), ""); err != nil {
					return nil, err
				}
			}
		}
		if heads, _, err = q.heads(ctx, kind); err != nil {
			return nil, err
		}
	}
	// Claim from the shard with the best job, taking nothing that scores
	// above the next shard's best: its head may be a job the claim drops
	// (fenced, expired), and the next best may then be elsewhere. Every
	// "more" look again dropped at least one job, so this ends.
	for {
		slices.SortStableFunc(heads, func(a, b laneHead) int { return cmp.Compare(a.score, b.score) })
		if len(heads) == 0 || !heads[0].ready || heads[0].score >= float64(11-int(min))*1e13 {
			return nil, nil // nothing ready at or above min anywhere
		}
		limit := ""
		if len(heads) > 1 && heads[1].ready {
			limit = strconv.FormatFloat(heads[1].score, 'f', 0, 64)
		}
		j, more, err := q.claimIn(ctx, heads[0].sh, kind, min, limit)
		if j != nil || err != nil {
			return j, err
		}
		if !more {
			heads = heads[1:] // nothing at or above min there
			continue
		}
		if heads, _, err = q.heads(ctx, kind); err != nil {
			return nil, err
		}
	}
}

// laneHead is what heads saw of a shard's lane: the score of its best ready
// job, if any, and whether it has expired leases or due jobs to ready.
type laneHead struct {
	sh         shard
	score      float64
	ready, due bool
}

// heads looks at the head of kind's lane in every shard, in one round.
func (q *Queue) heads(ctx context.Context, kind alert.Kind) ([]laneHead, bool, error) {
	now := strconv.FormatInt(q.opts.Now().UnixMilli(), 10)
	type cmds struct {
		ready          *redis.ZSliceCmd
		leases, delays *redis.StringSliceCmd
	}
	cs := make([]cmds, len(q.shards))
	_, err := q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sh := range q.shards {
			l := sh.lane(kind)
			due := &redis.ZRangeBy{Min: "-inf", Max: now, Count: 1}
			cs[i] = cmds{p.ZRangeWithScores(ctx, l.ready, 0, 0), p.ZRangeByScore(ctx, l.leases, due), p.ZRangeByScore(ctx, l.delayed, due)}
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, false, fmt.Errorf("claim %s: %w", kind, err)
	}
	heads := make([]laneHead, len(q.shards))
	anyDue := false
	for i, c := range cs {
		h := laneHead{sh: q.shards[i], score: math.Inf(1), due: len(c.leases.Val())+len(c.delays.Val()) > 0}
		if top := c.ready.Val(); len(top) > 0 {
			h.score, h.ready = top[0].Score, true
		}
		anyDue = anyDue || h.due
		heads[i] = h
	}
	return heads, anyDue, nil
}

// claimIn is Claim in one shard, taking no job that scores above limit
// ("" any): more reports that its best job did.
func (q *Queue) claimIn(ctx context.Context, sh shard, kind alert.Kind, min alert.Priority, limit string) (j *Job, more bool, err error) {
	l := sh.lane(kind)
	now := q.opts.Now()
	raw, err := claimCmd.Run(ctx, q.rdb, append([]string{l.ready, l.jobs, l.leases, l.delayed}, q.auditKeys(sh)...),
		sh.p, now.UnixMilli(), q.opts.Lease.Milliseconds(),
		q.opts.BatchSize, q.opts.RetractionTTL.Milliseconds(), int(min), q.auditTime(now), actor(ctx), limit).Text()
	if errors.Is(err, redis.Nil) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("claim %s: %w", kind, err)
	}
	if raw == "more" {
		return nil, true, nil
	}
	j = &Job{shard: sh}
	if err := json.Unmarshal([]byte(raw), j); err != nil {
		return nil, false, fmt.Errorf("claim %s: decode job: %w", kind, err)
	}
	return j, false, nil
}

// Wait blocks until work may have arrived on kind's lane, or timeout passes.
// It never sleeps on its own: it is a blocking read on the lane's wake list
// (every shard's, on Redis Cluster through one reader per shard: wakeup).
func (q *Queue) Wait(ctx context.Context, kind alert.Kind, timeout time.Duration) error {
	if q.cluster != nil && len(q.shards) > 1 {
		return q.wake.wait(ctx, q, kind, timeout)
	}
	wakes := make([]string, len(q.shards))
	for i, sh := range q.shards {
		wakes[i] = sh.lane(kind).wake
	}
	err := q.rdb.BLPop(ctx, timeout, wakes...).Err()
	if errors.Is(err, redis.Nil) {
		return nil
	}
	return err
}

// Extend pushes a claimed job's lease deadline out by one lease. It reports
// false when the lease was already lost (reclaimed or finished).
func (q *Queue) Extend(ctx context.Context, j *Job) (bool, error) {
	deadline := q.opts.Now().Add(q.opts.Lease).UnixMilli()
	n, err := extendCmd.Run(ctx, q.rdb, []string{j.shard.lane(j.Kind).leases}, j.ID, deadline).Int()
	if err != nil {
		return false, fmt.Errorf("extend lease: %w", err)
	}
	return n == 1, nil
}

// Finish records the outcome of each target of a claimed job and drops the
// job. Targets missing from outcomes keep their ledger state. If the alert was
// fenced meanwhile, the attempted targets' retractions are queued in the same
// step.
//
// Targets whose outcome is StateQueued (never attempted) or StateRetry
// (attempted, not confirmed) are handed back: they go on a new job that may
// be claimed from retryAt on (at once when zero), so a target that cannot be
// reached now waits in Redis, not in a worker. A non-zero retryAt counts as
// one more retry of the job.
func (q *Queue) Finish(ctx context.Context, j *Job, outcomes map[string]alert.State, retryAt time.Time) error {
	l := j.shard.lane(j.Kind)
	bump := 0
	if !retryAt.IsZero() {
		bump = 1
	}
	args := []any{j.shard.p, j.ID, q.opts.Now().UnixMilli(), q.opts.BatchSize, q.opts.RetractionTTL.Milliseconds(), retryAt.UnixMilli(), bump}
	for _, t := range j.Targets {
		if st, ok := outcomes[t]; ok {
			args = append(args, t, string(st))
		}
	}
	if err := finishCmd.Run(ctx, q.rdb, []string{l.jobs, l.leases, l.ready}, args...).Err(); err != nil {
		return fmt.Errorf("finish %s: %w", j.ID, err)
	}
	return nil
}

// Progress records final outcomes of some of a job's targets while the rest
// of it is still running (workers send them in batches). Finish records them
// again; that is harmless.
func (q *Queue) Progress(ctx context.Context, j *Job, outcomes map[string]alert.State) error {
	pre := string(j.Kind) + "/"
	if j.Message() == alert.MessageRetraction {
		pre = "r|" + pre
	}
	args := make([]any, 0, 2*len(outcomes))
	for t, st := range outcomes {
		args = append(args, pre+t, string(st))
	}
	if err := progressCmd.Run(ctx, q.rdb, []string{j.shard.ledger(j.AlertID)}, args...).Err(); err != nil {
		return fmt.Errorf("progress %s: %w", j.ID, err)
	}
	return nil
}

// Release hands a claimed job back to its lane at once, for another worker,
// as never attempted (the worker gave up before sending anything).
func (q *Queue) Release(ctx context.Context, j *Job) error {
	out := make(map[string]alert.State, len(j.Targets))
	for _, t := range j.Targets {
		out[t] = alert.StateQueued
	}
	return q.Finish(ctx, j, out, time.Time{})
}

// Fenced reports whether the alert has been retracted.
func (q *Queue) Fenced(ctx context.Context, id alert.ID) (bool, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return false, fmt.Errorf("fence check: %w", err)
	}
	v, err := q.rdb.HGet(ctx, sh.alert(id), "fence").Result()
	if errors.Is(err, redis.Nil) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("fence check: %w", err)
	}
	return v == "1", nil
}

// Retracted is what Retract did.
type Retracted struct {
	// Queued is the number of retractions queued at once (targets whose attempt
	// had ended). Targets in flight get theirs when their attempt ends.
	Queued int
}

// Retract fences an alert and queues every retraction owed (Fence, then
// Sweep). It returns ErrNotFound for an unknown id and ErrRetracted if it was
// already fenced.
func (q *Queue) Retract(ctx context.Context, id alert.ID, reason, note string) (Retracted, error) {
	r, err := q.Fence(ctx, id, reason, note)
	if err != nil {
		return r, err
	}
	n, err := q.Sweep(ctx, id)
	r.Queued += n
	return r, err
}

// Fence fences an alert: no original of it is handed out from now on. The
// retractions of the targets in first (the few, urgent ones: sirens, PA,
// dispatch) are queued in the same step; Sweep queues the rest, and, if this
// process dies before it is done, Resume in any instance finishes it.
func (q *Queue) Fence(ctx context.Context, id alert.ID, reason, note string, first ...alert.Target) (Retracted, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return Retracted{}, fmt.Errorf("fence: %w", err)
	}
	now := q.opts.Now()
	args := []any{sh.p, string(id), now.UnixMilli(), reason, note,
		q.opts.BatchSize, q.opts.RetractionTTL.Milliseconds(), q.k.fence(), now.Add(q.opts.Lease).UnixMilli(),
		q.auditTime(now), actor(ctx)}
	for _, t := range first {
		args = append(args, t.Key())
	}
	res, err := q.runAcked(ctx, retractCmd, append([]string{sh.alert(id), sh.ledger(id), sh.retracting()}, q.auditKeys(sh)...),
		args...).Int64Slice()
	if err != nil {
		return Retracted{}, fmt.Errorf("fence: %w", err)
	}
	q.moved(ctx, sh)
	switch res[0] {
	case -1:
		return Retracted{}, ErrNotFound
	case 0:
		return Retracted{}, ErrRetracted
	}
	return Retracted{Queued: int(res[1])}, nil
}

// SweepChunk is how many ledger entries one sweep call settles.
const SweepChunk = 2000

// Sweep settles the rest of a retracted alert's ledger after Retract, a
// chunk per script call: queued targets cancelled, reached ones owed their
// retraction. It returns the retractions it queued; it stops early, without
// error, when another instance has taken the sweep over.
func (q *Queue) Sweep(ctx context.Context, id alert.ID) (int, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("sweep %s: %w", id, err)
	}
	return q.sweepFrom(ctx, sh, id, "0")
}

func (q *Queue) sweepFrom(ctx context.Context, sh shard, id alert.ID, cursor string) (int, error) {
	queued := 0
	for {
		now := q.opts.Now()
		res, err := sweepCmd.Run(ctx, q.rdb, []string{sh.alert(id), sh.ledger(id), sh.retracting()},
			sh.p, string(id), cursor, SweepChunk, now.UnixMilli(), now.Add(q.opts.Lease).UnixMilli(),
			q.opts.BatchSize, q.opts.RetractionTTL.Milliseconds()).Slice()
		if err != nil {
			return queued, fmt.Errorf("sweep %s: %w", id, err)
		}
		n, next := res[0].(int64), res[1].(string)
		if n < 0 {
			return queued, nil
		}
		queued += int(n)
		if next == "0" {
			return queued, nil
		}
		cursor = next
	}
}

// Fences delivers the id of every alert fenced from now on, until ctx ends.
// It is a hint for cutting in-flight work short; the fence itself is in Redis.
func (q *Queue) Fences(ctx context.Context) <-chan alert.ID {
	sub := q.rdb.Subscribe(ctx, q.k.fence())
	out := make(chan alert.ID, 64)
	go func() { // exits when ctx ends
		defer close(out)
		defer sub.Close()
		ch := sub.Channel()
		for {
			select {
			case <-ctx.Done():
				return
			case m, ok := <-ch:
				if !ok {
					return
				}
				select {
				case out <- alert.ID(m.Payload):
				default: // a slow reader misses a hint, never a fence
				}
			}
		}
	}()
	return out
}

// Counts are one channel kind's ledger totals for an alert.
type Counts struct {
	Targets   int `json:"targets"`
	Queued    int `json:"queued"`
	InFlight  int `json:"in_flight"`
	Sent      int `json:"sent"`
	Delivered int `json:"delivered"`
	Failed    int `json:"failed"`
	Cancelled int `json:"cancelled"`
	Expired   int `json:"expired"`
	// Retrying are targets attempted without confirmation, waiting in the
	// queue for their next attempt.
	Retrying int `json:"retrying"`
	// Owed is the number of targets that must be told of the retraction;
	// Retracted those it has been handed to (delivered, or accepted by the
	// provider).
	Owed      int `json:"retractions_owed,omitempty"`
	Retracted int `json:"retractions_delivered,omitempty"`
	// RetractFailed are retractions given up (failed, or not delivered
	// within their hour): told nobody, and pending no more.
	RetractFailed int    `json:"retractions_failed,omitempty"`
	Summary       string `json:"retracted,omitempty"`
}

// Status is an alert and the state of its deliveries.
type Status struct {
	// Sweeping: the retraction's sweep is still queueing the retractions
	// of the phones (the Owed counts are still growing).
	Sweeping  bool
	Alert     *alert.Alert
	State     string
	Reason    string
	Note      string
	Retracted time.Time
	Created   time.Time
	Counts    map[alert.Kind]*Counts
	// Targets is the number of targets planned so far, every kind.
	Targets int
}

// DeliveryState is one target's row in the ledger.
type DeliveryState struct {
	Target     alert.Target `json:"target"`
	State      alert.State  `json:"state"`
	Retraction alert.State  `json:"retraction,omitempty"`
}

// Status reads an alert with its ledger and derives its overall state:
// retracted; expired once its expiry has passed with targets still open, or
// when every target ended by expiry; completed when no target is open;
// delivering once some target is no longer queued; else queued.
func (q *Queue) Status(ctx context.Context, id alert.ID) (*Status, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	fields, err := q.rdb.HGetAll(ctx, sh.alert(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("status: %w", err)
	}
	if len(fields) == 0 {
		return nil, ErrNotFound
	}
	var a alert.Alert
	if err := json.Unmarshal([]byte(fields["doc"]), &a); err != nil {
		return nil, fmt.Errorf("status: decode alert: %w", err)
	}
	s := &Status{Alert: &a, Reason: fields["reason"], Note: fields["note"], Counts: map[alert.Kind]*Counts{}, Sweeping: fields["sweep"] != ""}
	if ms, err := strconv.ParseInt(fields["created"], 10, 64); err == nil {
		s.Created = time.UnixMilli(ms)
	}
	if ms, err := strconv.ParseInt(fields["retracted"], 10, 64); err == nil {
		s.Retracted = time.UnixMilli(ms)
	}
	open, expired := 0, 0
	for f, v := range fields {
		f, counter := strings.CutPrefix(f, "n|")
		n, err := strconv.Atoi(v)
		if !counter || err != nil || n == 0 {
			continue
		}
		f, retraction := strings.CutPrefix(f, "r|")
		kind, st, ok := strings.Cut(f, "|")
		if !ok {
			continue
		}
		c := s.Counts[alert.Kind(kind)]
		if c == nil {
			c = &Counts{}
			s.Counts[alert.Kind(kind)] = c
		}
		if retraction {
			c.Owed += n
			// Handed over counts: delivered, or accepted by a provider that
			// reports later (a failed one stays out of the count).
			switch alert.State(st) {
			case alert.StateDelivered, alert.StateSent:
				c.Retracted += n
			case alert.StateFailed, alert.StateExpired:
				c.RetractFailed += n
			}
			continue
		}
		s.Targets += n
		c.Targets += n
		switch alert.State(st) {
		case alert.StateQueued:
			c.Queued += n
			open += n
		case alert.StateInFlight:
			c.InFlight += n
			open += n
		case alert.StateRetry:
			c.Retrying += n
			open += n
		case alert.StateSent:
			c.Sent += n
		case alert.StateDelivered:
			c.Delivered += n
		case alert.StateFailed:
			c.Failed += n
		case alert.StateCancelled:
			c.Cancelled += n
		case alert.StateExpired:
			c.Expired += n
			expired += n
		}
	}
	fenced := fields["fence"] == "1"
	for _, c := range s.Counts {
		if fenced {
			// Owed also counts in-flight targets whose retraction will be queued
			// when their attempt ends.
			c.Owed += c.InFlight
			c.Summary = fmt.Sprintf("%d/%d", c.Retracted, c.Owed)
		}
	}
	planning := fields["jobs_total"] != "" && fields["jobs_total"] != fields["jobs_planned"]
	switch {
	case fenced:
		s.State = "retracted"
	case open == 0 && !planning && s.Targets > 0 && expired == s.Targets:
		// Every target ended by expiry: none was told anything.
		s.State = "expired"
	case open == 0 && !planning && s.Targets > 0:
		s.State = "completed"
	case !q.opts.Now().Before(a.Expires):
		// What is still open will not be sent: its jobs are dropped when claimed.
		s.State = "expired"
	case open < s.Targets:
		s.State = "delivering"
	default:
		s.State = "queued"
	}
	return s, nil
}

// Deliveries is the whole ledger of an alert: one row per target with the
// state of its original and of its retraction, sorted by target. For a large
// alert use DeliveriesPage.
func (q *Queue) Deliveries(ctx context.Context, id alert.ID) ([]DeliveryState, error) {
	var out []DeliveryState
	var cursor uint64
	for {
		page, next, err := q.DeliveriesPage(ctx, id, cursor, 10000)
		if err != nil {
			return nil, err
		}
		out = append(out, page...)
		if next == 0 {
			break
		}
		cursor = next
	}
	slices.SortFunc(out, func(a, b DeliveryState) int { return strings.Compare(a.Target.Key(), b.Target.Key()) })
	return slices.CompactFunc(out, func(a, b DeliveryState) bool { return a.Target == b.Target }), nil
}

// DeliveriesPage is one page of an alert's ledger, about count targets
// from cursor (0: the first page), sorted within the page, and the cursor
// of the next page (0: this was the last). It walks the ledger with HSCAN,
// so a page costs the same whatever the alert's size; a target may appear
// on two pages if the ledger grows while it is walked.
func (q *Queue) DeliveriesPage(ctx context.Context, id alert.ID, cursor uint64, count int) ([]DeliveryState, uint64, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return nil, 0, fmt.Errorf("deliveries: %w", err)
	}
	kv, next, err := q.rdb.HScan(ctx, sh.ledger(id), cursor, "", int64(count)).Result()
	if err != nil {
		return nil, 0, fmt.Errorf("deliveries: %w", err)
	}
	// Rows come from the targets' own fields; their retraction fields are
	// read alongside, so a row never depends on which page held which.
	var out []DeliveryState
	var rfields []string
	for i := 0; i+1 < len(kv); i += 2 {
		f, st := kv[i], kv[i+1]
		if strings.HasPrefix(f, "x|") || strings.HasPrefix(f, "r|") {
			continue // an attempt mark (finishCmd), or a retraction's field
		}
		t, err := alert.ParseTarget(f)
		if err != nil {
			continue
		}
		out = append(out, DeliveryState{Target: t, State: alert.State(st)})
		rfields = append(rfields, "r|"+f)
	}
	if len(rfields) > 0 {
		rs, err := q.rdb.HMGet(ctx, sh.ledger(id), rfields...).Result()
		if err != nil {
			return nil, 0, fmt.Errorf("deliveries: %w", err)
		}
		for i, v := range rs {
			if s, ok := v.(string); ok {
				out[i].Retraction = alert.State(s)
			}
		}
	}
	slices.SortFunc(out, func(a, b DeliveryState) int { return strings.Compare(a.Target.Key(), b.Target.Key()) })
	return out, next, nil
}

// List returns up to limit alert ids, newest first (every shard's).
func (q *Queue) List(ctx context.Context, limit int) ([]alert.ID, error) {
	var all []redis.Z
	for _, sh := range q.shards {
		zs, err := q.rdb.ZRevRangeWithScores(ctx, sh.alerts(), 0, int64(limit-1)).Result()
		if err != nil {
			return nil, fmt.Errorf("list: %w", err)
		}
		all = append(all, zs...)
	}
	slices.SortStableFunc(all, func(a, b redis.Z) int { return cmp.Compare(b.Score, a.Score) })
	out := make([]alert.ID, 0, min(limit, len(all)))
	for _, z := range all[:min(limit, len(all))] {
		out = append(out, alert.ID(z.Member.(string)))
	}
	return out, nil
}

// Depth is the number of jobs waiting (not leased) on kind's lane, every shard.
func (q *Queue) Depth(ctx context.Context, kind alert.Kind) (int64, error) {
	var n int64
	for _, sh := range q.shards {
		c, err := q.rdb.ZCard(ctx, sh.lane(kind).ready).Result()
		if err != nil {
			return 0, err
		}
		n += c
	}
	return n, nil
}

// Alert reads a stored alert and, if it was retracted, the reason.
func (q *Queue) Alert(ctx context.Context, id alert.ID) (a *alert.Alert, reason string, err error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return nil, "", fmt.Errorf("read alert: %w", err)
	}
	return q.alertIn(ctx, sh, id)
}

func (q *Queue) alertIn(ctx context.Context, sh shard, id alert.ID) (a *alert.Alert, reason string, err error) {
	v, err := q.rdb.HMGet(ctx, sh.alert(id), "doc", "reason").Result()
	if err != nil {
		return nil, "", fmt.Errorf("read alert: %w", err)
	}
	doc, ok := v[0].(string)
	if !ok {
		return nil, "", ErrNotFound
	}
	a = new(alert.Alert)
	if err := json.Unmarshal([]byte(doc), a); err != nil {
		return nil, "", fmt.Errorf("read alert: %w", err)
	}
	reason, _ = v[1].(string)
	return a, reason, nil
}

// Callback records a provider's status for one delivery, moving its ledger
// state only forward. It reports whether the state moved.
func (q *Queue) Callback(ctx context.Context, id alert.ID, t alert.Target, msg alert.Message, st alert.State) (bool, error) {
	f := t.Key()
	if msg == alert.MessageRetraction {
		f = "r|" + f
	}
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return false, fmt.Errorf("callback: %w", err)
	}
	n, err := callbackCmd.Run(ctx, q.rdb, []string{sh.ledger(id)}, f, string(st)).Int()
	if err != nil {
		return false, fmt.Errorf("callback: %w", err)
	}
	return n == 1, nil
}

// paceSlack is how early a slot may be taken (tryReserveCmd).
const paceSlack = 2 * time.Millisecond

// TryReserve paces sender at rate units per second (across every gateway
// instance sharing this Redis): if its next slot is free now it takes it
// for cost units and returns 0 and the slot; otherwise it takes nothing
// and returns how long until the slot is free.
func (q *Queue) TryReserve(ctx context.Context, sender string, rate float64, cost int) (time.Duration, int64, error) {
	if rate <= 0 {
		return 0, 0, nil
	}
	r, err := tryReserveCmd.Run(ctx, q.rdb, []string{q.k.pace(sender)}, q.opts.Now().UnixMicro(), int64(1e6/rate), cost, paceSlack.Microseconds()).Int64Slice()
	if err != nil {
		return 0, 0, fmt.Errorf("pace %s: %w", sender, err)
	}
	return time.Duration(r[0]) * time.Microsecond, r[1], nil
}

// Unreserve gives back a slot TryReserve took that was not used, if no
// later slot was taken since.
func (q *Queue) Unreserve(ctx context.Context, sender string, rate float64, cost int, slot int64) error {
	if rate <= 0 || slot == 0 {
		return nil
	}
	if err := unreserveCmd.Run(ctx, q.rdb, []string{q.k.pace(sender)}, slot, cost, int64(1e6/rate)).Err(); err != nil {
		return fmt.Errorf("unreserve %s: %w", sender, err)
	}
	return nil
}

// Lookup returns the alert a principal's idempotency key named, or "" if the
// key is unknown, forgotten (after the idempotency TTL) or a tombstone. CAP
// chains use it: a CAP message is enqueued under "cap:{sender},{identifier}".
func (q *Queue) Lookup(ctx context.Context, principal, key string) (alert.ID, error) {
	v, err := q.rdb.Get(ctx, q.shardFor(principal, "").dedup("i", sum(principal, key))).Result()
	if errors.Is(err, redis.Nil) || IsTombstone(alert.ID(v)) {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("lookup: %w", err)
	}
	id, _, _ := strings.Cut(v, "|") // "id|digest of the request"
	return alert.ID(id), nil
}

// tombstonePrefix marks an idempotency key whose message was cancelled
// before it arrived.
const tombstonePrefix = "cancelled:"

// IsTombstone reports whether an id Enqueue answered as the first of a
// duplicate is a tombstone: the message was cancelled before it arrived.
func IsTombstone(id alert.ID) bool { return strings.HasPrefix(string(id), tombstonePrefix) }

// Tombstone claims a principal's idempotency key for a message that was
// cancelled before it arrived (a CAP Cancel overtaking its Alert). The enqueue
// script then answers the message, whenever it comes within the idempotency
// TTL, as a duplicate of the tombstone — in the same atomic step that would
// have stored it, so no race lets it through. If the message arrived first
// after all, its alert id is returned: retract that instead.
func (q *Queue) Tombstone(ctx context.Context, principal, key, note string) (alert.ID, error) {
	k := q.shardFor(principal, "").dedup("i", sum(principal, key))
	ok, err := q.rdb.SetNX(ctx, k, tombstonePrefix+note, q.opts.IdempotencyTTL).Result()
	if err != nil || ok {
		return "", err
	}
	return q.Lookup(ctx, principal, key)
}
