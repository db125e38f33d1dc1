// Package gateway is Tocsin's front door: the HTTP API, CAP input, triggers,
// authentication and authorisation, and retraction. It routes alerts with
// package routing and runs package delivery's workers, which claim jobs from
// the queue and hand them to the adapters. No other package imports it;
// cmd/tocsin wires it.
package gateway

import (
	"context"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/delivery"
	"github.com/tocsin-alert/tocsin/operator"
	"github.com/tocsin-alert/tocsin/priority"
	"github.com/tocsin-alert/tocsin/release"
	"github.com/tocsin-alert/tocsin/routing"
)

// Gateway is one Tocsin instance. Any number of them may share one Redis.
type Gateway struct {
	cfg      *config.Config
	q        *priority.Queue
	log      zerolog.Logger
	m        *metrics
	delivery *delivery.Engine
	zones    map[string]bool
	router   *routing.Router

	draining atomic.Bool
	// Ready, if set, adds a readiness check (the MQTT connection, say).
	Ready func(ctx context.Context) error

	closers []func()

	twilioTokens map[string]string // account SID -> auth token
	dispatchKeys map[string][]byte // centre -> HMAC key
	shapes       []zoneShape       // zones as CAP areas match them

	limitMu sync.Mutex
	limits  map[string]*rate.Limiter // alerts per principal (limit)

	// ops keeps operators' credentials and sessions, drafts the alerts
	// waiting for people; both nil without Options.Redis.
	ops    *operator.Store
	drafts *release.Store
	rdb    redis.UniversalClient
	// wa is the WebAuthn relying party, made on first use (webAuthn).
	waOnce sync.Once
	wa     *operator.WebAuthn
	waErr  error
	// keeper archives the audit and signs checkpoints (config audit.dir).
	keeper *audit.Keeper
	probes []Probe
}

// Options are a Gateway's collaborators.
type Options struct {
	Config *config.Config
	// Router routes alerts and finds phone targets' people; nil:
	// routing.New(Config).
	Router *routing.Router
	Queue  *priority.Queue
	// BulkQueue is the queue the phone channels (SMS, voice) work through: the
	// same Redis over its own connections, so a fan-out to a million people
	// never makes a siren, a trigger or an operator wait for a connection.
	// Nil: Queue.
	BulkQueue *priority.Queue
	Log       zerolog.Logger
	// Adapters are the undecorated adapters per channel kind; New wraps each
	// in the shared decorators: retry, breaker, pacing, and the fence check
	// right before every attempt.
	Adapters map[alert.Kind]adapters.Adapter
	// Fallbacks are second routes per channel kind (another Twilio account),
	// used while the primary's breaker is open.
	Fallbacks map[alert.Kind]adapters.Adapter
	// TwilioTokens maps account SIDs to auth tokens, for checking callbacks.
	TwilioTokens map[string]string
	// DispatchKeys are the dispatch centres' HMAC keys, for checking CAP Acks.
	DispatchKeys map[string][]byte
	// Retry tunes the retry decorator.
	Retry adapters.RetryOptions
	// Breaker tunes the breakers; its OnStateChange is set by New.
	Breaker adapters.BreakerOptions
	// Redis, if set, keeps operators' sessions and drafts (the queue's
	// Redis, under the same key prefix).
	Redis redis.UniversalClient
	// Probes are the synthetic checks run on their schedules (they need Redis).
	Probes []Probe
}

// New builds a Gateway.
func New(o Options) *Gateway {
	g := &Gateway{
		cfg: o.Config, q: o.Queue, log: o.Log,
		zones: map[string]bool{}, router: o.Router,
		limits: map[string]*rate.Limiter{},
	}
	if g.router == nil {
		g.router = routing.New(o.Config)
	}
	g.m = newMetrics(o.Queue)
	if o.Redis != nil {
		cfg := o.Config
		g.rdb = o.Redis
		g.drafts = release.NewStore(o.Redis, cfg.Redis.KeyPrefix)
		g.ops = operator.New(o.Redis, cfg.Redis.KeyPrefix, operator.Options{
			IdleTimeout: cfg.Sessions.Idle, AbsoluteTimeout: cfg.Sessions.Absolute, StepUpWindow: cfg.Sessions.StepUp,
			LockoutFailures: cfg.Sessions.LockoutAfter, LockoutFor: cfg.Sessions.LockoutFor, InviteTTL: cfg.Sessions.InviteTTL,
			Known: func(id string) (string, bool) {
				if op := cfg.Operator(id); op != nil {
					return op.Name, true
				}
				return "", false
			},
		})
	}
	for _, z := range o.Config.Zones {
		g.zones[z.ID] = true
	}
	bo := o.Breaker
	bo.OnStateChange = g.m.breakerChanged
	g.delivery = delivery.New(delivery.Deps{
		Queue: o.Queue, Bulk: o.BulkQueue, Adapters: o.Adapters, Fallbacks: o.Fallbacks, Retry: o.Retry, Breaker: bo,
		Workers: o.Config.Queue.Workers, UrgentWorkers: o.Config.Queue.UrgentWorkers,
		RetryInitial: o.Config.Delivery.RetryInitial, RetryMax: o.Config.Delivery.RetryMax,
		Log: o.Log, Metrics: delivery.Metrics{
			Latency: func(k alert.Kind, msg alert.Message, d time.Duration) {
				g.m.latency.WithLabelValues(string(k), string(msg)).Observe(d.Seconds())
			},
			Delivered: func(k alert.Kind, msg alert.Message, st alert.State) {
				g.m.deliveries.WithLabelValues(string(k), string(msg), string(st)).Inc()
			},
		},
	})
	g.twilioTokens = o.TwilioTokens
	g.probes = o.Probes
	g.m.reg.MustRegister(probeCollector{g})
	g.shapes = zoneShapes(o.Config.Zones)
	g.dispatchKeys = o.DispatchKeys
	return g
}

// Recipient finds a phone target's person (adapters look numbers up here, at
// the last moment, so ledgers and logs only carry "group.person").
func (g *Gateway) Recipient(targetID string) (adapters.Recipient, bool) {
	return g.router.Recipient(targetID)
}

// queueFor is the queue a channel kind's workers use: the phone channels
// have their own connections (Options.BulkQueue).
func (g *Gateway) queueFor(k alert.Kind) *priority.Queue { return g.delivery.Queue(k) }

// newID returns a new alert id: a millisecond timestamp and 40 random bits,
// sortable by time and safe in URLs and Redis keys.
func newID(now time.Time) alert.ID {
	var b [5]byte
	rand.Read(b[:])
	return alert.ID(fmt.Sprintf("%011x-%s", now.UnixMilli(), strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))))
}

// route turns an alert into its targets (routing.Router.Route).
func (g *Gateway) route(a *alert.Alert) []alert.Target { return g.router.Route(a) }

// plan routes an alert that is to go out: its targets and the channels the
// channel policy withheld, or, when nothing is left to reach, a 400 that
// says why (no target in its zones, none that takes drills, or the policy).
func (g *Gateway) plan(a *alert.Alert) ([]alert.Target, []routing.Withheld, error) {
	targets, withheld := g.router.Plan(a)
	if len(targets) > 0 {
		return targets, withheld, nil
	}
	if len(withheld) > 0 {
		why := make([]string, len(withheld))
		for i, w := range withheld {
			why[i] = w.Reason
		}
		return nil, withheld, badRequest("severity", "nothing may be reached: "+strings.Join(why, "; "))
	}
	what := "no target"
	if a.Status.IsDrill() {
		what = "no target that takes drills"
	}
	return nil, nil, badRequest("zones", fmt.Sprintf("%s in zones %s for channels %v", what, strings.Join(a.Zones, ", "), channelsOrAll(a.Channels)))
}

// Kinds are the channel kinds this gateway can deliver on.
func (g *Gateway) Kinds() []alert.Kind {
	var ks []alert.Kind
	for _, k := range alert.Kinds {
		if g.delivery.Has(k) {
			ks = append(ks, k)
		}
	}
	return ks
}

// endpoint is one route of the HTTP API with how it is authorised.
type endpoint struct {
	pattern string
	// auth is "principal" (an API key or an operator session, checked by
	// handle before the handler runs) or, for the few routes that cannot
	// carry one, what they are checked with instead.
	auth string
	h    http.HandlerFunc
}

// Authorisation of the routes that take no API key or session.
const (
	authPrincipal = "principal"
	authHMAC      = "signature of the provider or centre (checked by the handler)"
	authPublic    = "public: says nothing about alerts or people"
	authSignIn    = "credentials in the body (sign-in, enrolment token)"
	authMetrics   = "metrics token when configured"
)

// endpoints are every route of the HTTP API; Handler serves them and a test
// checks each one's authorisation.
func (g *Gateway) endpoints() []endpoint {
	p := func(pattern string, h handlerFunc) endpoint { return endpoint{pattern, authPrincipal, g.handle(h)} }
	// Operators' routes need the stores (a gateway built without Redis, in
	// some tests, has none).
	op := func(pattern string, h handlerFunc) endpoint {
		return p(pattern, func(w http.ResponseWriter, r *http.Request, pr *config.Principal) error {
			if g.drafts == nil {
				return notFound("this gateway keeps no operators or drafts")
			}
			return h(w, r, pr)
		})
	}
	return []endpoint{
		p("POST /v1/alerts", g.postAlert),
		p("GET /v1/alerts", g.listAlerts),
		p("GET /v1/alerts/{id}", g.getAlert),
		p("GET /v1/alerts/{id}/deliveries", g.getDeliveries),
		p("POST /v1/alerts/{id}/retract", g.retract),
		{"POST /v1/callbacks/twilio/{delivery}", authHMAC, g.twilioCallback},
		{"POST /v1/callbacks/cap/{centre}", authHMAC, g.capAck},
		{"POST /v1/upstream/{upstream}", authHMAC, g.postUpstream},
		p("GET /v1/sources", g.listSources),
		p("PUT /v1/sources/{source}/maintenance", g.putMaintenance),
		p("DELETE /v1/sources/{source}/maintenance", g.deleteMaintenance),
		p("GET /v1/triggers", g.listTriggers),
		op("POST /v1/triggers/{source}/{event}/release", g.releaseTrigger),
		op("POST /v1/triggers/{source}/{event}/dismiss", g.dismissTrigger),
		{"POST /v1/session", authSignIn, g.postSession},
		op("GET /v1/session", g.getSession),
		op("DELETE /v1/session", g.deleteSession),
		op("POST /v1/session/step-up", g.postStepUp),
		op("POST /v1/session/step-up/options", g.postStepUpOptions),
		{"POST /v1/session/key/options", authSignIn, g.needOps(g.postSignInOptions)},
		{"POST /v1/session/key", authSignIn, g.needOps(g.postSignInKey)},
		op("POST /v1/keys/options", g.postKeyOptions),
		op("POST /v1/keys", g.postKey),
		{"POST /v1/enrol", authSignIn, g.postEnrol},
		op("GET /v1/operators", g.listOperators),
		op("POST /v1/operators/{id}/invite", g.operatorAction("invite")),
		op("POST /v1/operators/{id}/disable", g.operatorAction("disable")),
		op("POST /v1/operators/{id}/enable", g.operatorAction("enable")),
		p("GET /v1/templates", g.listTemplates),
		op("GET /v1/drafts", g.listDrafts),
		op("POST /v1/drafts", g.postDraft),
		op("GET /v1/drafts/{id}", g.getDraft),
		op("GET /v1/drafts/{id}/cap", g.getDraftCAP),
		op("PUT /v1/drafts/{id}", g.putDraft),
		op("POST /v1/drafts/{id}/submit", g.draftAction(release.ActSubmit)),
		op("POST /v1/drafts/{id}/approve", g.draftAction(release.ActApprove)),
		op("POST /v1/drafts/{id}/release", g.draftAction(release.ActRelease)),
		op("POST /v1/drafts/{id}/return", g.draftAction(release.ActReturn)),
		op("POST /v1/drafts/{id}/reject", g.draftAction(release.ActReject)),
		op("GET /v1/audit", g.getAudit),
		op("GET /v1/audit/verify", g.getAuditVerify),
		p("GET /v1/health/channels", g.getChannelHealth),
		{"GET /healthz", authPublic, func(w http.ResponseWriter, r *http.Request) { writeJSON(w, 200, map[string]string{"status": "ok"}) }},
		{"GET /readyz", authPublic, g.readyz},
		{"GET /metrics", authMetrics, g.metricsHandler().ServeHTTP},
	}
}

// Handler is the HTTP API.
func (g *Gateway) Handler() http.Handler {
	mux := http.NewServeMux()
	for _, e := range g.endpoints() {
		mux.HandleFunc(e.pattern, e.h)
	}
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeProblem(w, notFound("no such endpoint: "+r.Method+" "+r.URL.Path+" (see README.md)"))
	})
	return mux
}

// Drain makes readiness fail so load balancers stop sending; the workers stop
// claiming when Run's context ends.
func (g *Gateway) Drain() { g.draining.Store(true) }

func (g *Gateway) readyz(w http.ResponseWriter, r *http.Request) {
	if g.draining.Load() {
		writeProblem(w, &Problem{Type: "urn:tocsin:problem:draining", Title: "Shutting down", Status: 503})
		return
	}
	// The answer names the dependency that is down, never its error text
	// (addresses, versions): anyone may ask. The log has the details.
	ctx, cancel := context.WithTimeout(r.Context(), time.Second)
	defer cancel()
	if err := g.q.Ping(ctx); err != nil {
		g.log.Debug().Err(err).Msg("Not ready: Redis does not answer")
		writeProblem(w, &Problem{Type: "urn:tocsin:problem:unavailable", Title: "Not ready", Status: 503, Detail: "redis: not reachable"})
		return
	}
	if g.Ready != nil {
		if err := g.Ready(ctx); err != nil {
			g.log.Debug().Err(err).Msg("Not ready")
			writeProblem(w, &Problem{Type: "urn:tocsin:problem:unavailable", Title: "Not ready", Status: 503, Detail: "mqtt: not connected"})
			return
		}
	}
	writeJSON(w, 200, map[string]string{"status": "ready"})
}
