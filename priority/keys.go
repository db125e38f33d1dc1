package priority

import (
	"hash/fnv"
	"strconv"
	"strings"

	"github.com/tocsin-alert/tocsin/alert"
)

// The queue's keys live in shards. A shard is one Redis hash slot (the
// hash tag {q<n>}) that holds everything a script of the queue touches: its
// alerts (hash, ledger, raised and corroborating sources), its lanes, its
// dedup keys and trigger event ids, the index of its alerts, its planning
// and retracting sets and, on Redis Cluster, its audit outbox. So every
// script runs in one slot — on a single Redis, behind Sentinel, or on Redis
// Cluster, where the shards spread over the masters.
//
// An alert's shard is chosen by its home (homeOf): the principal that sent
// it, or for a building system's trigger the trigger template. Every rule
// that relates two alerts — an Idempotency-Key, a fingerprint, a CAP Update
// or Cancel naming an earlier message of the same sender, 52 panels pressed
// for one event — relates alerts of one home, so it is decided in one step.
// Another home's alert superseded by an Update is fenced in a step of its
// own, after (Enqueue).
//
// Scripts name the alert of a job they pop (claim, finish) from the shard's
// tag at run time, as ledger_key does in scripts.go: such a key is in the
// slot of the script's declared KEYS by construction (Redis Cluster refuses a
// script that reaches into another slot; TestOnRedisCluster runs every
// script there).
type keys struct{ prefix string }

// shard is one shard's key builder: p is "<prefix>:{q<n>}".
type shard struct {
	n int
	p string
}

func (k keys) shard(n int) shard { return shard{n: n, p: k.prefix + ":{q" + strconv.Itoa(n) + "}"} }

// homeOf is the home of alerts sent by principal with source: a trigger
// source's alerts belong to their template (source "trigger/<name>", so
// panels of one event coalesce), everyone else's to the principal.
func homeOf(principal, source string) string {
	if strings.HasPrefix(principal, TriggerPrincipalPrefix) {
		return "t\x00" + source
	}
	return "p\x00" + principal
}

// shardNum is the shard of a home among n shards.
func shardNum(home string, n int) int {
	if n <= 1 {
		return 0
	}
	h := fnv.New32a()
	h.Write([]byte(home))
	return int(h.Sum32() % uint32(n))
}

// alert is the alert hash: doc, fence, state, reason, created, expires and
// the counters "n|kind|state".
func (s shard) alert(id alert.ID) string { return s.p + ":a:" + string(id) }

// ledger maps "kind/target" to the target's alert delivery state,
// "r|kind/target" to its retraction delivery state, and "x|kind/target" to 1
// once the target may have been reached by an attempt that a later job
// handed back (so it stays attempted).
func (s shard) ledger(id alert.ID) string { return s.alert(id) + ":l" }

// raised is the set of trigger sources that hold an alert raised (their
// trigger, not yet reset at the panel).
func (s shard) raised(id alert.ID) string { return s.alert(id) + ":raised" }

// sources is the set of trigger sources that corroborate an alert.
func (s shard) sources(id alert.ID) string { return s.alert(id) + ":src" }

// alerts is a sorted set of the shard's alert ids scored by creation time (ms).
func (s shard) alerts() string { return s.p + ":alerts" }

// dedup holds one alert id under a hashed idempotency key or fingerprint.
func (s shard) dedup(kind, sum string) string { return s.p + ":dedup:" + kind + ":" + sum }

// triggerEvent remembers a trigger source's event id (replay guard) and the
// alert it made or joined (for the panel's reset).
func (s shard) triggerEvent(source, event string) string {
	return s.p + ":trig:" + source + ":" + sum(event)
}

// planning is the set of alerts whose plan is still being queued in chunks,
// scored by the deadline of the instance planning it.
func (s shard) planning() string { return s.p + ":planning" }

// retracting is the set of retracted alerts whose ledger is still being
// swept, scored by the deadline of the instance sweeping it.
func (s shard) retracting() string { return s.p + ":retracting" }

// lane returns the keys of a channel kind's lane in the shard: ready (sorted
// set of job ids by priority then sequence), jobs (hash id -> job JSON),
// leases (sorted set of claimed job ids by lease deadline, ms), wake (a list
// blocking readers wait on), seq (the job sequence) and delayed (sorted set
// of handed-back job ids by the time they may be claimed again, ms).
func (s shard) lane(kind alert.Kind) laneKeys {
	p := s.p + ":lane:" + string(kind)
	return laneKeys{ready: p + ":ready", jobs: p + ":jobs", leases: p + ":leases", wake: p + ":wake", seq: p + ":seq", delayed: p + ":delayed"}
}

// outbox is the shard's audit outbox on Redis Cluster: entries the shard's
// scripts appended (numbered by its own seq), waiting to be moved onto the
// audit log in the {audit} slot (moveAudit).
func (s shard) outbox() []string { return []string{s.p + ":audit:seq", s.p + ":audit:log"} }

type laneKeys struct{ ready, jobs, leases, wake, seq, delayed string }

func (l laneKeys) list() []string {
	return []string{l.ready, l.jobs, l.leases, l.wake, l.seq, l.delayed}
}

// pace holds a sender's next free send slot (GCRA).
func (k keys) pace(sender string) string { return k.prefix + ":pace:{" + sender + "}" }

// The trigger sources' maintenance windows and the lists of recent trigger
// decisions are written with the audit entries that record them, so they
// share the audit's slot.

// maintenance holds a trigger source's maintenance window (JSON), expiring at its end.
func (k keys) maintenance(source string) string { return k.prefix + ":{audit}:maint:" + source }

// audit is the list of recent trigger decisions, newest first.
func (k keys) audit() string { return k.prefix + ":{audit}:decisions" }

// auditRejected is the list of recent rejected triggers, kept apart so a
// flood of them never pushes real decisions out of audit.
func (k keys) auditRejected() string { return k.prefix + ":{audit}:decisions:rejected" }

// auditMoved records, per shard, the last outbox entry moved onto the audit
// log (moveAudit), so a move repeated after a crash appends nothing twice.
func (k keys) auditMoved() string { return k.prefix + ":{audit}:moved" }

// fence is the pub/sub channel on which retract announces a fenced alert id.
func (k keys) fence() string { return k.prefix + ":fence" }
