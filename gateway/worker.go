package gateway

import (
	"context"
	"time"

	"github.com/tocsin-alert/tocsin/delivery"
)

// Run claims and delivers jobs for every channel kind that has an adapter
// (package delivery), until ctx ends. Then it stops claiming, lets running
// jobs finish for up to grace, and hands the rest back to the queue. It
// returns when every worker goroutine has exited.
func (g *Gateway) Run(ctx context.Context, grace time.Duration) error {
	kept := make(chan struct{})
	if g.keeper != nil {
		// Archives and checkpoints the audit; its last round after ctx ends
		// checkpoints everything archived, and Run waits for it.
		go func() { g.keeper.Run(ctx); close(kept) }()
	} else {
		close(kept)
	}
	g.delivery.Run(ctx, grace, g.resumeUnfinished, g.settleDrafts, g.runProbes)
	<-kept // the keeper's last round saw every entry the jobs appended
	return nil
}

// resumeUnfinished finishes, every half lease, the plans of large alerts and
// the retraction sweeps whose instance died before they were done.
func (g *Gateway) resumeUnfinished(ctx context.Context) {
	stop := delivery.Every(ctx, max(g.q.Lease()/2, 100*time.Millisecond), func(ctx context.Context) {
		n, err := g.q.Resume(ctx, g.route)
		if err != nil && ctx.Err() == nil {
			g.log.Warn().Err(err).Msg("Resuming an unfinished plan or retraction sweep failed; trying again")
		}
		if n > 0 {
			g.log.Warn().Int("alerts", n).Msg("Resumed plans or retraction sweeps another instance left unfinished")
		}
	})
	<-ctx.Done()
	stop()
}
