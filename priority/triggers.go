package priority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
)

// SeenEvent records a trigger source's event id for ttl and reports whether
// it was new; a second sighting is a replay.
func (q *Queue) SeenEvent(ctx context.Context, source, event string, ttl time.Duration) (bool, error) {
	ok, err := q.rdb.SetNX(ctx, q.k.triggerEvent(source, event), "-", ttl).Result()
	if err != nil {
		return false, fmt.Errorf("trigger event: %w", err)
	}
	return ok, nil
}

// EventAlertOf is the alert a source's event made or joined (Enqueue with
// Plan.Trigger records it), or "".
func (q *Queue) EventAlertOf(ctx context.Context, source, event string) (alert.ID, error) {
	v, err := q.rdb.Get(ctx, q.k.triggerEvent(source, event)).Result()
	if errors.Is(err, redis.Nil) || v == "-" {
		return "", nil
	}
	if err != nil {
		return "", fmt.Errorf("trigger event: %w", err)
	}
	return alert.ID(v), nil
}

// Maintenance is a trigger source's maintenance window.
type Maintenance struct {
	Source string    `json:"source"`
	Reason string    `json:"reason"`
	By     string    `json:"by"`
	Since  time.Time `json:"since"`
	Until  time.Time `json:"until"`
}

// SetMaintenance puts a source into maintenance until m.Until; the window
// ends by itself then (the key expires).
func (q *Queue) SetMaintenance(ctx context.Context, m Maintenance) error {
	b, _ := json.Marshal(m)
	return q.rdb.Set(ctx, q.k.maintenance(m.Source), b, time.Until(m.Until)).Err()
}

// EndMaintenance ends a source's maintenance early; false if there was none.
func (q *Queue) EndMaintenance(ctx context.Context, source string) (bool, error) {
	n, err := q.rdb.Del(ctx, q.k.maintenance(source)).Result()
	return n == 1, err
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

// Audit records a decision. Rejections (forged, stale, replayed, flooding
// triggers) go on a list of their own, so a flood of them never pushes a
// real decision out of the audit.
func (q *Queue) Audit(ctx context.Context, e AuditEntry) error {
	b, _ := json.Marshal(e)
	key := q.k.audit()
	if e.Status == "rejected" {
		key = q.k.auditRejected()
	}
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.LPush(ctx, key, b)
		p.LTrim(ctx, key, 0, auditKeep-1)
		return nil
	})
	return err
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
	_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.SAdd(ctx, q.k.sources(id), source)
		p.Expire(ctx, q.k.sources(id), q.opts.Retain+7*24*time.Hour)
		return nil
	})
	return err
}

// Corroborators are the trigger sources that confirmed an alert.
func (q *Queue) Corroborators(ctx context.Context, id alert.ID) ([]string, error) {
	return q.rdb.SMembers(ctx, q.k.sources(id)).Result()
}

// lowerCmd is a panel's reset: it takes the source off the alert's raised
// set and, when no source holds the alert raised any more, marks it
// lowered in the same step, so no trigger joins it from then on (enqueueCmd
// makes a new alert instead) while its retraction follows. The reset's
// event id is spent by the caller once the reset is carried out (SeenEvent),
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
// was spent before. The caller spends it (SeenEvent) once the reset is done.
func (q *Queue) Lower(ctx context.Context, id alert.ID, source, event string) (int, error) {
	n, err := lowerCmd.Run(ctx, q.rdb, []string{q.k.triggerEvent(source, event), q.k.raised(id), q.k.alert(id)}, source).Int()
	if err != nil {
		return 0, fmt.Errorf("lower: %w", err)
	}
	if n < 0 {
		return 0, ErrReplay
	}
	return n, nil
}
