package audit

import "context"

// SystemActor is the actor of an action no one asked for: a timer, a
// sweep, a worker's claim.
const SystemActor = "system"

type actorKey struct{}

// WithActor returns a context that names who acts in it: "operator:ID",
// "principal:ID", "source:ID" or "system". The gateway puts each request's
// actor on its context; the code that appends audit entries reads it with
// ActorFrom, so no signature has to carry it.
func WithActor(ctx context.Context, actor string) context.Context {
	return context.WithValue(ctx, actorKey{}, actor)
}

// ActorFrom is the actor WithActor put on ctx, or "system" when there is
// none (or it is empty).
func ActorFrom(ctx context.Context) string {
	if a, ok := ctx.Value(actorKey{}).(string); ok && a != "" {
		return a
	}
	return SystemActor
}
