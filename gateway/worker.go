package gateway

import (
	"context"
	"time"
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
	g.delivery.Run(ctx, grace, g.resumeUnfinished, g.settleDrafts)
	<-kept // the keeper's last round saw every entry the jobs appended
	return nil
}

// resumeUnfinished finishes, every half lease, the plans of large alerts and
// the retraction sweeps whose instance died before they were done.
func (g *Gateway) resumeUnfinished(ctx context.Context) {
	stop := every(ctx, max(g.q.Lease()/2, 100*time.Millisecond), func(ctx context.Context) {
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

// every runs f every d until ctx ends or stop is called; stop returns once
// f's last run has.
func every(ctx context.Context, d time.Duration, f func(context.Context)) (stop func()) {
	ctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { // exits when ctx ends or stop is called
		defer close(done)
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
				f(ctx)
			}
		}
	}()
	return func() { cancel(); <-done }
}
