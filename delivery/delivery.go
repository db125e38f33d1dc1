// Package delivery is Tocsin's delivery loop: the workers that claim jobs
// from the queue and hand them to the adapters, the decorators every attempt
// goes through (retry, breaker, pacing, the fence check), and the rules that
// turn a delivery's result into its target's ledger state. Its collaborators
// come in Deps; the gateway builds it and runs it.
package delivery

import (
	"cmp"
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

// Deps are an Engine's collaborators.
type Deps struct {
	// Queue is the queue the workers claim from.
	Queue *priority.Queue
	// Bulk is the queue the phone channels (SMS, voice) work through: the
	// same Redis over its own connections. Nil: Queue.
	Bulk *priority.Queue
	// Adapters are the undecorated adapters per channel kind; New wraps each
	// in the shared decorators: retry, breaker, pacing, and the fence check
	// right before every attempt.
	Adapters map[alert.Kind]adapters.Adapter
	// Fallbacks are second routes per channel kind (another Twilio account),
	// used while the primary's breaker is open.
	Fallbacks map[alert.Kind]adapters.Adapter
	// Retry tunes the retry decorator; its OnRetry is set by New (it logs).
	Retry adapters.RetryOptions
	// Breaker tunes the breakers; its OnStateChange, if set, is told of every
	// breaker's changes (the metrics).
	Breaker adapters.BreakerOptions
	// Fence is checked right before every attempt (adapters.Fence). Nil: the
	// queue's fence (CheckFence).
	Fence func(ctx context.Context, d alert.Delivery) error
	// Workers and UrgentWorkers are the jobs of one kind run at once, and
	// the more of priority life-safety or above (config queue.workers,
	// queue.urgent_workers).
	Workers, UrgentWorkers int
	// RetryInitial and RetryMax bound the back-off of a job handed back for
	// later (config delivery.retry_initial, delivery.retry_max).
	RetryInitial, RetryMax time.Duration
	Log                    zerolog.Logger
	Metrics                Metrics
}

// Metrics are the hooks the Engine reports deliveries through; nil ones are
// skipped.
type Metrics struct {
	// Latency is told, per target confirmed (sent or delivered), the time
	// from the alert's acceptance (or the retraction) to now.
	Latency func(k alert.Kind, msg alert.Message, d time.Duration)
	// Delivered is told of every delivery finished, with its outcome.
	Delivered func(k alert.Kind, msg alert.Message, st alert.State)
}

// Engine runs the deliveries of one gateway instance.
type Engine struct {
	q, bulk *priority.Queue
	log     zerolog.Logger
	// logs limits failure lines per channel and failure kind.
	logs                   *logLimiter
	metrics                Metrics
	workers, urgentWorkers int
	retryInitial, retryMax time.Duration
	adapters               map[alert.Kind]adapters.Adapter // decorated
	pending                map[alert.Kind]bool             // nil Deliver means accepted, not confirmed
	cancellers             []canceller

	fenceMu sync.Mutex
	inFence map[alert.ID]map[*int]context.CancelCauseFunc
}

// canceller is implemented by adapters that can call back what they handed
// to a provider when the alert is retracted (queued or ringing calls).
type canceller interface {
	CancelAlert(id alert.ID)
}

// New builds an Engine and decorates its adapters.
func New(o Deps) *Engine {
	e := &Engine{
		q: o.Queue, bulk: cmp.Or(o.Bulk, o.Queue), log: o.Log, metrics: o.Metrics,
		workers: o.Workers, urgentWorkers: o.UrgentWorkers, retryInitial: o.RetryInitial, retryMax: o.RetryMax,
		adapters: map[alert.Kind]adapters.Adapter{}, pending: map[alert.Kind]bool{},
		inFence: map[alert.ID]map[*int]context.CancelCauseFunc{},
	}
	fence := o.Fence
	if fence == nil {
		fence = e.CheckFence
	}
	ro, bo := o.Retry, o.Breaker
	e.logs = newLogLimiter(logWindow, e.log)
	ro.OnRetry = func(d alert.Delivery, attempt int, err error, wait time.Duration) {
		// A line for the first of each kind per window; a dead provider's
		// million deliveries become one line and a summary.
		if e.logs.allow(string(d.Target.Kind)+"/"+failureKind(err)+"/retry", "Delivery retried") {
			e.log.Warn().Str("alert_id", string(d.Alert.ID)).Str("target", d.Target.Key()).
				Str("message", string(d.Message)).Int("attempt", attempt).Err(err).Dur("wait", wait).Msg("Delivery retried")
		}
	}
	// One route per adapter: its breaker (per provider endpoint or target),
	// its pacing, and the fence check right before each attempt.
	route := func(k alert.Kind, a adapters.Adapter) adapters.Adapter {
		return adapters.Chain(a,
			adapters.Breaker(adapters.BreakerOptions{Failures: bo.Failures, Open: bo.Open, OnStateChange: bo.OnStateChange,
				Key: func(d alert.Delivery) string { return adapters.RouteOf(a, d).Breaker }}),
			adapters.Pace(e.Queue(k), a),
			adapters.Fence(fence))
	}
	for k, a := range o.Adapters {
		inner := route(k, a)
		if fb := o.Fallbacks[k]; fb != nil {
			inner = adapters.Failover(inner, route(k, fb))
		}
		e.adapters[k] = adapters.Retry(ro)(inner)
		if p, ok := a.(adapters.Pending); ok && p.Pending() {
			e.pending[k] = true
		}
	}
	for _, a := range o.Adapters {
		if c, ok := a.(canceller); ok {
			e.cancellers = append(e.cancellers, c)
		}
	}
	for _, a := range o.Fallbacks {
		if c, ok := a.(canceller); ok {
			e.cancellers = append(e.cancellers, c)
		}
	}
	return e
}

// Has says whether the Engine delivers on channel kind k.
func (e *Engine) Has(k alert.Kind) bool { return e.adapters[k] != nil }

// Queue is the queue a channel kind's workers use: the phone channels have
// their own connections (Deps.Bulk).
func (e *Engine) Queue(k alert.Kind) *priority.Queue {
	if k == alert.KindSMS || k == alert.KindVoice {
		return e.bulk
	}
	return e.q
}

// CheckFence stops retries of an alert's original once it is retracted.
func (e *Engine) CheckFence(ctx context.Context, d alert.Delivery) error {
	if d.Message != alert.MessageAlert {
		return nil
	}
	fenced, err := e.Queue(d.Target.Kind).Fenced(ctx, d.Alert.ID)
	if err != nil {
		return err
	}
	if fenced {
		return adapters.ErrFenced
	}
	return nil
}

// Run claims and delivers jobs for every channel kind that has an adapter,
// and runs each of loops (in its own goroutine, until ctx ends), until ctx
// ends. Then it stops claiming, lets running jobs finish for up to grace,
// and hands the rest back to the queue. It returns when every worker
// goroutine has exited.
func (e *Engine) Run(ctx context.Context, grace time.Duration, loops ...func(ctx context.Context)) {
	hard, stop := context.WithCancelCause(context.WithoutCancel(ctx))
	defer stop(nil)
	logsDone := make(chan struct{})
	go func() { e.logs.run(hard); close(logsDone) }() // exits when hard is cancelled, after a last summary
	defer func() { stop(nil); <-logsDone }()
	fences := e.q.Fences(hard)
	go func() { // exits when hard is cancelled and Fences closes its channel
		for id := range fences {
			e.cutShort(id)
		}
	}()
	var jobs sync.WaitGroup
	var running sync.WaitGroup
	for _, loop := range loops {
		running.Add(1)
		go func() { // exits when ctx ends
			defer running.Done()
			loop(ctx)
		}()
	}
	for kind, a := range e.adapters {
		running.Add(1)
		go func() { // exits when ctx ends
			defer running.Done()
			e.claimLoop(ctx, hard, kind, a, &jobs)
		}()
	}
	running.Wait()
	done := make(chan struct{})
	go func() { jobs.Wait(); close(done) }() // exits when every job has
	select {
	case <-done:
	case <-time.After(grace):
		e.log.Warn().Dur("grace", grace).Msg("Jobs still running at shutdown; handing them back")
		stop(errShutdown)
		<-done
	}
}

// logWindow is how long failures of one kind are summed up in one line.
const logWindow = 10 * time.Second

// Every runs f every d until ctx ends or stop is called; stop returns once
// f's last run has. The gateway's own periodic work (resuming plans,
// settling drafts) uses it too.
func Every(ctx context.Context, d time.Duration, f func(context.Context)) (stop func()) {
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
func (e *Engine) claimLoop(ctx, hard context.Context, kind alert.Kind, a adapters.Adapter, jobs *sync.WaitGroup) {
	log := e.log.With().Str("kind", string(kind)).Logger()
	q := e.Queue(kind)
	var mu sync.Mutex
	running := [2]int{} // ordinary, urgent
	limit := [2]int{e.workers, e.urgentWorkers}
	freed := make(chan struct{}, 1)
	wake, want := e.waker(ctx, q, kind)
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
			e.runJob(hard, j, a, log)
		}()
	}
}

// waker turns the lane's wake list into a channel: once the claim loop
// says it is idle (want), it waits on the list and signals when work may
// have arrived, or after half a lease (at least 1s, Redis' BLPOP granularity
// in go-redis), so expired leases and handed-back jobs are claimed again. It
// takes a wake token only while this instance has nothing to do, so a busy
// instance never takes one an idle instance needs. It exits when ctx ends.
func (e *Engine) waker(ctx context.Context, q *priority.Queue, kind alert.Kind) (wake <-chan struct{}, want chan<- struct{}) {
	ch, wants := make(chan struct{}, 1), make(chan struct{}, 1)
	go func() { // exits when ctx ends
		for {
			select {
			case <-wants:
			case <-ctx.Done():
				return
			}
			if err := q.Wait(ctx, kind, max(time.Second, e.q.Lease()/2)); err != nil && ctx.Err() == nil {
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
func (e *Engine) runJob(hard context.Context, j *priority.Job, a adapters.Adapter, log zerolog.Logger) {
	log = log.With().Str("alert_id", string(j.AlertID)).Str("job", j.ID).Logger()
	ctx, cancel := context.WithCancelCause(hard)
	defer cancel(nil)
	msg := j.Message()
	if msg == alert.MessageAlert {
		untrack := e.track(j.AlertID, cancel)
		defer untrack()
	}
	al, reason, err := e.Queue(j.Kind).Alert(ctx, j.AlertID)
	if err != nil {
		lvl := zerolog.ErrorLevel
		if ctx.Err() != nil {
			lvl = zerolog.DebugLevel // shutting down
		}
		log.WithLevel(lvl).Err(err).Msg("Cannot read the job's alert; handing the job back")
		e.release(j, log)
		return
	}

	stopBeat := e.heartbeat(ctx, j, log)
	defer stopBeat()

	outcomes := make(map[string]alert.State, len(j.Targets))
	var later time.Duration // the soonest a deferred target may be tried again; 0: none deferred
	prog := e.startProgress(ctx, j, log)
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
			st := e.outcome(ctx, dctx, j, err, attempts())
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
				if e.metrics.Latency != nil {
					e.metrics.Latency(j.Kind, msg, time.Since(since))
				}
			case alert.StateFailed:
				if !errors.Is(err, adapters.ErrFenced) && context.Cause(ctx) != errFenced &&
					e.logs.allow(string(t.Kind)+"/"+failureKind(err)+"/failed", "Delivery failed") {
					log.Warn().Str("target", t.Key()).Str("message", string(msg)).Err(err).Msg("Delivery failed")
				}
			}
			if e.metrics.Delivered != nil {
				e.metrics.Delivered(j.Kind, msg, st)
			}
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
		backoff := min(e.retryInitial<<min(j.Retries, 20), e.retryMax)
		retryAt = time.Now().Add(max(later, backoff))
	}
	// Finish must land: retry until it does or shutdown forces a hand-back (the
	// lease then expires and another instance redoes the job).
	for attempt := 0; ; attempt++ {
		err := e.Queue(j.Kind).Finish(context.WithoutCancel(ctx), j, outcomes, retryAt)
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
func (e *Engine) outcome(ctx, dctx context.Context, j *priority.Job, err error, attempts int) alert.State {
	var de *adapters.DeferError
	switch {
	case err == nil && e.pending[j.Kind]:
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

func (e *Engine) startProgress(ctx context.Context, j *priority.Job, log zerolog.Logger) *progress {
	p := &progress{fresh: map[string]alert.State{}}
	p.close = Every(ctx, progressEvery, func(ctx context.Context) {
		p.mu.Lock()
		batch := p.fresh
		p.fresh = map[string]alert.State{}
		p.mu.Unlock()
		if len(batch) == 0 {
			return
		}
		if err := e.Queue(j.Kind).Progress(ctx, j, batch); err != nil {
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

func (e *Engine) release(j *priority.Job, log zerolog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := e.Queue(j.Kind).Release(ctx, j); err != nil {
		log.Warn().Err(err).Msg("Cannot hand the job back; its lease will expire")
	}
}

// heartbeat extends the job's lease every third of a lease until stopped.
func (e *Engine) heartbeat(ctx context.Context, j *priority.Job, log zerolog.Logger) (stop func()) {
	return Every(ctx, e.q.Lease()/3, func(ctx context.Context) {
		if ok, err := e.Queue(j.Kind).Extend(ctx, j); err == nil && !ok {
			log.Warn().Msg("Lease lost; another instance may redo this job")
		}
	})
}

// track registers a running original job so a retraction can cut it short.
func (e *Engine) track(id alert.ID, cancel context.CancelCauseFunc) (untrack func()) {
	key := new(int)
	e.fenceMu.Lock()
	if e.inFence[id] == nil {
		e.inFence[id] = map[*int]context.CancelCauseFunc{}
	}
	e.inFence[id][key] = cancel
	e.fenceMu.Unlock()
	return func() {
		e.fenceMu.Lock()
		delete(e.inFence[id], key)
		if len(e.inFence[id]) == 0 {
			delete(e.inFence, id)
		}
		e.fenceMu.Unlock()
	}
}

// cutShort cancels the running original jobs of a just-retracted alert: their
// attempts end now, so the targets' retractions can follow at once.
func (e *Engine) cutShort(id alert.ID) {
	e.fenceMu.Lock()
	defer e.fenceMu.Unlock()
	for _, cancel := range e.inFence[id] {
		cancel(errFenced)
	}
	for _, c := range e.cancellers {
		go c.CancelAlert(id) // exits after its provider calls
	}
}
