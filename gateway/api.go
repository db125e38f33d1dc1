package gateway

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"mime"
	"net/http"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/priority"
	"github.com/tocsin-alert/tocsin/routing"
)

// maxBody caps request bodies.
const maxBody = 64 << 10

type handlerFunc func(w http.ResponseWriter, r *http.Request, p *config.Principal) error

// handle authenticates the request and turns a returned error into problem+json.
func (g *Gateway) handle(h handlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var p *config.Principal
		var err error
		if tok := bearer(r); strings.HasPrefix(tok, sessionPrefix) {
			p, r, err = g.authenticateSession(r, tok)
		} else {
			p, err = g.authenticate(r)
		}
		if err == nil {
			r = r.WithContext(audit.WithActor(r.Context(), actorName(p)))
			limit := int64(maxBody)
			if strings.Contains(r.Header.Get("Content-Type"), "xml") { // the handler parses it properly
				limit = cap.MaxSize // CAP documents with many areas run to hundreds of KB
			}
			r.Body = http.MaxBytesReader(w, r.Body, limit)
			err = h(w, r, p)
		}
		if err == nil {
			return
		}
		var prob *Problem
		if !errors.As(err, &prob) {
			g.log.Error().Err(err).Str("path", r.URL.Path).Msg("Request failed")
			prob = &Problem{Type: "urn:tocsin:problem:internal", Title: "Internal error", Status: 500}
		}
		if r.Method == http.MethodPost && strings.HasSuffix(r.URL.Path, "/alerts") {
			g.m.rejected.WithLabelValues(reason(prob)).Inc()
		}
		writeProblem(w, prob)
	}
}

func reason(p *Problem) string {
	if p.Scope != "" {
		return "scope_" + p.Scope
	}
	return strings.TrimPrefix(p.Type, "urn:tocsin:problem:")
}

// metricsHandler serves the Prometheus metrics; with metrics_token_env set,
// only to a scraper that presents the token (the metrics name targets and
// senders), compared in constant time.
func (g *Gateway) metricsHandler() http.Handler {
	h := promhttp.HandlerFor(g.m.reg, promhttp.HandlerOpts{})
	token := g.cfg.MetricsToken()
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte("Bearer " + token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := sha256.Sum256([]byte(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
			writeProblem(w, unauthorized("GET /metrics needs Authorization: Bearer and the token in metrics_token_env"))
			return
		}
		h.ServeHTTP(w, r)
	})
}

// alertRequest is the JSON body of POST /v1/alerts. Names follow CAP.
type alertRequest struct {
	Status      alert.Status `json:"status"`
	MsgType     string       `json:"msgType"`
	Source      string       `json:"source"`
	Event       string       `json:"event"`
	Severity    string       `json:"severity"`
	Urgency     string       `json:"urgency"`
	Certainty   string       `json:"certainty"`
	Headline    string       `json:"headline"`
	Description string       `json:"description"`
	Instruction string       `json:"instruction"`
	Language    string       `json:"language"`
	// Info are the texts in further languages; each recipient gets theirs.
	Info     []alert.Info `json:"info"`
	Zones    []string     `json:"zones"`
	Channels []alert.Kind `json:"channels"`
	Expires  *time.Time   `json:"expires"`
}

// alertResponse answers POST /v1/alerts.
type alertResponse struct {
	ID        alert.ID       `json:"id"`
	Priority  alert.Priority `json:"priority"`
	Duplicate bool           `json:"duplicate"`
	State     string         `json:"state"`
	Targets   int            `json:"targets"`
	// Zones are the zones a CAP document's areas hit.
	Zones []string `json:"zones,omitempty"`
	// Dedup says which dedup rule decided, when one did: the alert that
	// absorbed the request and why, or the earlier alert with the same
	// fingerprint that did not absorb it and why not.
	Dedup *dedupView `json:"dedup,omitempty"`
	// Withheld are the channels the channel policy kept the alert from in a
	// zone that has targets for them (e.g. sirens for a Moderate alert).
	Withheld []routing.Withheld `json:"withheld,omitempty"`
}

// dedupView explains a dedup decision (README.md, the dedup table).
type dedupView struct {
	// Rule: idempotency_key or fingerprint (a duplicate); retracted, expired
	// or escalated (a new alert, though an earlier one had its fingerprint).
	Rule   string   `json:"rule"`
	Alert  alert.ID `json:"alert"`
	Reason string   `json:"reason"`
}

// dedupReasons are the words for each rule.
var dedupReasons = map[string]string{
	"idempotency_key": "this principal sent the same Idempotency-Key before: the answer is the alert that request made (a new alert needs a new key)",
	"fingerprint":     "a live alert with the same sender, event, zones, type and status exists, and this request asks for nothing more (no higher severity or urgency, no other channel kind)",
	"retracted":       "the earlier alert with the same sender, event and zones was retracted or superseded: this one is a new alert",
	"expired":         "the earlier alert with the same sender, event and zones has expired: this one is a new alert",
	"escalated":       "this request escalates the earlier alert with the same sender, event and zones (higher severity or urgency, or another channel kind): it is a new alert, and everyone it reaches is told again",
}

func dedupOf(res priority.Enqueued) *dedupView {
	switch {
	case res.Duplicate:
		return &dedupView{Rule: res.Why, Alert: res.ID, Reason: dedupReasons[res.Why]}
	case res.Why != "":
		return &dedupView{Rule: res.Why, Alert: res.Earlier, Reason: dedupReasons[res.Why]}
	}
	return nil
}

func readBody(r *http.Request) ([]byte, error) {
	b, err := io.ReadAll(r.Body)
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return nil, tooLarge(mbe.Limit)
	}
	if err != nil {
		return nil, badRequest("", "cannot read body: "+err.Error())
	}
	return b, nil
}

// readJSON reads the body and decodes it strictly into v (decodeJSON).
func readJSON(r *http.Request, v any) error {
	b, err := readBody(r)
	if err != nil {
		return err
	}
	return decodeJSON(b, v)
}

// decodeJSON decodes one JSON object strictly: unknown fields, trailing data,
// type mismatches and text that is not UTF-8 (which encoding/json would
// silently replace) are errors that name the field.
func decodeJSON(b []byte, v any) error {
	if !utf8.Valid(b) {
		return badRequest(invalidUTF8Field(b), "not valid UTF-8: send text as UTF-8 (nothing was changed or stored)")
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		var se *json.SyntaxError
		switch {
		case errors.As(err, &te):
			return badRequest(te.Field, fmt.Sprintf("must be a JSON %s, not %s", jsonKind(te.Type), te.Value))
		case errors.As(err, &se):
			return badRequest("", fmt.Sprintf("malformed JSON at byte %d: %v", se.Offset, se))
		case strings.HasPrefix(err.Error(), "json: unknown field "):
			f := strings.Trim(strings.TrimPrefix(err.Error(), "json: unknown field "), `"`)
			return badRequest(f, "unknown field")
		case errors.Is(err, io.EOF):
			return badRequest("", "empty body: send a JSON object")
		case errors.Is(err, io.ErrUnexpectedEOF):
			return badRequest("", "malformed JSON: the body ends inside a value")
		}
		return badRequest("", err.Error())
	}
	if dec.More() {
		return badRequest("", "trailing data after the JSON object")
	}
	return nil
}

// invalidUTF8Field names the field whose value holds the body's first byte
// that is not UTF-8 ("headline", "zones[1]"), or "" when it lies outside any.
func invalidUTF8Field(b []byte) string {
	bad := 0
	for bad < len(b) {
		r, n := utf8.DecodeRune(b[bad:])
		if r == utf8.RuneError && n <= 1 {
			break
		}
		bad += n
	}
	type frame struct {
		array   bool
		wantKey bool
		key     string
		index   int
	}
	var stack []*frame
	field := func() string {
		var s strings.Builder
		for i, f := range stack {
			switch {
			case f.array:
				fmt.Fprintf(&s, "[%d]", f.index)
			case i > 0:
				s.WriteString("." + f.key)
			default:
				s.WriteString(f.key)
			}
		}
		return s.String()
	}
	// value notes that a value starts in the current container.
	value := func() {
		if n := len(stack); n > 0 && stack[n-1].array {
			stack[n-1].index++
		}
	}
	// done notes that a value ended: an object wants its next key.
	done := func() {
		if n := len(stack); n > 0 && !stack[n-1].array {
			stack[n-1].wantKey = true
		}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	for {
		tok, err := dec.Token()
		if err != nil {
			return ""
		}
		past := int(dec.InputOffset()) > bad
		switch t := tok.(type) {
		case json.Delim:
			switch t {
			case '{', '[':
				value()
				stack = append(stack, &frame{array: t == '[', wantKey: t == '{', index: -1})
			default:
				stack = stack[:len(stack)-1]
				done()
			}
		case string:
			if n := len(stack); n > 0 && stack[n-1].wantKey {
				stack[n-1].key, stack[n-1].wantKey = t, false
				if past {
					return field()
				}
				continue
			}
			value()
			if past {
				return field()
			}
			done()
		default:
			value()
			done()
		}
		if past {
			return ""
		}
	}
}

// jsonKind names the JSON type a Go type is decoded from.
func jsonKind(t reflect.Type) string {
	switch t.Kind() {
	case reflect.Slice, reflect.Array:
		return "array"
	case reflect.Map, reflect.Struct:
		return "object"
	case reflect.String:
		return "string"
	case reflect.Bool:
		return "boolean"
	case reflect.Pointer:
		return jsonKind(t.Elem())
	}
	return "number"
}

func (g *Gateway) postAlert(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	mt, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	switch mt {
	case "application/json":
	case "application/cap+xml", "application/xml", "text/xml":
		b, err := readBody(r)
		if err != nil {
			return err
		}
		return g.postCAP(w, r, p, b)
	default:
		return unsupportedMedia("Content-Type must be application/json, or application/cap+xml for CAP 1.2")
	}
	if err := g.limit(p); err != nil {
		return err
	}
	var req alertRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	a, err := g.validate(&req, p, time.Now())
	if err != nil {
		return err
	}
	idem := r.Header.Get("Idempotency-Key")
	if len(idem) > 200 {
		return badRequest("Idempotency-Key", "must be at most 200 characters")
	}
	_, err = g.accept(w, r, p, a, idem, nil, nil)
	return err
}

// accept routes a validated alert, enqueues it under idem (if any) and the
// fingerprint, fencing the alerts it supersedes in the same step, and
// answers: 202 with the new alert, or 200 with the one that absorbed it.
// extra, if set, adds fields to the answer.
func (g *Gateway) accept(w http.ResponseWriter, r *http.Request, p *config.Principal, a *alert.Alert, idem string, supersedes []alert.ID, extra map[string]any) (priority.Enqueued, error) {
	if o := p.Operator(); o != nil && !o.Has(config.RoleAuthor) {
		return priority.Enqueued{}, forbidden("role", p.ID+" is not an author")
	}
	if pol := g.policyFor(p); pol != config.PolicyAuto {
		return priority.Enqueued{}, g.holdAlert(w, r.Context(), a, p, pol)
	}
	targets, withheld, err := g.plan(a)
	if err != nil && len(supersedes) == 0 {
		return priority.Enqueued{}, err
	}
	// An Update that may reach nobody (say, lowered to Moderate where only
	// sirens are) still replaces what it supersedes: those are fenced in the
	// same step and their sirens get stop, so a downgraded warning never
	// leaves the old alarm sounding.
	res, err := g.q.Enqueue(r.Context(), priority.Plan{Alert: a, IdempotencyKey: idem, Fingerprint: priority.Fingerprint(a), Targets: targets, Supersedes: supersedes})
	if errors.Is(err, priority.ErrIdempotencyConflict) {
		return res, &Problem{Type: "urn:tocsin:problem:idempotency-key-reused", Title: "Idempotency-Key reused", Status: http.StatusUnprocessableEntity,
			Field: "Idempotency-Key", Detail: fmt.Sprintf("this key made alert %s, whose content differs: a new alert needs a new key", res.ID)}
	}
	if errors.Is(err, priority.ErrNotReplicated) {
		g.log.Error().Err(err).Str("principal", p.ID).Msg("Alert stored on the Redis master, not yet on its replicas")
		return res, unavailable("stored, but not yet confirmed by the Redis replicas: retry the same request (same Idempotency-Key, or within the dedup window): it is answered as the same alert")
	}
	if err != nil {
		g.log.Error().Err(err).Str("principal", p.ID).Msg("Alert not stored")
		return res, unavailable("the queue cannot store the alert right now; nothing was accepted, retry")
	}
	if res.Duplicate && priority.IsTombstone(res.ID) {
		return res, errCancelledFirst
	}
	if res.Duplicate {
		g.m.duplicates.Inc()
		resp := alertResponse{ID: res.ID, Duplicate: true, Dedup: dedupOf(res)}
		if st, err := g.q.Status(r.Context(), res.ID); err == nil {
			resp.Priority, resp.State, resp.Targets = st.Alert.Priority, st.State, st.Targets
		}
		writeJSON(w, http.StatusOK, withExtra(resp, extra))
		return res, nil
	}
	g.m.accepted.Inc()
	g.log.Info().Str("alert_id", string(a.ID)).Str("principal", p.ID).Str("event", a.Event).
		Int("priority", int(a.Priority)).Int("targets", len(targets)).Str("status", string(a.Status)).Str("dedup", res.Why).Msg("Alert accepted")
	g.superseded(r.Context(), a.ID, res.Fenced, p)
	w.Header().Set("Location", "/v1/alerts/"+string(a.ID))
	writeJSON(w, http.StatusAccepted, withExtra(alertResponse{ID: a.ID, Priority: a.Priority, State: "queued", Targets: len(targets), Zones: a.Zones, Dedup: dedupOf(res), Withheld: withheld}, extra))
	return res, nil
}

// superseded sweeps the ledgers of alerts an update fenced when it was stored.
func (g *Gateway) superseded(ctx context.Context, by alert.ID, fenced []alert.ID, p *config.Principal) {
	for _, id := range fenced {
		g.m.retracted.Inc()
		g.sweep(ctx, id, "superseded", p, 0, time.Now())
	}
}

// errCancelledFirst is accept's answer for a message whose idempotency key
// holds a tombstone: it was cancelled before it arrived.
var errCancelledFirst = conflict("this message was cancelled before it arrived; it is not delivered")

// withExtra merges extra fields into a JSON answer.
func withExtra(v alertResponse, extra map[string]any) any {
	if len(extra) == 0 {
		return v
	}
	b, _ := json.Marshal(v)
	m := map[string]any{}
	json.Unmarshal(b, &m)
	for k, x := range extra {
		m[k] = x
	}
	return m
}

func channelsOrAll(ks []alert.Kind) any {
	if len(ks) == 0 {
		return "all"
	}
	return ks
}

// validate checks a request against the schema and the principal's scopes and
// builds the alert. Every error names the field, or the scope for a 403.
func (g *Gateway) validate(req *alertRequest, p *config.Principal, now time.Time) (*alert.Alert, error) {
	a := &alert.Alert{
		ID: newID(now), Principal: p.ID, Source: req.Source, Status: req.Status, MsgType: req.MsgType,
		Event: strings.TrimSpace(req.Event), Certainty: req.Certainty, Headline: req.Headline,
		Description: req.Description, Instruction: req.Instruction, Language: req.Language,
		Channels: req.Channels, Sent: now.UTC(),
	}
	switch req.Status {
	case alert.StatusActual, alert.StatusExercise, alert.StatusTest:
	case "":
		return nil, badRequest("status", "required: actual, exercise or test")
	default:
		return nil, badRequest("status", fmt.Sprintf("%q is not actual, exercise or test", req.Status))
	}
	switch req.MsgType {
	case "", "Alert":
		a.MsgType = "Alert"
	case "Update", "Cancel":
		return nil, badRequest("msgType", req.MsgType+" is not accepted as JSON yet: retract with POST /v1/alerts/{id}/retract")
	default:
		return nil, badRequest("msgType", fmt.Sprintf("%q is not Alert", req.MsgType))
	}
	if a.Event == "" {
		return nil, badRequest("event", "required: what happened, e.g. \"Amok\" or \"Fire\"")
	}
	if len(a.Event) > 200 || len(a.Headline) > 500 || len(a.Description) > 8000 || len(a.Instruction) > 8000 {
		return nil, badRequest(longest(a), "too long")
	}
	langs := map[string]bool{strings.ToLower(a.Language): true}
	for i, in := range req.Info {
		f := fmt.Sprintf("info[%d]", i)
		switch l := strings.ToLower(strings.TrimSpace(in.Language)); {
		case l == "" || len(l) > 35:
			return nil, badRequest(f+".language", "required: the language of this block (de, en-GB)")
		case langs[l]:
			return nil, badRequest(f+".language", fmt.Sprintf("%q appears twice (the alert's own language is %q)", in.Language, a.Language))
		default:
			langs[l] = true
		}
		if len(in.Event) > 200 || len(in.Headline) > 500 || len(in.Description) > 8000 || len(in.Instruction) > 8000 {
			return nil, badRequest(f, "a text is too long (event 200, headline 500, description and instruction 8000)")
		}
		if in.Headline == "" && in.Description == "" && in.Instruction == "" {
			return nil, badRequest(f, "needs a headline, description or instruction")
		}
	}
	if len(req.Info) > 32 {
		return nil, badRequest("info", "at most 32 languages")
	}
	a.Infos = req.Info
	if req.Source != "" && len(req.Source) > 100 {
		return nil, badRequest("source", "must be at most 100 characters")
	}
	var err error
	if req.Severity == "" {
		return nil, badRequest("severity", "required: Extreme, Severe, Moderate, Minor or Unknown")
	}
	if a.Severity, err = alert.ParseSeverity(req.Severity); err != nil {
		return nil, badRequest("severity", err.Error())
	}
	if req.Urgency == "" {
		return nil, badRequest("urgency", "required: Immediate, Expected, Future, Past or Unknown")
	}
	if a.Urgency, err = alert.ParseUrgency(req.Urgency); err != nil {
		return nil, badRequest("urgency", err.Error())
	}
	if len(req.Zones) == 0 {
		return nil, badRequest("zones", "required: at least one zone id")
	}
	seen := map[string]bool{}
	for i, z := range req.Zones {
		if !g.zones[z] {
			return nil, badRequest(fmt.Sprintf("zones[%d]", i), fmt.Sprintf("unknown zone %q", z))
		}
		if !seen[z] {
			a.Zones = append(a.Zones, z)
			seen[z] = true
		}
	}
	a.Channels = nil
	for i, k := range req.Channels {
		switch {
		case slices.Contains(g.Kinds(), k):
			if !slices.Contains(a.Channels, k) {
				a.Channels = append(a.Channels, k)
			}
		case slices.Contains(alert.Kinds, k):
			return nil, badRequest(fmt.Sprintf("channels[%d]", i), fmt.Sprintf("channel kind %q is not configured on this gateway", k))
		default:
			return nil, badRequest(fmt.Sprintf("channels[%d]", i), fmt.Sprintf("%q is not a channel kind (siren, pa, sms, voice, dispatch)", k))
		}
	}
	a.Expires = now.Add(g.cfg.Queue.DefaultExpiry).UTC()
	if req.Expires != nil {
		switch {
		case !req.Expires.After(now):
			return nil, badRequest("expires", "must be in the future")
		case req.Expires.After(now.Add(7 * 24 * time.Hour)):
			return nil, badRequest("expires", "must be within 7 days")
		}
		a.Expires = req.Expires.UTC()
	}
	// Scopes: each 403 names the scope.
	if !p.Scopes.AllowsStatus(a.Status) {
		return nil, forbidden("statuses", fmt.Sprintf("principal %q may not send %s alerts", p.ID, a.Status))
	}
	for _, z := range a.Zones {
		if !p.Scopes.AllowsZone(z) {
			return nil, forbidden("zones", fmt.Sprintf("principal %q may not alert zone %q", p.ID, z))
		}
	}
	if len(a.Channels) == 0 { // every configured kind the principal may use
		for _, k := range g.Kinds() {
			if p.Scopes.AllowsChannel(k) {
				a.Channels = append(a.Channels, k)
			}
		}
	}
	for _, k := range a.Channels {
		if !p.Scopes.AllowsChannel(k) {
			return nil, forbidden("channels", fmt.Sprintf("principal %q may not use channel kind %s", p.ID, k))
		}
	}
	if a.Severity > p.Scopes.MaxSev() {
		return nil, forbidden("max_severity", fmt.Sprintf("principal %q may send at most %s", p.ID, p.Scopes.MaxSev()))
	}
	a.Priority = alert.PriorityOf(a.Severity, a.Urgency)
	return a, nil
}

func longest(a *alert.Alert) string {
	switch {
	case len(a.Event) > 200:
		return "event"
	case len(a.Headline) > 500:
		return "headline"
	case len(a.Description) > 8000:
		return "description"
	}
	return "instruction"
}

// alertView is the JSON of GET /v1/alerts/{id}.
type alertView struct {
	*alert.Alert
	State     string                          `json:"state"`
	Created   time.Time                       `json:"created"`
	Retracted *retractionView                 `json:"retraction,omitempty"`
	Counts    map[alert.Kind]*priority.Counts `json:"channels"`
	// Sources are the trigger sources that confirmed the alert.
	Sources []string `json:"trigger_sources,omitempty"`
}

type retractionView struct {
	Reason string    `json:"reason"`
	Note   string    `json:"note,omitempty"`
	At     time.Time `json:"at"`
	// Sweeping: the retractions of the phones are still being queued, so
	// the channels' retractions_owed may still grow.
	Sweeping bool `json:"sweeping"`
}

func view(st *priority.Status) alertView {
	v := alertView{Alert: st.Alert, State: st.State, Created: st.Created.UTC(), Counts: st.Counts}
	if st.State == "retracted" {
		v.Retracted = &retractionView{Reason: st.Reason, Note: st.Note, At: st.Retracted.UTC(), Sweeping: st.Sweeping}
	}
	return v
}

// readable says whether p may see alert a: every zone of a is in p's scope.
func readable(p *config.Principal, a *alert.Alert) error {
	for _, z := range a.Zones {
		if !p.Scopes.AllowsZone(z) {
			return forbidden("zones", fmt.Sprintf("principal %q may not see alerts for zone %q", p.ID, z))
		}
	}
	return nil
}

func (g *Gateway) status(ctx context.Context, id string, p *config.Principal) (*priority.Status, error) {
	st, err := g.q.Status(ctx, alert.ID(id))
	if errors.Is(err, priority.ErrNotFound) {
		return nil, notFound(fmt.Sprintf("no alert %q", id))
	}
	if err != nil {
		return nil, unavailable(err.Error())
	}
	if err := readable(p, st.Alert); err != nil {
		return nil, err
	}
	return st, nil
}

func (g *Gateway) getAlert(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	st, err := g.status(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	v := view(st)
	if v.Sources, err = g.q.Corroborators(r.Context(), st.Alert.ID); err != nil {
		return unavailable(err.Error())
	}
	writeJSON(w, http.StatusOK, v)
	return nil
}

func (g *Gateway) getDeliveries(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	st, err := g.status(r.Context(), r.PathValue("id"), p)
	if err != nil {
		return err
	}
	// Paged over the ledger: a page costs the same for a million targets
	// as for ten. next is the cursor of the following page, "" after the last.
	limit, cursor := 1000, uint64(0)
	if v := r.URL.Query().Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 10000 {
			return badRequest("limit", "must be a number from 1 to 10000")
		}
		limit = n
	}
	if v := r.URL.Query().Get("cursor"); v != "" {
		c, err := strconv.ParseUint(v, 10, 64)
		if err != nil {
			return badRequest("cursor", "must be the next value of the previous page")
		}
		cursor = c
	}
	ds, next, err := g.q.DeliveriesPage(r.Context(), st.Alert.ID, cursor, limit)
	if err != nil {
		return unavailable(err.Error())
	}
	if ds == nil {
		ds = []priority.DeliveryState{}
	}
	nextCursor := ""
	if next != 0 {
		nextCursor = strconv.FormatUint(next, 10)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": st.Alert.ID, "deliveries": ds, "next": nextCursor})
	return nil
}

func (g *Gateway) listAlerts(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	limit := 50
	if s := r.URL.Query().Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > 500 {
			return badRequest("limit", "must be a number from 1 to 500")
		}
		limit = n
	}
	ids, err := g.q.List(r.Context(), limit)
	if err != nil {
		return unavailable(err.Error())
	}
	out := []alertView{}
	for _, id := range ids {
		st, err := g.q.Status(r.Context(), id)
		if err != nil || readable(p, st.Alert) != nil {
			continue
		}
		out = append(out, view(st))
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": out})
	return nil
}

type retractRequest struct {
	Reason string `json:"reason"`
	Note   string `json:"note"`
}

func (g *Gateway) retract(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	var req retractRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	switch req.Reason {
	case "false_alarm", "all_clear", "superseded":
	case "":
		return badRequest("reason", "required: false_alarm, all_clear or superseded")
	default:
		return badRequest("reason", fmt.Sprintf("%q is not false_alarm, all_clear or superseded", req.Reason))
	}
	if len(req.Note) > 2000 {
		return badRequest("note", "must be at most 2000 characters")
	}
	if !p.Scopes.Retract {
		return forbidden("retract", fmt.Sprintf("principal %q may not retract alerts", p.ID))
	}
	id := r.PathValue("id")
	st, err := g.status(r.Context(), id, p)
	if err != nil {
		return err
	}
	if err := g.retractAlert(r.Context(), alert.ID(id), req.Reason, req.Note, p); err != nil {
		return err
	}
	g.draftRetracted(r.Context(), alert.ID(id), p, req.Reason)
	if st, err = g.q.Status(r.Context(), alert.ID(id)); err != nil {
		return unavailable(err.Error())
	}
	writeJSON(w, http.StatusAccepted, view(st))
	return nil
}

// retractAlert fences an alert and queues its retractions: the one path for
// the retract endpoint and CAP Cancel and Update.
func (g *Gateway) retractAlert(ctx context.Context, id alert.ID, reason, note string, p *config.Principal) error {
	start := time.Now()
	// Sirens, PA and dispatch centres are few and the most urgent: their
	// retractions are queued with the fence; a sweep queues everyone else's.
	var first []alert.Target
	if a, _, err := g.q.Alert(ctx, id); err == nil {
		b := *a
		b.Channels = slices.DeleteFunc(slices.Clone(a.Channels), func(k alert.Kind) bool { return k == alert.KindSMS || k == alert.KindVoice })
		first = g.route(&b)
	}
	res, err := g.q.Fence(ctx, id, reason, note, first...)
	switch {
	case errors.Is(err, priority.ErrRetracted):
		return conflict(fmt.Sprintf("alert %q is already retracted", id))
	case errors.Is(err, priority.ErrNotFound):
		return notFound(fmt.Sprintf("no alert %q", id))
	case err != nil:
		return unavailable(err.Error())
	}
	g.m.retracted.Inc()
	g.sweep(ctx, id, reason, p, res.Queued, start)
	return nil
}

// sweep queues the retractions of a fenced alert's ledger in the background
// (Resume finishes it if this process dies first) and logs the retraction.
func (g *Gateway) sweep(ctx context.Context, id alert.ID, reason string, p *config.Principal, queued int, start time.Time) {
	fenced := time.Since(start)
	go func() { // exits when the sweep is done
		n, err := g.q.Sweep(context.WithoutCancel(ctx), id)
		if err != nil {
			g.log.Warn().Err(err).Str("alert_id", string(id)).Msg("Retraction sweep interrupted; another pass finishes it")
		}
		g.log.Info().Str("alert_id", string(id)).Str("principal", p.ID).Str("reason", reason).
			Int("retractions_queued", queued+n).Dur("fence_took", fenced).Dur("sweep_took", time.Since(start)).Msg("Alert retracted")
	}()
}

// limit spends one of the principal's alert tokens (principals[].rate and
// burst, per instance), or answers 429 with the wait in Retry-After.
func (g *Gateway) limit(p *config.Principal) error {
	g.limitMu.Lock()
	l := g.limits[p.ID]
	if l == nil {
		l = rate.NewLimiter(rate.Limit(p.Rate), p.Burst)
		g.limits[p.ID] = l
	}
	g.limitMu.Unlock()
	res := l.Reserve()
	wait := res.Delay()
	if wait == 0 {
		return nil
	}
	res.Cancel()
	return &Problem{Type: "urn:tocsin:problem:rate-limited", Title: "Too many alerts", Status: http.StatusTooManyRequests,
		Detail:     fmt.Sprintf("principal %q may post %g alerts/s (burst %d); nothing was stored, retry after the wait", p.ID, p.Rate, p.Burst),
		RetryAfter: int(math.Ceil(wait.Seconds()))}
}
