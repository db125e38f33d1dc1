package priority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
)

// SeenEvent records a trigger source's event id for ttl and reports whether
// it was new; a second sighting is a replay. trigger is the Source of the
// alerts the trigger makes ("trigger/<name>"): the event id is kept where
// Enqueue spends it (keys.go), so a replay is found either way.
func (q *Queue) SeenEvent(ctx context.Context, trigger, source, event string, ttl time.Duration) (bool, error) {
	return q.seen(ctx, q.shardFor(TriggerPrincipalPrefix+source, trigger), source, event, ttl)
}

// SeenReset records a panel's reset event id of alert id for ttl (Lower
// reads it) and reports whether it was new.
func (q *Queue) SeenReset(ctx context.Context, id alert.ID, source, event string, ttl time.Duration) (bool, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return false, fmt.Errorf("trigger event: %w", err)
	}
	return q.seen(ctx, sh, source, event, ttl)
}

func (q *Queue) seen(ctx context.Context, sh shard, source, event string, ttl time.Duration) (bool, error) {
	ok, err := q.rdb.SetNX(ctx, sh.triggerEvent(source, event), "-", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("trigger event: %w", err)
	}
	return ok, nil
}

// EventAlertOf is the alert a source's event made or joined (Enqueue with
// Plan.Trigger records it), or "". It looks in every shard at once (the
// reset does not name the trigger); a shard that cannot answer is an error
// only when no other shard had the event.
func (q *Queue) EventAlertOf(ctx context.Context, source, event string) (alert.ID, error) {
	gets := make([]*redis.StringCmd, len(q.shards))
	q.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, sh := range q.shards {
			gets[i] = p.Get(ctx, sh.triggerEvent(source, event))
		}
		return nil
	})
	var errs []error
	for _, g := range gets {
		v, err := g.Result()
		switch {
		case err == nil && v != "-":
			return alert.ID(v), nil
		case err != nil && !errors.Is(err, redis.Nil):
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("trigger event: %w", err)
	}
	return "", nil
}

// Maintenance is a trigger source's maintenance window.
type Maintenance struct {
	Source string    `json:"source"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

// maintenanceCmd stores a source's maintenance window, expiring at its
// end, and appends its maintenance.started entry.
//
// KEYS[1] maintenance key   KEYS[2] audit seq   KEYS[3] audit log
// ARGV[1] window JSON   ARGV[2] TTL ms   ARGV[3] entry body ("" appends none)
var maintenanceCmd = redis.NewScript(audit.Lua + `
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
if ARGV[3] ~= '' then tocsin_audit(KEYS[2], KEYS[3], ARGV[3]) end
return 1
`)

// endMaintenanceCmd ends a maintenance window early, if it is still the one
// the caller read, and appends its maintenance.ended entry.
//
// KEYS[1] maintenance key   KEYS[2] audit seq   KEYS[3] audit log
// ARGV[1] window JSON as read   ARGV[2] entry body ("" appends none)
// Returns 1 if ended, 0 if there was none, -1 if the window changed since.
var endMaintenanceCmd = redis.NewScript(audit.Lua + `
local v = redis.call('GET', KEYS[1])
if not v then return 0 end
if v ~= ARGV[1] then return -1 end
redis.call('DEL', KEYS[1])
if ARGV[2] ~= '' then tocsin_audit(KEYS[2], KEYS[3], ARGV[2]) end
return 1
`)

// body is an entry's audit.Entry.Body, or "" when q appends no entries.
func (q *Queue) body(e audit.Entry) string {
	if q.noAudit {
		return ""
	}
	return e.Body()
}

// maintenanceDetail is the detail of a maintenance entry.
func maintenanceDetail(m Maintenance) map[string]string {
	return detailOf("reason", m.Reason, "until", auditDetailTime(m.Until), "by", m.By)
}

// SetMaintenance puts a source into maintenance until m.Until; the window
// ends by itself then (the key expires). It appends maintenance.started
// (subject the source; detail: reason, until, by) in the same step. A
// window whose end has passed is stored for a millisecond.
func (q *Queue) SetMaintenance(ctx context.Context, m Maintenance) error {
	b, _ := json.Marshal(m)
	ttl := max(time.Until(m.Until).Milliseconds(), 1)
	e := audit.Entry{Time: q.opts.Now(), Kind: "maintenance.started", Actor: actor(ctx), Subject: m.Source, Detail: maintenanceDetail(m)}
	err := maintenanceCmd.Run(ctx, q.rdb, append([]string{q.k.maintenance(m.Source)}, q.auditLog()...), b, ttl, q.body(e)).Err()
	if err != nil {
		return fmt.Errorf("maintenance: %w", err)
	}
	return nil
}

// EndMaintenance ends a source's maintenance early; false if there was none.
// It appends maintenance.ended (subject the source; detail: the window's
// reason, until and by) in the same step. A window that runs out ends by
// itself, without an entry: its maintenance.started says when.
func (q *Queue) EndMaintenance(ctx context.Context, source string) (bool, error) {
	key := q.k.maintenance(source)
	for range 10 { // another caller replacing the window meanwhile: read it again
		raw, err := q.rdb.Get(ctx, key).Result()
		if errors.Is(err, redis.Nil) {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("maintenance: %w", err)
		}
		var m Maintenance
		_ = json.Unmarshal([]byte(raw), &m) // a window we cannot read is ended all the same
		e := audit.Entry{Time: q.opts.Now(), Kind: "maintenance.ended", Actor: actor(ctx), Subject: source, Detail: maintenanceDetail(m)}
		n, err := endMaintenanceCmd.Run(ctx, q.rdb, append([]string{key}, q.auditLog()...), raw, q.body(e)).Int()
		if err != nil {
			return false, fmt.Errorf("maintenance: %w", err)
		}
		if n >= 0 {
			return n == 1, nil
		}
	}
	return false, errors.New("maintenance: the window kept changing while it was being ended")
}

// MaintenanceOf is the source's current maintenance window, or nil.
func (q *Queue) MaintenanceOf(ctx context.Context, source string) (*Maintenance, error) {
	b, err := q.rdb.Get(ctx, q.k.maintenance(source)).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("maintenance: %w", err)
	}
	var m Maintenance
	if err := json.Unmarshal(b, &m); err != nil {
		return nil, fmt.Errorf("maintenance: %w", err)
	}
	return &m, nil
}

// AuditEntry is one trigger decision, kept for operators.
type AuditEntry struct {
	At      time.Time `json:"at"`
	Source  string    `json:"source"`
	EventID string    `json:"event_id,omitempty"`
	Trigger string    `json:"trigger,omitempty"`
	Zone    string    `json:"zone,omitempty"`
	Status  string    `json:"status"` // accepted, duplicate, rejected, quarantined, reset, lowered, refused
	Reason  string    `json:"reason,omitempty"`
	AlertID alert.ID  `json:"alert_id,omitempty"`
}

// auditKeep is how many entries each audit list keeps.
const auditKeep = 10000

// auditCmd records a trigger decision on a list of recent decisions and
// appends its trigger.<status> entry, in one step.
//
// KEYS[1] list   KEYS[2] audit seq   KEYS[3] audit log
// ARGV[1] decision JSON   ARGV[2] entries the list keeps   ARGV[3] entry body ("" appends none)
var auditCmd = redis.NewScript(audit.Lua + `
redis.call('LPUSH', KEYS[1], ARGV[1])
redis.call('LTRIM', KEYS[1], 0, tonumber(ARGV[2]) - 1)
if ARGV[3] ~= '' then tocsin_audit(KEYS[2], KEYS[3], ARGV[3]) end
return 1
`)

// Audit records a decision. Rejections (forged, stale, replayed, flooding
// triggers) go on a list of their own, so a flood of them never pushes a
// real decision out of the list operators read. Every decision, rejections
// too, also appends a trigger.<status> entry to the audit log (subject the
// source; detail: event_id, trigger, zone, reason, alert_id, those set).
func (q *Queue) Audit(ctx context.Context, e AuditEntry) error {
	b, _ := json.Marshal(e)
	key := q.k.audit()
	if e.Status == "rejected" {
		key = q.k.auditRejected()
	}
	detail := detailOf("event_id", e.EventID, "trigger", e.Trigger, "zone", e.Zone, "reason", e.Reason, "alert_id", string(e.AlertID))
	entry := audit.Entry{Time: q.opts.Now(), Kind: "trigger." + e.Status, Actor: actor(ctx), Subject: e.Source, Detail: detail}
	if err := auditCmd.Run(ctx, q.rdb, append([]string{key}, q.auditLog()...), b, auditKeep, q.body(entry)).Err(); err != nil {
		return fmt.Errorf("audit: %w", err)
	}
	return nil
}

// AuditLog returns up to n recent decisions, newest first: rejections only
// when rejected is set, else every other decision.
func (q *Queue) AuditLog(ctx context.Context, n int, rejected bool) ([]AuditEntry, error) {
	key := q.k.audit()
	if rejected {
		key = q.k.auditRejected()
	}
	raw, err := q.rdb.LRange(ctx, key, 0, int64(n-1)).Result()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	out := make([]AuditEntry, 0, len(raw))
	for _, r := range raw {
		var e AuditEntry
		if json.Unmarshal([]byte(r), &e) == nil {
			out = append(out, e)
		}
	}
	return out, nil
}

// Corroborate records a trigger source as confirming an alert (the history
// GET /v1/alerts/{id} shows; Enqueue records it as holding the alert raised).
func (q *Queue) Corroborate(ctx context.Context, id alert.ID, source string) error {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return err
	}
	_, err = q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, sh.sources(id), source)
		p.Expire(ctx, sh.sources(id), q.opts.Retain+7*24*time.Hour)
		return nil
	})
	return err
}

// Corroborators are the trigger sources that confirmed an alert.
func (q *Queue) Corroborators(ctx context.Context, id alert.ID) ([]string, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return nil, err
	}
	return q.rdb.SMembers(ctx, sh.sources(id)).Result()
}

// lowerCmd is a panel's reset: it takes the source off the alert's raised
// set and, when no source holds the alert raised any more, marks it
// lowered in the same step, so no trigger joins it from then on (enqueueCmd
// makes a new alert instead) while its retraction follows. The reset's
// event id is spent by the caller once the reset is carried out (SeenReset),
// so a reset that failed half-way can be sent again.
//
// KEYS[1] the reset's trigger event key   KEYS[2] the alert's raised set   KEYS[3] the alert hash
// ARGV[1] source
// Returns -1 for a replayed reset, else how many sources still hold the alert raised.
var lowerCmd = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
redis.call('SREM', KEYS[2], ARGV[1])
local n = redis.call('SCARD', KEYS[2])
if n == 0 and redis.call('EXISTS', KEYS[3]) == 1 then redis.call('HSET', KEYS[3], 'lowered', '1') end
return n
`)

// Lower records a source's reset of alert id and returns how many other
// sources still hold the alert raised; ErrReplay if the reset's event id
// was spent before. The caller spends it (SeenReset) once the reset is done.
func (q *Queue) Lower(ctx context.Context, id alert.ID, source, event string) (int, error) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		return 0, fmt.Errorf("lower: %w", err)
	}
	n, err := lowerCmd.Run(ctx, q.rdb, []string{sh.triggerEvent(source, event), sh.raised(id), sh.alert(id)}, source).Int()
	if err != nil {
		return 0, fmt.Errorf("lower: %w", err)
	}
	if n < 0 {
		return 0, ErrReplay
	}
	return n, nil
}

// MoveLegacyKeys moves what a gateway from before the shards kept under
// other names, so an upgrade in place keeps it: the sources' maintenance
// windows (with their time left: a panel being serviced must not sound) and
// the lists of recent trigger decisions. It returns how many keys it moved.
// Alerts still queued under the old names are not moved: drain the queue
// before upgrading (docs/admin.md). Such a gateway never ran on Redis
// Cluster, so on Cluster there is nothing to move.
func (q *Queue) MoveLegacyKeys(ctx context.Context) (int, error) {
	if q.cluster != nil {
		return 0, nil
	}
	moved := 0
	p := q.opts.Prefix
	iter := q.rdb.Scan(ctx, 0, p+":maint:*", 1000).Iterator()
	for iter.Next(ctx) {
		old := iter.Val()
		source := strings.TrimPrefix(old, p+":maint:")
		v, err := q.rdb.Get(ctx, old).Result()
		if errors.Is(err, redis.Nil) {
			continue // ended meanwhile
		}
		if err != nil {
			return moved, err
		}
		ttl, err := q.rdb.PTTL(ctx, old).Result()
		if err != nil {
			return moved, err
		}
		if ttl > 0 {
			if err := q.rdb.SetNX(ctx, q.k.maintenance(source), v, ttl).Err(); err != nil {
				return moved, err
			}
		}
		q.rdb.Del(ctx, old)
		moved++
	}
	if err := iter.Err(); err != nil {
		return moved, err
	}
	for old, now := range map[string]string{p + ":audit": q.k.audit(), p + ":audit:rejected": q.k.auditRejected()} {
		if ok, err := q.rdb.RenameNX(ctx, old, now).Result(); err == nil && ok {
			moved++
		} else if err != nil && !strings.Contains(err.Error(), "no such key") {
			return moved, err
		}
	}
	return moved, nil
}
