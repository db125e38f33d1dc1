package priority

import (
	"context"

	"github.com/tocsin-alert/tocsin/alert"
)

// EnqueueFirstChunk queues only a plan's first chunk, as an instance that
// died right after it would leave the alert.
func (q *Queue) EnqueueFirstChunk(ctx context.Context, p Plan) (Enqueued, error) {
	r, _, _, err := q.enqueueFirst(ctx, p)
	return r, err
}

// WithoutAudit makes q append no audit entries: the baseline the audit's
// cost is measured against (BenchmarkAuditCost). Production never does this.
func WithoutAudit(q *Queue) *Queue {
	q.noAudit = true
	return q
}

// AuditLua is the audit prelude the scripts include, for testing its Lua
// against encoding/json.
const AuditLua = auditLua

// LaneKeys are kind's lane keys in every shard, for tests that read the
// lanes straight from Redis: ready, jobs, leases and delayed.
func (q *Queue) LaneKeys(kind alert.Kind) [][4]string {
	var out [][4]string
	for _, sh := range q.shards {
		l := sh.lane(kind)
		out = append(out, [4]string{l.ready, l.jobs, l.leases, l.delayed})
	}
	return out
}

// AlertKeys are an alert's hash and ledger keys.
func (q *Queue) AlertKeys(ctx context.Context, id alert.ID) (hash, ledger string) {
	sh, err := q.shardOf(ctx, id)
	if err != nil {
		panic(err)
	}
	return sh.alert(id), sh.ledger(id)
}

// MoveAudit moves every shard's audit outbox onto the audit log (Redis
// Cluster), as Resume does.
func (q *Queue) MoveAudit(ctx context.Context) error {
	for _, sh := range q.shards {
		if err := q.moveAudit(ctx, sh); err != nil {
			return err
		}
	}
	return nil
}

// HomeKey is a key in the shard of principal's alerts.
func (q *Queue) HomeKey(principal string) string { return q.shardFor(principal, "").alerts() }
