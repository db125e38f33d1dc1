package priority

import "context"

// EnqueueFirstChunk queues only a plan's first chunk, as an instance that
// died right after it would leave the alert.
func (q *Queue) EnqueueFirstChunk(ctx context.Context, p Plan) (Enqueued, error) {
	r, _, _, err := q.enqueueFirst(ctx, p)
	return r, err
}
