package priority

import (
	"github.com/tocsin-alert/tocsin/alert"
)

// keys builds every Redis key the queue uses, so their shapes live in one place.
//
// An alert's keys share the hash tag {a:<id>}; a lane's keys share {lane:<kind>}.
// Scripts that cross the two (enqueue, claim, finish, retract) name the other slot's
// keys from inside Lua, which is fine on a single Redis or Sentinel; Redis Cluster
// needs those scripts split along the two slots first (see DESIGN.md).
type keys struct{ prefix string }

// alert is the alert hash: doc, fence, state, reason, created, expires.
func (k keys) alert(id alert.ID) string { return k.prefix + ":{a:" + string(id) + "}" }

// ledger maps "kind/target" to the target's alert delivery state,
// "r|kind/target" to its retraction delivery state, and "x|kind/target" to 1
// once the target may have been reached by an attempt that a later job
// handed back (so it stays attempted).
func (k keys) ledger(id alert.ID) string { return k.alert(id) + ":l" }

// alerts is a sorted set of alert ids scored by creation time (ms).
func (k keys) alerts() string { return k.prefix + ":alerts" }

// dedup holds one alert id under a hashed idempotency key or fingerprint.
func (k keys) dedup(kind, sum string) string { return k.prefix + ":dedup:" + kind + ":" + sum }

// lane returns the keys of a channel kind's lane: ready (sorted set of job
// ids by priority then sequence), jobs (hash id -> job JSON), leases (sorted set
// of claimed job ids by lease deadline, ms), wake (a list blocking readers
// wait on), seq (the job sequence) and delayed (sorted set of handed-back job
// ids by the time they may be claimed again, ms).
func (k keys) lane(kind alert.Kind) laneKeys {
	p := k.prefix + ":{lane:" + string(kind) + "}"
	return laneKeys{ready: p + ":ready", jobs: p + ":jobs", leases: p + ":leases", wake: p + ":wake", seq: p + ":seq", delayed: p + ":delayed"}
}

// pace holds a sender's next free send slot (GCRA).
func (k keys) pace(sender string) string { return k.prefix + ":pace:{" + sender + "}" }

// triggerEvent remembers a trigger source's event id (replay guard) and the
// alert it made or joined (for the panel's reset).
func (k keys) triggerEvent(source, event string) string {
	return k.prefix + ":trig:" + source + ":" + sum(event)
}

// maintenance holds a trigger source's maintenance window (JSON), expiring at its end.
func (k keys) maintenance(source string) string { return k.prefix + ":maint:" + source }

// audit is the list of recent trigger decisions, newest first.
func (k keys) audit() string { return k.prefix + ":audit" }

// auditRejected is the list of recent rejected triggers, kept apart so a
// flood of them never pushes real decisions out of audit.
func (k keys) auditRejected() string { return k.prefix + ":audit:rejected" }

// raised is the set of trigger sources that hold an alert raised (their
// trigger, not yet reset at the panel).
func (k keys) raised(id alert.ID) string { return k.alert(id) + ":raised" }

// sources is the set of trigger sources that corroborate an alert.
func (k keys) sources(id alert.ID) string { return k.alert(id) + ":src" }

// fence is the pub/sub channel on which retract announces a fenced alert id.
func (k keys) fence() string { return k.prefix + ":fence" }

type laneKeys struct{ ready, jobs, leases, wake, seq, delayed string }

func (l laneKeys) list() []string {
	return []string{l.ready, l.jobs, l.leases, l.wake, l.seq, l.delayed}
}

// planning is the set of alerts whose plan is still being queued in chunks,
// scored by the deadline of the instance planning it.
func (k keys) planning() string { return k.prefix + ":planning" }

// retracting is the set of retracted alerts whose ledger is still being
// swept, scored by the deadline of the instance sweeping it.
func (k keys) retracting() string { return k.prefix + ":retracting" }
