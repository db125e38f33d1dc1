package priority

import "context"

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
