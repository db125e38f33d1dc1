package gateway

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/priority"
)

// errFenced is the cancellation cause of deliveries cut short by a retraction.
var errFenced = errors.New("alert retracted")

// errShutdown is the cancellation cause of deliveries cut short by shutdown.
var errShutdown = errors.New("gateway shutting down")

// Run claims and delivers jobs for every channel kind that has an adapter,
// until ctx ends. Then it stops claiming, lets running jobs finish for up to
// grace, and hands the rest back to the queue. It returns when every worker
// goroutine has exited.
func (g *Gateway) Run(ctx context.Context, grace time.Duration) error {
	hard, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)
	fences := g.q.Fences(hard)
	kept := make(chan struct{})
	if g.keeper != nil {
		// Archives and checkpoints the audit; its last round after ctx ends
		// checkpoints everything archived, and Run waits for it.
		go func() { g.keeper.Run(ctx); close(kept) }()
	} else {
		close(kept)
	}
	go func() { // exits when hard is cancelled and Fences closes its channel
		for id := range fences {
			g.cutShort(id)
		}
	}()
	var jobs sync.WaitGroup
	var loops sync.WaitGroup
	loops.Add(1)
	go func() { // exits when ctx ends
		defer loops.Done()
		g.resumeUnfinished(ctx)
	}()
	loops.Add(1)
	go func() { // exits when ctx ends
		defer loops.Done()
		g.settleDrafts(ctx)
	}()
	for kind, a := range g.adapters {
		loops.Add(1)
		go func() { // exits when ctx ends
			defer loops.Done()
			g.claimLoop(ctx, hard, kind, a, &jobs)
		}()
	}
	loops.Wait()
	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }() // exits when every job has
	select {
	case <-done:
	case <-time.After(grace):
		g.log.Warn().Dur("grace", grace).Msg("Jobs still running at shutdown; handing them back")
		stop(errShutdown)
		<-done
	}
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

// claimLoop keeps up to Workers jobs of one kind running, and up to
// UrgentWorkers more of priority life-safety or above (retractions among
// them): so a retraction or an Extreme alert is claimed at once even while
// every ordinary worker is busy. It claims as long as there is work for a
// free slot; otherwise it waits until a job ends or the lane's wake list
// says work may have arrived (at least every half lease, so expired leases
// and handed-back jobs whose time has come are claimed again).
func (g *Gateway) claimLoop(ctx, hard context.Context, kind alert.Kind, a adapters.Adapter, jobs *sync.WaitGroup) {
	log := g.log.With().Str("kind", string(kind)).Logger()
	q := g.queueFor(kind)
	var mu sync.Mutex
	running := [2]int{} // ordinary, urgent
	limit := [2]int{g.cfg.Queue.Workers, g.cfg.Queue.UrgentWorkers}
	freed := make(chan struct{}, 1)
	wake, want := g.waker(ctx, q, kind)
	var lastErr string
	for ctx.Err() == nil {
		mu.Lock()
		pool, min := -1, alert.PriorityLowest
		switch {
		case running[0] < limit[0]:
			pool = 0
		case running[1] < limit[1]:
			pool, min = 1, alert.PriorityLifeSafety
		}
		mu.Unlock()
		if pool < 0 {
			select {
			case <-freed:
			case <-ctx.Done():
			}
			continue
		}
		j, err := q.Claim(ctx, kind, min)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if err.Error() != lastErr { // once per distinct error
				log.Error().Err(err).Msg("Claim failed; retrying")
				lastErr = err.Error()
			}
			sleep(ctx, 200*time.Millisecond)
			continue
		}
		lastErr = ""
		if j == nil {
			select {
			case want <- struct{}{}: // idle: listen on the lane's wake list
			default:
			}
			select {
			case <-freed:
			case <-wake:
			case <-ctx.Done():
			}
			continue
		}
		mu.Lock()
		running[pool]++
		mu.Unlock()
		jobs.Add(1)
		go func() { // exits when the job is finished or handed back
			defer jobs.Done()
			defer func() {
				mu.Lock()
				running[pool]--
				mu.Unlock()
				select {
				case freed <- struct{}{}:
				default:
				}
			}()
			g.runJob(hard, j, a, log)
		}()
	}
}

// waker turns the lane's wake list into a channel: once the claim loop
// says it is idle (want), it waits on the list and signals when work may
// have arrived, or after half a lease (at least 1s, Redis' BLPOP granularity
// in go-redis), so expired leases and handed-back jobs are claimed again. It
// takes a wake token only while this instance has nothing to do, so a busy
// instance never takes one an idle instance needs. It exits when ctx ends.
func (g *Gateway) waker(ctx context.Context, q *priority.Queue, kind alert.Kind) (wake <-chan struct{}, want chan<- struct{}) {
	ch, wants := make(chan struct{}, 1), make(chan struct{}, 1)
	go func() { // exits when ctx ends
		for {
			select {
			case <-wants:
			case <-ctx.Done():
				return
			}
			if err := q.Wait(ctx, kind, max(time.Second, g.q.Lease()/2)); err != nil && ctx.Err() == nil {
				sleep(ctx, 200*time.Millisecond)
			}
			select {
			case ch <- struct{}{}:
			default:
			}
		}
	}()
	return ch, wants
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// runJob delivers one job: it delivers to every target at once (the Fence
// decorator re-checks the fence before each attempt), keeps the lease alive
// meanwhile, and records the outcomes. Targets it could not reach within the
// retry hold, and targets cut short by shutdown, are handed back to the
// queue with the job's outcomes (Finish): as never attempted ("queued") when
// nothing was sent to them, else as attempted ("retry").
func (g *Gateway) runJob(hard context.Context, j *priority.Job, a adapters.Adapter, log zerolog.Logger) {
	log = log.With().Str("alert_id", string(j.AlertID)).Str("job", j.ID).Logger()
	ctx, cancel := context.WithCancelCause(hard)
	defer cancel(nil)
	msg := j.Message()
	if msg == alert.MessageAlert {
		untrack := g.track(j.AlertID, cancel)
		defer untrack()
	}
	al, reason, err := g.queueFor(j.Kind).Alert(ctx, j.AlertID)
	if err != nil {
		lvl := zerolog.ErrorLevel
		if ctx.Err() != nil {
			lvl = zerolog.DebugLevel // shutting down
		}
		log.WithLevel(lvl).Err(err).Msg("Cannot read the job's alert; handing the job back")
		g.release(j, log)
		return
	}

	stopBeat := g.heartbeat(ctx, j, log)
	defer stopBeat()

	outcomes := make(map[string]alert.State, len(j.Targets))
	var later time.Duration // the soonest a deferred target may be tried again; 0: none deferred
	prog := g.startProgress(ctx, j, log)
	dctx, dcancel := context.WithDeadline(ctx, j.Expires())
	dctx, waitInflight := adapters.WithInflight(dctx)
	var wg sync.WaitGroup
	var omu sync.Mutex
	since := al.Sent
	if msg == alert.MessageRetraction {
		since = time.Now()
	}
	for _, id := range j.Targets {
		wg.Add(1)
		go func() { // exits when the delivery returns
			defer wg.Done()
			t := alert.Target{Kind: j.Kind, ID: id}
			d := alert.Delivery{ID: alert.DeliveryID(al.ID, t, msg), Alert: al, Target: t, Message: msg, Reason: reason, Expires: j.Expires()}
			actx, attempts := adapters.WithAttempts(dctx)
			err := a.Deliver(actx, d)
			st := g.outcome(ctx, dctx, j, err, attempts())
			var de *adapters.DeferError
			omu.Lock()
			outcomes[id] = st
			if errors.As(err, &de) && (later == 0 || de.After < later) {
				later = max(de.After, time.Millisecond)
			}
			omu.Unlock()
			switch st {
			case alert.StateQueued, alert.StateRetry:
				return // handed back with the job's outcomes
			case alert.StateSent, alert.StateDelivered:
				g.m.latency.WithLabelValues(string(j.Kind), string(msg)).Observe(time.Since(since).Seconds())
			case alert.StateFailed:
				if !errors.Is(err, adapters.ErrFenced) && context.Cause(ctx) != errFenced {
					log.Warn().Str("target", t.Key()).Str("message", string(msg)).Err(err).Msg("Delivery failed")
				}
			}
			g.m.deliveries.WithLabelValues(string(j.Kind), string(msg), string(st)).Inc()
			// A delivery cut short may have left its request on the wire. Its
			// outcome waits for Finish (after waitInflight): recorded now, a
			// retraction sweep would queue the retraction ahead of the original.
			if st != alert.StateFailed || actx.Err() == nil {
				prog.add(id, st)
			}
		}()
	}
	wg.Wait()
	prog.close()
	dcancel()
	// A provider call cut short may still be on its way; its target's
	// retraction (queued by Finish) must not overtake it.
	waitInflight()
	var retryAt time.Time
	if later > 0 {
		backoff := min(g.cfg.Delivery.RetryInitial<<min(j.Retries, 20), g.cfg.Delivery.RetryMax)
		retryAt = time.Now().Add(max(later, backoff))
	}
	// Finish must land: retry until it does or shutdown forces a hand-back (the
	// lease then expires and another instance redoes the job).
	for attempt := 0; ; attempt++ {
		err := g.queueFor(j.Kind).Finish(context.WithoutCancel(ctx), j, outcomes, retryAt)
		if err == nil {
			return
		}
		if attempt == 0 {
			log.Error().Err(err).Msg("Cannot record outcomes; retrying")
		}
		if hard.Err() != nil {
			return
		}
		sleep(hard, 200*time.Millisecond)
	}
}

// outcome is the ledger state a delivery's result leaves its target in.
// What counts is whether the target was attempted — its original handed to
// the provider or device, or perhaps so (a request cut short on the wire):
// only an attempted target can have been reached, and only it is owed a
// retraction.
func (g *Gateway) outcome(ctx, dctx context.Context, j *priority.Job, err error, attempts int) alert.State {
	var de *adapters.DeferError
	switch {
	case err == nil && g.pending[j.Kind]:
		return alert.StateSent // the provider has it; its callback tells the rest
	case err == nil:
		return alert.StateDelivered
	case attempts == 0 && (errors.Is(err, adapters.ErrFenced) || context.Cause(ctx) == errFenced):
		// Never attempted: the target heard nothing and is owed nothing.
		return alert.StateCancelled
	case attempts == 0 && (errors.Is(err, adapters.ErrExpired) || errors.Is(dctx.Err(), context.DeadlineExceeded) || !time.Now().Before(j.Expires())):
		return alert.StateExpired // never attempted, and now too late
	case context.Cause(ctx) == errShutdown, errors.As(err, &de):
		// Handed back: to another instance (shutdown) or for later (hold up).
		if attempts == 0 {
			return alert.StateQueued
		}
		return alert.StateRetry
	case attempts == 0 && !adapters.IsPermanent(err):
		// Never attempted, and Retry gave up because the next try would
		// come after the expiry (a breaker open to the end): expired.
		return alert.StateExpired
	}
	// Attempted and not confirmed: failed. That includes a retraction
	// arriving mid-attempt (fence or cut short), so the target is owed its
	// retraction.
	return alert.StateFailed
}

// progressEvery is how often a running job's outcomes so far go to the ledger.
const progressEvery = 100 * time.Millisecond

// progress batches a running job's outcomes to the ledger: one Redis call per
// progressEvery, not one per target. It is best effort; Finish records every
// outcome in any case.
type progress struct {
	mu    sync.Mutex
	fresh map[string]alert.State
	close func()
}

func (g *Gateway) startProgress(ctx context.Context, j *priority.Job, log zerolog.Logger) *progress {
	p := &progress{fresh: map[string]alert.State{}}
	p.close = every(ctx, progressEvery, func(ctx context.Context) {
		p.mu.Lock()
		batch := p.fresh
		p.fresh = map[string]alert.State{}
		p.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		if err := g.queueFor(j.Kind).Progress(ctx, j, batch); err != nil {
			log.Debug().Err(err).Msg("Progress not recorded")
		}
	})
	return p
}

func (p *progress) add(target string, st alert.State) {
	p.mu.Lock()
	p.fresh[target] = st
	p.mu.Unlock()
}

func (g *Gateway) release(j *priority.Job, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := g.queueFor(j.Kind).Release(ctx, j); err != nil {
		log.Warn().Err(err).Msg("Cannot hand the job back; its lease will expire")
	}
}

// heartbeat extends the job's lease every third of a lease until stopped.
func (g *Gateway) heartbeat(ctx context.Context, j *priority.Job, log zerolog.Logger) (stop func()) {
	return every(ctx, g.q.Lease()/3, func(ctx context.Context) {
		if ok, err := g.queueFor(j.Kind).Extend(ctx, j); err == nil && !ok {
			log.Warn().Msg("Lease lost; another instance may redo this job")
		}
	})
}

// track registers a running original job so a retraction can cut it short.
func (g *Gateway) track(id alert.ID, cancel context.CancelCauseFunc) (untrack func()) {
	key := new(int)
	g.fenceMu.Lock()
	if g.inFence[id] == nil {
		g.inFence[id] = map[*int]context.CancelCauseFunc{}
	}
	g.inFence[id][key] = cancel
	g.fenceMu.Unlock()
	return func() {
		g.fenceMu.Lock()
		delete(g.inFence[id], key)
		if len(g.inFence[id]) == 0 {
			delete(g.inFence, id)
		}
		g.fenceMu.Unlock()
	}
}

// cutShort cancels the running original jobs of a just-retracted alert: their
// attempts end now, so the targets' retractions can follow at once.
func (g *Gateway) cutShort(id alert.ID) {
	g.fenceMu.Lock()
	defer g.fenceMu.Unlock()
	for _, cancel := range g.inFence[id] {
		cancel(errFenced)
	}
	for _, c := range g.cancellers {
		go c.CancelAlert(id) // exits after its provider calls
	}
}
