package gateway

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/priority"
	"github.com/tocsin-alert/tocsin/release"
)

// Trigger is what a building system publishes on tocsin/v1/trigger/{source}.
type Trigger struct {
	// Trigger names the template ("amok-button"), or is "reset" for the
	// panel's reset of the event ResetOf.
	Trigger string `json:"trigger"`
	Zone    string `json:"zone"`
	// EventID is unique per message; a second message with it is a replay.
	EventID string `json:"event_id"`
	// Timestamp is RFC 3339 and must be within triggers.window of now.
	Timestamp string `json:"timestamp"`
	ResetOf   string `json:"reset_of,omitempty"`
	// HMAC is hex HMAC-SHA256, with the source's own key, over TriggerMessage.
	HMAC string `json:"hmac"`
}

// TriggerMessage is what a trigger's HMAC covers: trigger, zone, event_id,
// timestamp and reset_of, each followed by a newline.
func TriggerMessage(t Trigger) string {
	return t.Trigger + "\n" + t.Zone + "\n" + t.EventID + "\n" + t.Timestamp + "\n" + t.ResetOf + "\n"
}

// TriggerMAC is the hex HMAC a source with key puts on t.
func TriggerMAC(key []byte, t Trigger) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(TriggerMessage(t)))
	return hex.EncodeToString(m.Sum(nil))
}

// TriggerAck is the answer on tocsin/v1/trigger/{source}/ack.
type TriggerAck struct {
	EventID string `json:"event_id"`
	// Status: accepted (a new alert), duplicate (another trigger of the same
	// event made it; this one corroborates it), reset (its alert retracted),
	// lowered (reset, but other sources still hold the alert raised),
	// quarantined (source in maintenance), rejected.
	Status  string   `json:"status"`
	Reason  string   `json:"reason,omitempty"`
	AlertID alert.ID `json:"alert_id,omitempty"`
	// Dedup says why a trigger joined an alert, or why it did not join the
	// earlier one of its event (retracted, expired, escalated).
	Dedup *dedupView `json:"dedup,omitempty"`
}

// maxTrigger caps a trigger payload.
const maxTrigger = 4096

// HandleTrigger decides one trigger from source: authenticated by the
// source's HMAC, fresh (timestamp window, event id never seen), inside the
// source's zones and triggers, and not quarantined by maintenance; then its
// template becomes an alert through the same validation, dedup and queue as
// the HTTP API. Triggers of the same event from any allowed source within the
// dedup window make one alert, each source recorded on it. Every decision is
// audited.
func (g *Gateway) HandleTrigger(ctx context.Context, source string, payload []byte) TriggerAck {
	ack, tr := g.decideTrigger(ctx, source, payload)
	e := priority.AuditEntry{At: time.Now().UTC(), Source: source, EventID: ack.EventID, Trigger: tr.Trigger, Zone: tr.Zone,
		Status: ack.Status, Reason: ack.Reason, AlertID: ack.AlertID}
	if err := g.q.Audit(ctx, e); err != nil {
		g.log.Error().Err(err).Msg("Trigger decision not audited")
	}
	ev := g.log.Info()
	if ack.Status == "rejected" || ack.Status == "quarantined" {
		ev = g.log.Warn()
	}
	ev.Str("source", source).Str("event_id", ack.EventID).Str("trigger", tr.Trigger).Str("zone", tr.Zone).
		Str("status", ack.Status).Str("reason", ack.Reason).Str("alert_id", string(ack.AlertID)).Msg("Trigger")
	return ack
}

func (g *Gateway) decideTrigger(ctx context.Context, source string, payload []byte) (TriggerAck, Trigger) {
	var t Trigger
	reject := func(format string, args ...any) (TriggerAck, Trigger) {
		return TriggerAck{EventID: t.EventID, Status: "rejected", Reason: fmt.Sprintf(format, args...)}, t
	}
	if len(payload) > maxTrigger {
		return reject("payload over %d bytes", maxTrigger)
	}
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&t); err != nil {
		return reject("malformed trigger: %v", err)
	}
	src := g.cfg.Triggers.Source(source)
	if src == nil {
		return reject("unknown source %q", source)
	}
	switch {
	case t.EventID == "" || len(t.EventID) > 128:
		return reject("event_id: required, at most 128 characters")
	case t.Trigger == "":
		return reject("trigger: required")
	case t.Zone == "" && t.Trigger != "reset":
		return reject("zone: required")
	}
	mac, err := hex.DecodeString(t.HMAC)
	if err != nil || !hmac.Equal(mac, mustHex(TriggerMAC(src.Key(), t))) {
		return reject("hmac does not match: not signed with this source's key")
	}
	ts, err := time.Parse(time.RFC3339Nano, t.Timestamp)
	window := g.cfg.Triggers.Window
	if err != nil {
		return reject("timestamp: want RFC 3339")
	}
	if d := time.Since(ts); d > window || d < -window {
		return reject("timestamp %s is outside the ±%v window (replayed or clock wrong)", t.Timestamp, window)
	}
	// A trigger's event id is spent in the step that stores its decision
	// (the enqueue, the reset, the quarantine): a call that failed spends
	// nothing, so the source's retry is heard; a replay changes nothing.
	keep := max(2*window, g.cfg.Triggers.ResetWindow+window)
	if t.Trigger == "reset" {
		return g.resetTrigger(ctx, src, t, keep)
	}
	if !slices.Contains(src.Zones, t.Zone) {
		return reject("zone %q is outside the source's zones", t.Zone)
	}
	if len(src.Triggers) > 0 && !slices.Contains(src.Triggers, t.Trigger) {
		return reject("trigger %q is not allowed for this source", t.Trigger)
	}
	tp := g.cfg.Triggers.Template(t.Trigger)
	if tp == nil {
		return reject("no template for trigger %q", t.Trigger)
	}
	if m, err := g.q.MaintenanceOf(ctx, source); err != nil {
		return reject("cannot check maintenance right now: %v", err)
	} else if m != nil {
		fresh, err := g.q.SeenEvent(ctx, "trigger/"+t.Trigger, source, t.EventID, keep)
		if err != nil {
			return reject("cannot check for replays right now: %v", err) // the source retries
		}
		if !fresh {
			return reject("replay: event_id %s was already seen", t.EventID)
		}
		return TriggerAck{EventID: t.EventID, Status: "quarantined",
			Reason: fmt.Sprintf("source in maintenance until %s (%s, by %s): recorded, nothing sounded", m.Until.UTC().Format(time.RFC3339), m.Reason, m.By)}, t
	}
	p := sourcePrincipal(src)
	a, err := g.validate(&alertRequest{Status: tp.Status, Source: "trigger/" + t.Trigger, Event: tp.Event,
		Severity: tp.Severity, Urgency: tp.Urgency, Headline: tp.Headline, Description: tp.Description,
		Instruction: tp.Instruction, Zones: []string{t.Zone}, Channels: tp.Channels}, p, time.Now())
	if err != nil {
		return reject("template %q: %v", t.Trigger, err)
	}
	targets, _, err := g.plan(a)
	if err != nil {
		var prob *Problem
		if errors.As(err, &prob) {
			return reject("template %q in zone %q: %s", t.Trigger, t.Zone, prob.Detail)
		}
		return reject("template %q in zone %q: %v", t.Trigger, t.Zone, err)
	}
	if pol := g.cfg.Release.SourcePolicy(src.ID); pol != config.PolicyAuto && g.drafts != nil {
		// Held for people: nothing is queued. The draft's id comes from the
		// source and event id, so a resend finds it instead of holding twice.
		d, err := g.hold(ctx, a, p, pol, triggerDraftID(ts, src.ID, t.EventID))
		if errors.Is(err, release.ErrConflict) {
			return reject("replay: event_id %s was already seen", t.EventID)
		}
		if err != nil {
			return reject("cannot hold the alert right now: %v", err)
		}
		return TriggerAck{EventID: t.EventID, Status: "held", AlertID: d.ID, Reason: fmt.Sprintf("release policy %s: waits in /v1/drafts/%s, nothing sounded", pol, d.ID)}, t
	}
	res, err := g.q.Enqueue(ctx, priority.Plan{Alert: a, Fingerprint: priority.Fingerprint(a), Targets: targets,
		Trigger: &priority.TriggerEvent{Source: src.ID, Event: t.EventID, TTL: keep}})
	if errors.Is(err, priority.ErrReplay) {
		return reject("replay: event_id %s was already seen", t.EventID)
	}
	if err != nil {
		return reject("the queue cannot store the alert right now: %v", err) // QoS 1: the source resends
	}
	ack := TriggerAck{EventID: t.EventID, Status: "accepted", AlertID: res.ID, Dedup: dedupOf(res)}
	if res.Duplicate {
		ack.Status = "duplicate"
		g.m.duplicates.Inc()
	} else {
		g.m.accepted.Inc()
	}
	if err := g.q.Corroborate(ctx, res.ID, src.ID); err != nil {
		g.log.Warn().Err(err).Msg("Corroborating source not recorded")
	}
	return ack, t
}

// triggerDraftID is the id of the draft a trigger becomes when it waits for
// people (held by policy, or released from quarantine): made from its source
// and event id, so the same trigger never becomes two drafts.
func triggerDraftID(at time.Time, source, event string) alert.ID {
	sum := sha256.Sum256([]byte(source + "\x00" + event))
	return alert.ID(fmt.Sprintf("%011x-%s", at.UnixMilli(), strings.ToLower(base32.StdEncoding.EncodeToString(sum[:5]))))
}

// resetTrigger is a panel's reset of one of its events: the source no longer
// holds that event's alert raised. The alert is retracted (as a false alarm)
// only when no other source still holds it raised, and only within
// triggers.reset_window of the alert; later, an operator retracts.
func (g *Gateway) resetTrigger(ctx context.Context, src *config.TriggerSource, t Trigger, keep time.Duration) (TriggerAck, Trigger) {
	rej := func(msg string) (TriggerAck, Trigger) {
		return TriggerAck{EventID: t.EventID, Status: "rejected", Reason: msg}, t
	}
	if t.ResetOf == "" {
		return rej("reset_of: required, the event_id of the trigger being reset")
	}
	id, err := g.q.EventAlertOf(ctx, src.ID, t.ResetOf)
	if err != nil {
		return rej("cannot look the event up right now: " + err.Error()) // the panel's retry is heard
	}
	if id == "" {
		return rej("no alert for event " + t.ResetOf + " from this source (unknown, or older than the reset window): an operator retracts it")
	}
	st, err := g.q.Status(ctx, id)
	if err != nil {
		return rej("cannot read the alert: " + err.Error())
	}
	if time.Since(st.Created) > g.cfg.Triggers.ResetWindow {
		return rej(fmt.Sprintf("reset %v after the alert, later than the %v reset window: an operator retracts it", time.Since(st.Created).Round(time.Second), g.cfg.Triggers.ResetWindow))
	}
	still, err := g.q.Lower(ctx, id, src.ID, t.EventID)
	if errors.Is(err, priority.ErrReplay) {
		return rej("replay: event_id " + t.EventID + " was already seen")
	}
	if err != nil {
		return rej("cannot record the reset right now: " + err.Error()) // the source retries
	}
	ack := TriggerAck{EventID: t.EventID, Status: "reset", AlertID: id}
	if still > 0 {
		ack.Status = "lowered"
		ack.Reason = fmt.Sprintf("%d other source(s) still hold the alert raised: it stays until they reset or an operator retracts it", still)
	} else if st.State != "retracted" {
		err := g.retractAlert(ctx, id, "false_alarm", "reset at the panel of "+src.ID, sourcePrincipal(src))
		var p *Problem
		if err != nil && !(errors.As(err, &p) && p.Status == http.StatusConflict) { // retracted meanwhile is fine
			return rej("not retracted: " + err.Error()) // the event id is not spent: the panel's retry is heard
		}
	}
	if _, err := g.q.SeenReset(ctx, id, src.ID, t.EventID, keep); err != nil {
		g.log.Warn().Err(err).Str("source", src.ID).Msg("Reset carried out, but its event id not recorded: a replay would repeat it (harmlessly)")
	}
	return ack, t
}

// signed reports whether a trigger payload carries a valid HMAC with the
// source's key (the first check decideTrigger makes, cheap enough to run
// for every message before its rate limit is charged).
func (g *Gateway) signed(source string, payload []byte) bool {
	src := g.cfg.Triggers.Source(source)
	if src == nil || len(payload) > maxTrigger {
		return false
	}
	var t Trigger
	if json.Unmarshal(payload, &t) != nil {
		return false
	}
	mac, err := hex.DecodeString(t.HMAC)
	return err == nil && hmac.Equal(mac, mustHex(TriggerMAC(src.Key(), t)))
}

func mustHex(s string) []byte {
	b, _ := hex.DecodeString(s)
	return b
}

// sourcePrincipal is the principal a trigger source acts as: its zones,
// every channel its templates name, and retraction of its own alerts.
func sourcePrincipal(src *config.TriggerSource) *config.Principal {
	return &config.Principal{ID: "source:" + src.ID, Kind: "building", Scopes: config.Scopes{Zones: src.Zones, Retract: true}}
}

// secondPerson refuses a person changing the maintenance they started
// themselves (extending it, or ending it early): that takes a second
// person. API keys, which are no person, are not held to it.
func (g *Gateway) secondPerson(ctx context.Context, p *config.Principal, source, what string) error {
	if p.Operator() == nil {
		return nil
	}
	m, err := g.q.MaintenanceOf(ctx, source)
	if err != nil {
		return unavailable(err.Error())
	}
	if m != nil && m.By == p.ID {
		return forbidden("four_eyes", fmt.Sprintf("%s started this maintenance: %s it needs a second person", p.ID, what))
	}
	return nil
}

// maintenanceRequest is the body of PUT /v1/sources/{source}/maintenance.
type maintenanceRequest struct {
	Reason string     `json:"reason"`
	Until  *time.Time `json:"until"`
	For    string     `json:"for"` // a Go duration, instead of until
}

func (g *Gateway) canMaintain(p *config.Principal, source string) (*config.TriggerSource, error) {
	if !p.Scopes.Maintenance {
		return nil, forbidden("maintenance", fmt.Sprintf("principal %q may not manage maintenance", p.ID))
	}
	src := g.cfg.Triggers.Source(source)
	if src == nil {
		return nil, notFound(fmt.Sprintf("no trigger source %q", source))
	}
	for _, z := range src.Zones {
		if !p.Scopes.AllowsZone(z) {
			return nil, forbidden("zones", fmt.Sprintf("principal %q may not manage sources in zone %q", p.ID, z))
		}
	}
	return src, nil
}

func (g *Gateway) putMaintenance(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	src, err := g.canMaintain(p, r.PathValue("source"))
	if err != nil {
		return err
	}
	var req maintenanceRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Reason) == "" || len(req.Reason) > 500 {
		return badRequest("reason", "required, at most 500 characters: why the source is in maintenance")
	}
	now := time.Now()
	var until time.Time
	switch {
	case req.Until != nil && req.For != "":
		return badRequest("until", "give until or for, not both")
	case req.Until != nil:
		until = *req.Until
	case req.For != "":
		d, err := time.ParseDuration(req.For)
		if err != nil {
			return badRequest("for", "must be a duration such as 90m or 4h")
		}
		until = now.Add(d)
	default:
		return badRequest("until", "required: when maintenance ends (or for: a duration)")
	}
	if !until.After(now) || until.After(now.Add(30*24*time.Hour)) {
		return badRequest("until", "must be in the future and within 30 days")
	}
	if err := g.secondPerson(r.Context(), p, src.ID, "extending"); err != nil {
		return err
	}
	m := priority.Maintenance{Source: src.ID, Reason: req.Reason, By: p.ID, Since: now.UTC(), Until: until.UTC()}
	if err := g.q.SetMaintenance(r.Context(), m); err != nil {
		return unavailable(err.Error())
	}
	g.log.Warn().Str("source", src.ID).Str("by", p.ID).Str("reason", req.Reason).Time("until", m.Until).Msg("Trigger source in maintenance: its triggers are quarantined")
	writeJSON(w, http.StatusOK, m)
	return nil
}

func (g *Gateway) deleteMaintenance(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	src, err := g.canMaintain(p, r.PathValue("source"))
	if err != nil {
		return err
	}
	// A person ends maintenance only with a fresh second factor: the
	// source's triggers sound again from here on.
	if p.Operator() != nil && !sessionOf(r.Context()).Fresh(time.Now(), g.cfg.Sessions.StepUp) {
		return refusal(release.ErrStepUp)
	}
	if err := g.secondPerson(r.Context(), p, src.ID, "ending early"); err != nil {
		return err
	}
	ended, err := g.q.EndMaintenance(r.Context(), src.ID)
	if err != nil {
		return unavailable(err.Error())
	}
	if !ended {
		return notFound(fmt.Sprintf("source %q is not in maintenance", src.ID))
	}
	g.log.Warn().Str("source", src.ID).Str("by", p.ID).Msg("Trigger source maintenance ended early")
	w.WriteHeader(http.StatusNoContent)
	return nil
}

// sourceView is one trigger source in GET /v1/sources.
type sourceView struct {
	ID          string                `json:"id"`
	Zones       []string              `json:"zones"`
	Maintenance *priority.Maintenance `json:"maintenance,omitempty"`
}

func (g *Gateway) listSources(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	out := []sourceView{}
	for _, s := range g.cfg.Triggers.Sources {
		if readable(p, &alert.Alert{Zones: s.Zones}) != nil {
			continue
		}
		m, err := g.q.MaintenanceOf(r.Context(), s.ID)
		if err != nil {
			return unavailable(err.Error())
		}
		out = append(out, sourceView{ID: s.ID, Zones: s.Zones, Maintenance: m})
	}
	writeJSON(w, http.StatusOK, map[string]any{"sources": out})
	return nil
}

// listTriggers is the trigger audit: GET /v1/triggers?status=quarantined&limit=50.
func (g *Gateway) listTriggers(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if !p.Scopes.Maintenance && !p.Scopes.Retract {
		return forbidden("maintenance", fmt.Sprintf("principal %q may not read the trigger audit", p.ID))
	}
	status := r.URL.Query().Get("status")
	switch status {
	case "", "accepted", "duplicate", "rejected", "quarantined", "reset", "lowered", "refused":
	default:
		return badRequest("status", fmt.Sprintf("%q is not accepted, duplicate, rejected, quarantined, reset, lowered or refused", status))
	}
	log, err := g.q.AuditLog(r.Context(), 1000, status == "rejected")
	if err != nil {
		return unavailable(err.Error())
	}
	if status == "" {
		rej, err := g.q.AuditLog(r.Context(), 1000, true)
		if err != nil {
			return unavailable(err.Error())
		}
		log = append(log, rej...)
		slices.SortStableFunc(log, func(a, b priority.AuditEntry) int { return b.At.Compare(a.At) })
	}
	out := []priority.AuditEntry{}
	for _, e := range log {
		if (status == "" || e.Status == status) && (e.Zone == "" || p.Scopes.AllowsZone(e.Zone)) && len(out) < 200 {
			out = append(out, e)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"triggers": g.handledOf(r.Context(), out)})
	return nil
}

// triggerPool decides MQTT triggers on a bounded set of goroutines. Each
// source is rate-limited (triggers.rate, triggers.burst); what a flood or a
// full queue drops is not dropped silently: it is counted and audited once a
// second per source as a rejection (a list of its own, so real decisions stay
// in the audit).
type triggerPool struct {
	in      chan triggerMsg
	rate    rate.Limit
	burst   int
	known   func(source string) bool
	verify  func(source string, payload []byte) bool // set by start
	mu      sync.Mutex
	limits  map[string]*rate.Limiter
	dropped map[string]int
	stop    chan struct{}
	done    sync.WaitGroup
}

type triggerMsg struct {
	source  string
	payload []byte
}

// triggerWorkers decide triggers at once; triggerQueue more may wait.
const (
	triggerWorkers = 8
	triggerQueue   = 256
)

func newTriggerPool(cfg *config.Triggers) *triggerPool {
	return &triggerPool{
		in: make(chan triggerMsg, triggerQueue), rate: rate.Limit(cfg.Rate), burst: cfg.Burst,
		known:  func(s string) bool { return cfg.Source(s) != nil },
		limits: map[string]*rate.Limiter{}, dropped: map[string]int{}, stop: make(chan struct{}),
	}
}

// offer takes one trigger from the broker's goroutine without blocking it.
// Forged triggers (a wrong HMAC) are limited apart from the source's own,
// so a flood of forgeries on a panel's topic never uses up the panel's rate.
func (p *triggerPool) offer(source string, payload []byte) {
	key := source
	if !p.known(source) {
		key = "(unknown sources)" // one limiter for every name an attacker makes up
	}
	p.mu.Lock()
	verify := p.verify
	p.mu.Unlock()
	if verify != nil && !verify(source, payload) {
		key += " (not signed with its key)"
	}
	p.mu.Lock()
	l := p.limits[key]
	if l == nil {
		l = rate.NewLimiter(p.rate, p.burst)
		p.limits[key] = l
	}
	ok := l.Allow()
	if ok {
		select {
		case p.in <- triggerMsg{source, payload}:
		default:
			ok = false
		}
	}
	if !ok {
		p.dropped[key]++
	}
	p.mu.Unlock()
}

// start runs the workers and the once-a-second audit of dropped triggers
// until close. decide answers one trigger; audit records a drop summary.
func (p *triggerPool) start(verify func(source string, payload []byte) bool, decide func(source string, payload []byte), audit func(source string, n int)) {
	p.mu.Lock()
	p.verify = verify
	p.mu.Unlock()
	for range triggerWorkers {
		p.done.Add(1)
		go func() { // exits when close is called
			defer p.done.Done()
			for {
				select {
				case m := <-p.in:
					decide(m.source, m.payload)
				case <-p.stop:
					return
				}
			}
		}()
	}
	p.done.Add(1)
	go func() { // exits when close is called
		defer p.done.Done()
		t := time.NewTicker(time.Second)
		defer t.Stop()
		for {
			select {
			case <-t.C:
			case <-p.stop:
				return
			}
			p.mu.Lock()
			dropped := p.dropped
			p.dropped = map[string]int{}
			p.mu.Unlock()
			for src, n := range dropped {
				audit(src, n)
			}
		}
	}()
}

func (p *triggerPool) close() {
	close(p.stop)
	p.done.Wait()
}

// auditDropped records triggers a source's rate limit or the full queue
// turned away in the last second.
func (g *Gateway) auditDropped(source string, n int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	reason := fmt.Sprintf("%d trigger(s) dropped in the last second: over the source's rate limit (%g/s, burst %d) or the decision queue full", n, g.cfg.Triggers.Rate, g.cfg.Triggers.Burst)
	if err := g.q.Audit(ctx, priority.AuditEntry{At: time.Now().UTC(), Source: source, Status: "rejected", Reason: reason}); err != nil {
		g.log.Error().Err(err).Msg("Dropped triggers not audited")
	}
	g.log.Warn().Str("source", source).Int("dropped", n).Msg("Triggers dropped: rate limit or full queue")
}
