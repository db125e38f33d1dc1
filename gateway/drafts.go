package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/adapters/siren"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/delivery"
	"github.com/tocsin-alert/tocsin/priority"
	"github.com/tocsin-alert/tocsin/release"
	"github.com/tocsin-alert/tocsin/routing"
)

// draftRequest is the body of POST /v1/drafts and PUT /v1/drafts/{id}: an
// alert, optionally starting from a template whose fields fill what the
// request leaves empty. Status is never filled in: a person says whether it
// is live.
type draftRequest struct {
	alertRequest
	Template string `json:"template"`
}

// draftView is a draft as the API shows it: the package, its digest (what an
// approval must name), and how many valid approvals it has of how many.
type draftView struct {
	*release.Draft
	// Changed are the package's fields the last edit changed.
	Changed        []string  `json:"changed,omitempty"`
	ValidApprovals int       `json:"validApprovals"`
	ApprovalsUntil time.Time `json:"approvalsValidUntil,omitzero"`
	// Alert is where the released alert's progress is (GET /v1/alerts/{id}).
	Alert string `json:"alert,omitempty"`
}

func (g *Gateway) draftView(d *release.Draft) draftView {
	v := draftView{Draft: d, Changed: d.Changes()}
	valid := d.Valid(time.Now(), g.cfg.Release.ApprovalTTL)
	v.ValidApprovals = len(valid)
	for _, a := range valid {
		if t := a.At.Add(g.cfg.Release.ApprovalTTL); v.ApprovalsUntil.IsZero() || t.Before(v.ApprovalsUntil) {
			v.ApprovalsUntil = t
		}
	}
	if d.State == release.StateLive || d.State == release.StateRetracted || d.State == release.StateCompleted {
		v.Alert = "/v1/alerts/" + string(d.ID)
	}
	return v
}

// templateView is a template with the counts an alert from it would reach.
type templateView struct {
	*config.Template
	Counts map[alert.Kind]int `json:"counts"`
	// Expires is the template's lifetime as a duration ("2h"), not nanoseconds.
	Expires string `json:"expires,omitempty"`
}

func (g *Gateway) listTemplates(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	out := []templateView{}
	for i := range g.cfg.Templates {
		t := &g.cfg.Templates[i]
		sev, _ := alert.ParseSeverity(t.Severity)
		a := &alert.Alert{Status: alert.StatusActual, Event: t.Event, Severity: sev, Zones: t.Zones, Channels: t.Channels}
		v := templateView{Template: t, Counts: counts(g.route(a))}
		if t.Expires > 0 {
			v.Expires = t.Expires.String()
		}
		out = append(out, v)
	}
	writeJSON(w, http.StatusOK, map[string]any{"templates": out})
	return nil
}

func counts(ts []alert.Target) map[alert.Kind]int {
	m := map[alert.Kind]int{}
	for _, t := range ts {
		m[t.Kind]++
	}
	return m
}

// compose turns a draft request into the package an approver will see and
// the alert a release would queue. now fixes the texts' time; the expiry is
// the request's, else the template's, else the queue's default.
func (g *Gateway) compose(req *draftRequest, p *config.Principal, now time.Time) (*release.Package, *alert.Alert, error) {
	var tmpl *config.Template
	if req.Template != "" {
		if tmpl = g.cfg.Template(req.Template); tmpl == nil {
			return nil, nil, badRequest("template", fmt.Sprintf("no template %q (GET /v1/templates)", req.Template))
		}
		fill := func(dst *string, src string) {
			if *dst == "" {
				*dst = src
			}
		}
		fill(&req.Event, tmpl.Event)
		fill(&req.Severity, tmpl.Severity)
		fill(&req.Urgency, tmpl.Urgency)
		fill(&req.Certainty, tmpl.Certainty)
		fill(&req.Headline, tmpl.Headline)
		fill(&req.Description, tmpl.Description)
		fill(&req.Instruction, tmpl.Instruction)
		fill(&req.Language, tmpl.Language)
		if len(req.Info) == 0 {
			req.Info = tmpl.Info
		}
		if len(req.Zones) == 0 {
			req.Zones = tmpl.Zones
		}
		if len(req.Channels) == 0 {
			req.Channels = tmpl.Channels
		}
		if req.Expires == nil && tmpl.Expires > 0 {
			e := now.Add(tmpl.Expires)
			req.Expires = &e
		}
	}
	if req.Expires == nil {
		e := now.Add(g.cfg.Queue.DefaultExpiry)
		req.Expires = &e
	}
	a, err := g.validate(&req.alertRequest, p, now)
	if err != nil {
		return nil, nil, err
	}
	pkg := &release.Package{
		Status: a.Status, MsgType: a.MsgType, Event: a.Event, Severity: a.Severity.String(), Urgency: a.Urgency.String(),
		Certainty: a.Certainty, Headline: a.Headline, Description: a.Description, Instruction: a.Instruction,
		Language: a.Language, Info: a.Infos, Zones: a.Zones, Channels: a.Channels, Expires: a.Expires.UTC().Truncate(time.Second),
	}
	if tmpl != nil {
		pkg.Template, pkg.TemplateVersion, pkg.Retraction = tmpl.ID, tmpl.Version, tmpl.RetractionTexts()
		a.RetractionTexts = pkg.Retraction
	}
	targets, _, err := g.plan(a)
	if err != nil {
		return nil, nil, err
	}
	pkg.Counts = counts(targets)
	pkg.Texts = map[string]string{}
	langs := []string{a.Language}
	for _, in := range a.Infos {
		langs = append(langs, in.Language)
	}
	texts := g.cfg.Texts()
	if pkg.Counts[alert.KindSiren] > 0 {
		// The signal the sirens would sound, and on each retraction.
		pkg.Texts["siren/-"] = siren.SignalFor(alert.Delivery{Alert: a, Message: alert.MessageAlert}, g.cfg.ChannelPolicy.Signal)
		for _, reason := range []string{"false_alarm", "all_clear"} {
			pkg.Texts["siren/-/"+reason] = siren.SignalFor(alert.Delivery{Alert: a, Message: alert.MessageRetraction, Reason: reason}, nil)
		}
	}
	for _, k := range []alert.Kind{alert.KindPA, alert.KindSMS, alert.KindVoice} {
		if pkg.Counts[k] == 0 {
			continue
		}
		for _, l := range langs {
			l = alert.TextLanguage(l)
			pkg.Texts[string(k)+"/"+l] = texts.Text(a, k, alert.MessageAlert, "", l)
			for _, reason := range []string{"false_alarm", "all_clear"} {
				pkg.Texts[string(k)+"/"+l+"/"+reason] = texts.Text(a, k, alert.MessageRetraction, reason, l)
			}
		}
	}
	return pkg, a, nil
}

// request is the draft request that rebuilds a package.
func requestOf(pkg *release.Package) *draftRequest {
	e := pkg.Expires
	return &draftRequest{alertRequest: alertRequest{
		Status: pkg.Status, MsgType: pkg.MsgType, Event: pkg.Event, Severity: pkg.Severity, Urgency: pkg.Urgency,
		Certainty: pkg.Certainty, Headline: pkg.Headline, Description: pkg.Description, Instruction: pkg.Instruction,
		Language: pkg.Language, Info: pkg.Info, Zones: pkg.Zones, Channels: pkg.Channels, Expires: &e,
	}, Template: pkg.Template}
}

// actor is who acts, as the release rules see them.
func (g *Gateway) actor(ctx context.Context, p *config.Principal) release.Actor {
	a := release.Actor{ID: p.ID, Zones: p.Scopes.Zones, Retract: p.Scopes.Retract}
	if o := p.Operator(); o != nil {
		a.Person = true
		a.Author, a.Approver = o.Has(config.RoleAuthor), o.Has(config.RoleApprover)
		if s := sessionOf(ctx); s != nil {
			a.SteppedUp = s.Fresh(time.Now(), g.cfg.Sessions.StepUp)
		}
	}
	return a
}

func refusal(err error) error {
	var ref *release.Refusal
	switch {
	case errors.As(err, &ref):
		if ref.Status == http.StatusConflict {
			return &Problem{Type: "urn:tocsin:problem:conflict", Title: "Conflict", Status: ref.Status, Field: ref.Field, Detail: ref.Msg}
		}
		if ref.Status == http.StatusBadRequest {
			return badRequest(ref.Field, ref.Msg)
		}
		return forbidden(ref.Field, ref.Msg)
	case errors.Is(err, release.ErrNotFound):
		return notFound("no such draft")
	case errors.Is(err, release.ErrConflict):
		return conflict("the draft changed while this request was decided; load it again")
	}
	return err
}

func entry(kind string, p *config.Principal, d *release.Draft, detail map[string]string) audit.Entry {
	if detail == nil {
		detail = map[string]string{}
	}
	detail["digest"] = d.Digest
	detail["state"] = string(d.State)
	return audit.Entry{Time: time.Now(), Kind: kind, Actor: actorName(p), Subject: string(d.ID), Detail: detail}
}

// actorName is how the audit names a principal.
func actorName(p *config.Principal) string {
	switch {
	case p.ID == "system":
		return "system"
	case p.Operator() != nil:
		return "operator:" + p.ID
	case strings.HasPrefix(p.ID, "source:"):
		return p.ID
	}
	return "principal:" + p.ID
}

func (g *Gateway) postDraft(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	var req draftRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	now := time.Now()
	pkg, a, err := g.compose(&req, p, now)
	if err != nil {
		return err
	}
	d := &release.Draft{ID: a.ID, State: release.StateDraft, Author: p.ID, Editor: p.ID, Created: now, Updated: now,
		Package: *pkg, Needed: g.cfg.Release.ApproversFor(pkg.Zones, a.Severity)}
	if err := release.Check(d, release.ActEdit, g.actor(r.Context(), p)); err != nil {
		return refusal(err)
	}
	d.Digest = pkg.Digest()
	if err := g.drafts.Put(r.Context(), d, 0, entry("draft.created", p, d, map[string]string{"template": pkg.Template})); err != nil {
		return unavailable(err.Error())
	}
	w.Header().Set("Location", "/v1/drafts/"+string(d.ID))
	writeJSON(w, http.StatusCreated, g.draftView(d))
	return nil
}

func (g *Gateway) listDrafts(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	ds, err := g.drafts.List(r.Context(), 200)
	if err != nil {
		return unavailable(err.Error())
	}
	state := r.URL.Query().Get("state")
	if state != "" && !slices.Contains(release.States, release.State(state)) {
		return badRequest("state", fmt.Sprintf("%q is not a state (%v)", state, release.States))
	}
	out := []draftView{}
	for _, d := range ds {
		if (state == "" || string(d.State) == state) && g.mayRead(p, d) {
			out = append(out, g.draftView(d))
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"drafts": out})
	return nil
}

func (g *Gateway) mayRead(p *config.Principal, d *release.Draft) bool {
	for _, z := range d.Package.Zones {
		if p.Scopes.AllowsZone(z) {
			return true
		}
	}
	return false
}

func (g *Gateway) getDraft(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	d, _, err := g.drafts.Get(r.Context(), alert.ID(r.PathValue("id")))
	if err != nil || !g.mayRead(p, d) {
		return notFound("no such draft")
	}
	g.expireIfDue(r.Context(), d)
	g.completeIfDone(r.Context(), d)
	writeJSON(w, http.StatusOK, g.draftView(d))
	return nil
}

// completeIfDone moves a live draft whose alert is finished (every target
// reached or given up, or the alert expired) to completed.
func (g *Gateway) completeIfDone(ctx context.Context, d *release.Draft) {
	if d.State != release.StateLive {
		return
	}
	if st, err := g.q.Status(ctx, d.ID); err == nil && (st.State == "completed" || st.State == "expired") {
		g.systemAct(ctx, d, release.ActComplete, "draft.completed", map[string]string{"alert_state": st.State})
	}
}

// expireIfDue moves a draft whose alert expired before release to expired.
func (g *Gateway) expireIfDue(ctx context.Context, d *release.Draft) {
	if _, err := release.Next(d.State, release.ActExpire); err == nil && !time.Now().Before(d.Package.Expires) {
		g.systemAct(ctx, d, release.ActExpire, "draft.expired", nil)
	}
}

// systemAct is Tocsin's own transition of d (expire, complete), audited as
// by "system"; d is updated in place when it took effect.
func (g *Gateway) systemAct(ctx context.Context, d *release.Draft, act release.Action, kind string, detail map[string]string) {
	nd, err := g.drafts.Change(ctx, d.ID, func(d *release.Draft) (audit.Entry, error) {
		to, err := release.Next(d.State, act)
		if err != nil {
			return audit.Entry{}, err
		}
		d.State, d.Updated = to, time.Now()
		return entry(kind, &config.Principal{ID: "system"}, d, detail), nil
	})
	if err == nil {
		*d = *nd
	}
}

// putDraft edits a draft: a new package, whose digest voids every approval.
func (g *Gateway) putDraft(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	var req draftRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	pkg, _, err := g.compose(&req, p, time.Now())
	if err != nil {
		return err
	}
	who := g.actor(r.Context(), p)
	d, err := g.drafts.Change(r.Context(), alert.ID(r.PathValue("id")), func(d *release.Draft) (audit.Entry, error) {
		to, err := release.Next(d.State, release.ActEdit)
		if err != nil {
			return audit.Entry{}, err
		}
		if err := release.Check(d, release.ActEdit, who); err != nil {
			return audit.Entry{}, err
		}
		old := d.Digest
		prev := d.Package
		prev.Texts = maps.Clone(prev.Texts)
		d.Previous = &prev
		// The new zones must be the editor's too.
		d.Package = *pkg
		if err := release.Check(d, release.ActEdit, who); err != nil {
			return audit.Entry{}, err
		}
		sev, _ := alert.ParseSeverity(pkg.Severity)
		d.State, d.Editor, d.Updated = to, p.ID, time.Now()
		d.Needed = g.cfg.Release.ApproversFor(pkg.Zones, sev)
		d.Digest = pkg.Digest()
		return entry("draft.edited", p, d, map[string]string{"previous_digest": old}), nil
	})
	if err != nil {
		return refusal(err)
	}
	writeJSON(w, http.StatusOK, g.draftView(d))
	return nil
}

// actionRequest is the body of a draft action: the digest the person saw
// (approve, release) and a reason (return, reject).
type actionRequest struct {
	Digest string `json:"digest"`
	Reason string `json:"reason"`
}

func (g *Gateway) draftAction(act release.Action) handlerFunc {
	return func(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
		var req actionRequest
		if r.ContentLength != 0 {
			if err := readJSON(r, &req); err != nil {
				return err
			}
		}
		switch act {
		case release.ActApprove, release.ActRelease:
			if len(req.Digest) != 64 {
				return badRequest("digest", "required: the digest of the package you reviewed (GET /v1/drafts/{id})")
			}
		case release.ActReturn, release.ActReject:
			if strings.TrimSpace(req.Reason) == "" || len(req.Reason) > 2000 {
				return badRequest("reason", "required: why (at most 2000 characters)")
			}
		}
		id := alert.ID(r.PathValue("id"))
		if d, _, err := g.drafts.Get(r.Context(), id); err == nil {
			if !g.mayRead(p, d) {
				return notFound("no such draft")
			}
			g.expireIfDue(r.Context(), d)
		}
		d, err := g.act(r.Context(), id, act, p, req)
		if err != nil {
			return refusal(err)
		}
		writeJSON(w, http.StatusOK, g.draftView(d))
		return nil
	}
}

// act does one action to a draft; an approval that makes the count, and a
// submission under the auto policy, release at once.
func (g *Gateway) act(ctx context.Context, id alert.ID, act release.Action, p *config.Principal, req actionRequest) (*release.Draft, error) {
	who := g.actor(ctx, p)
	now := time.Now()
	ttl := g.cfg.Release.ApprovalTTL
	d, err := g.drafts.Change(ctx, id, func(d *release.Draft) (audit.Entry, error) {
		to, err := release.Next(d.State, act)
		if err != nil {
			return audit.Entry{}, err
		}
		if err := release.Check(d, act, who); err != nil {
			return audit.Entry{}, err
		}
		if req.Digest != "" && req.Digest != d.Digest {
			return audit.Entry{}, &release.Refusal{Status: http.StatusConflict, Field: "digest",
				Msg: "the package changed since you reviewed it: review it again (GET /v1/drafts/" + string(d.ID) + ")"}
		}
		detail := map[string]string{}
		switch act {
		case release.ActSubmit:
			d.Reason, d.ReasonBy = "", ""
		case release.ActApprove:
			d.Approvals = append(d.Approvals, release.Approval{By: p.ID, Digest: d.Digest, At: now})
			detail["valid"] = fmt.Sprint(len(d.Valid(now, ttl)))
			detail["needed"] = fmt.Sprint(d.Needed)
		case release.ActReturn, release.ActReject:
			d.Reason, d.ReasonBy = req.Reason, p.ID
			detail["reason"] = req.Reason
		case release.ActRelease:
			if n := len(d.Valid(now, ttl)); n < d.Needed {
				return audit.Entry{}, &release.Refusal{Status: http.StatusConflict, Field: "approvals",
					Msg: fmt.Sprintf("%d of %d approvals of this package are valid (approvals last %v and count once per person, never the author's or last editor's)", n, d.Needed, ttl)}
			}
		}
		d.State, d.Updated = to, now
		return entry(actionKinds[act], p, d, detail), nil
	})
	if err != nil {
		return d, err
	}
	switch {
	case act == release.ActSubmit && g.policyOf(d) == config.PolicyAuto:
		return g.releaseDraft(ctx, d, p, true)
	case act == release.ActSubmit:
		g.page(ctx, d)
	case act == release.ActApprove && len(d.Valid(now, ttl)) >= d.Needed:
		return g.releaseDraft(ctx, d, p, false)
	case act == release.ActRelease:
		return g.queueDraft(ctx, d)
	}
	return d, nil
}

// actionKinds are the audit kinds of the actions.
var actionKinds = map[release.Action]string{
	release.ActSubmit: "draft.submitted", release.ActApprove: "draft.approved", release.ActRelease: "draft.released",
	release.ActReturn: "draft.returned", release.ActReject: "draft.rejected", release.ActEdit: "draft.edited",
}

// policyOf is the policy the draft's author is under.
func (g *Gateway) policyOf(d *release.Draft) config.Policy {
	if o := g.cfg.Operator(d.Author); o != nil {
		return g.cfg.Release.OperatorPolicy(o)
	}
	if src, ok := strings.CutPrefix(d.Author, "source:"); ok {
		return g.cfg.Release.SourcePolicy(src)
	}
	return g.cfg.Release.PolicyFor(d.Author)
}

// releaseDraft moves a pending draft to live and queues its alert.
func (g *Gateway) releaseDraft(ctx context.Context, d *release.Draft, p *config.Principal, auto bool) (*release.Draft, error) {
	d, err := g.drafts.Change(ctx, d.ID, func(d *release.Draft) (audit.Entry, error) {
		to, err := release.Next(d.State, release.ActRelease)
		if err != nil {
			return audit.Entry{}, err
		}
		if !auto && len(d.Valid(time.Now(), g.cfg.Release.ApprovalTTL)) < d.Needed {
			return audit.Entry{}, &release.Refusal{Status: http.StatusConflict, Field: "approvals", Msg: "not enough valid approvals"}
		}
		d.State, d.Updated = to, time.Now()
		detail := map[string]string{"policy": "approval"}
		if auto {
			detail["policy"] = "auto"
		}
		return entry("draft.released", p, d, detail), nil
	})
	if err != nil {
		return d, err
	}
	return g.queueDraft(ctx, d)
}

// queueDraft queues a live draft's alert. The package is rebuilt from the
// configuration as it is now: if that changes what was approved (a target
// added, a template edited), nothing is queued and the draft goes back for
// review. The idempotency key is the draft's id, so a repeated release
// (a retry after Redis failed) queues the alert once.
func (g *Gateway) queueDraft(ctx context.Context, d *release.Draft) (*release.Draft, error) {
	author := g.principalByID(d.Author)
	if author == nil {
		return d, &release.Refusal{Status: http.StatusConflict, Field: "author", Msg: fmt.Sprintf("the author %q is no longer configured", d.Author)}
	}
	req := requestOf(&d.Package)
	pkg, a, err := g.compose(req, author, d.Created)
	if err != nil {
		return d, err
	}
	if pkg.Digest() != d.Digest {
		return d, &release.Refusal{Status: http.StatusConflict, Field: "digest", Msg: "the configuration changed what this package reaches or says since it was approved; edit and submit it again"}
	}
	a.ID, a.Sent = d.ID, time.Now().UTC()
	targets := g.route(a)
	res, err := g.q.Enqueue(ctx, priority.Plan{Alert: a, IdempotencyKey: "draft:" + string(d.ID), Fingerprint: priority.Fingerprint(a), Targets: targets})
	if err != nil && !errors.Is(err, priority.ErrIdempotencyConflict) {
		return d, unavailable("the queue cannot store the alert right now; the release is recorded, POST /v1/drafts/" + string(d.ID) + "/release again")
	}
	if !res.Duplicate {
		g.m.accepted.Inc()
		g.superseded(ctx, a.ID, res.Fenced, author)
	}
	g.log.Info().Str("alert_id", string(a.ID)).Str("author", d.Author).Int("targets", len(targets)).Msg("Draft released")
	return d, nil
}

// principalByID finds the principal a draft's author acts as.
func (g *Gateway) principalByID(id string) *config.Principal {
	if o := g.cfg.Operator(id); o != nil {
		return o.Principal()
	}
	if src, ok := strings.CutPrefix(id, "source:"); ok {
		if s := g.cfg.Triggers.Source(src); s != nil {
			return sourcePrincipal(s)
		}
	}
	for i := range g.cfg.Principals {
		if g.cfg.Principals[i].ID == id {
			return &g.cfg.Principals[i]
		}
	}
	return nil
}

// policyFor is the release policy of what p posts: an operator's role
// policy (and only authors post), an API principal's own.
func (g *Gateway) policyFor(p *config.Principal) config.Policy {
	if o := p.Operator(); o != nil {
		return g.cfg.Release.OperatorPolicy(o)
	}
	if src, ok := strings.CutPrefix(p.ID, "source:"); ok {
		return g.cfg.Release.SourcePolicy(src)
	}
	return g.cfg.Release.PolicyFor(p.ID)
}

// holdAlert stores an alert its sender's policy holds for approval (or
// quarantines) as a draft, so it waits visibly and reaches nobody until
// released, and answers 202 with where it waits.
func (g *Gateway) holdAlert(w http.ResponseWriter, ctx context.Context, a *alert.Alert, p *config.Principal, pol config.Policy) error {
	d, err := g.hold(ctx, a, p, pol, "")
	if err != nil {
		return err
	}
	state := string(d.State)
	if pol == config.PolicyQuarantine {
		state = "quarantined"
	}
	w.Header().Set("Location", "/v1/drafts/"+string(d.ID))
	writeJSON(w, http.StatusAccepted, map[string]any{"id": d.ID, "state": state, "policy": pol, "needed": d.Needed,
		"counts": d.Package.Counts, "draft": "/v1/drafts/" + string(d.ID)})
	return nil
}

// hold stores a held alert as a draft: pending (approval) or draft
// (quarantine, released only by someone submitting it).
// id, if set, is the draft's id (a trigger's, made from its event id);
// release.ErrConflict then means it is held already.
func (g *Gateway) hold(ctx context.Context, a *alert.Alert, p *config.Principal, pol config.Policy, id alert.ID) (*release.Draft, error) {
	e := a.Expires
	req := &draftRequest{alertRequest: alertRequest{Status: a.Status, MsgType: a.MsgType, Source: a.Source, Event: a.Event,
		Severity: a.Severity.String(), Urgency: a.Urgency.String(), Certainty: a.Certainty, Headline: a.Headline,
		Description: a.Description, Instruction: a.Instruction, Language: a.Language, Info: a.Infos, Zones: a.Zones,
		Channels: a.Channels, Expires: &e}}
	now := time.Now()
	pkg, b, err := g.compose(req, p, now)
	if err != nil {
		return nil, err
	}
	d := &release.Draft{ID: b.ID, State: release.StatePending, Author: p.ID, Editor: p.ID, Created: now, Updated: now,
		Policy: string(pol), Package: *pkg, Needed: g.cfg.Release.ApproversFor(pkg.Zones, b.Severity)}
	kind := "alert.held"
	if pol == config.PolicyQuarantine {
		d.State, kind = release.StateDraft, "alert.quarantined"
	}
	if id != "" {
		d.ID = id
	}
	d.Digest = pkg.Digest()
	if err := g.drafts.Put(ctx, d, 0, entry(kind, p, d, map[string]string{"policy": string(pol)})); errors.Is(err, release.ErrConflict) {
		return nil, err
	} else if err != nil {
		return nil, unavailable(err.Error())
	}
	g.log.Info().Str("draft", string(d.ID)).Str("principal", p.ID).Str("policy", string(pol)).Msg("Alert held")
	if d.State == release.StatePending {
		g.page(ctx, d)
	}
	return d, nil
}

// getAudit is the newest audit entries, from the archive (when this
// instance keeps it, audit.dir) and the Redis tail not yet archived; with
// subject, only those about one alert, source or operator. For operators,
// and API principals of kind operator.
func (g *Gateway) getAudit(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if p.Operator() == nil && p.Kind != "operator" {
		return forbidden("audit", p.ID+" may not read the audit")
	}
	n := 100
	if v := r.URL.Query().Get("limit"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil || n < 1 || n > 1000 {
			return badRequest("limit", "must be 1 to 1000")
		}
	}
	subject := r.URL.Query().Get("subject")
	keep := func(line string) bool {
		_, body, err := audit.ParseLine(line)
		return err == nil && (subject == "" || strings.Contains(body, `"subject":`+strconv.Quote(subject)))
	}
	k := audit.KeysFor(g.cfg.Redis.KeyPrefix)
	// The newest lines of the Redis tail: the last n, or with a subject the
	// last 10,000 searched (the rest is archived, or — without audit.dir —
	// older than an answer needs).
	from := int64(-n)
	if subject != "" {
		from = -10000
	}
	tail, err := g.rdb.LRange(r.Context(), k.Log, from, -1).Result()
	if err != nil {
		return unavailable(err.Error())
	}
	tail = slices.DeleteFunc(tail, func(l string) bool { return !keep(l) })
	lines := tail[max(0, len(tail)-n):]
	if len(lines) < n && g.cfg.Audit.Dir != "" {
		old, err := audit.Recent(g.cfg.Audit.Dir, n-len(lines), keep)
		if err != nil {
			return unavailable("cannot read the audit archive")
		}
		// The keeper may have archived lines still in this tail read.
		if len(lines) > 0 && len(old) > 0 {
			first, _, _ := audit.ParseLine(lines[0])
			old = slices.DeleteFunc(old, func(l string) bool { s, _, _ := audit.ParseLine(l); return s >= first })
		}
		lines = append(old, lines...)
	}
	out := []json.RawMessage{}
	for _, l := range lines {
		seq, body, _ := audit.ParseLine(l)
		out = append(out, json.RawMessage(fmt.Sprintf(`{"seq":%d,"entry":%s}`, seq, body)))
	}
	answer := map[string]any{"entries": out}
	if cp := g.lastCheckpoint(); cp != nil {
		answer["checkpoint"] = cp
	}
	writeJSON(w, http.StatusOK, answer)
	return nil
}

// checkpointView is the keeper's latest checkpoint as the audit answer
// shows it: which entry it covers, when and by whom it was signed. Only
// `tocsin audit verify` with the public key checks it.
type checkpointView struct {
	Seq    int64     `json:"seq"`
	Time   time.Time `json:"time"`
	Signer string    `json:"signer"`
}

// lastCheckpoint reads the keeper's latest checkpoint, nil if none.
func (g *Gateway) lastCheckpoint() *checkpointView {
	if g.cfg.Audit.Dir == "" {
		return nil
	}
	b, err := os.ReadFile(filepath.Join(g.cfg.Audit.Dir, "latest.checkpoint"))
	if err != nil {
		return nil
	}
	text, sig, _ := strings.Cut(string(b), "\n\n")
	c, err := audit.ParseCheckpoint(text + "\n")
	if err != nil {
		return nil
	}
	signer := ""
	if f := strings.Fields(sig); len(f) > 1 {
		signer = f[1] // "— name base64"
	}
	return &checkpointView{Seq: c.Seq, Time: c.Time, Signer: signer}
}

// draftRetracted moves a released draft to retracted when its alert is.
func (g *Gateway) draftRetracted(ctx context.Context, id alert.ID, p *config.Principal, reason string) {
	if g.drafts == nil {
		return
	}
	_, err := g.drafts.Change(ctx, id, func(d *release.Draft) (audit.Entry, error) {
		to, err := release.Next(d.State, release.ActRetract)
		if err != nil {
			return audit.Entry{}, err
		}
		d.State, d.Updated, d.Reason, d.ReasonBy = to, time.Now(), reason, p.ID
		return entry("draft.retracted", p, d, map[string]string{"reason": reason}), nil
	})
	if err != nil && !errors.Is(err, release.ErrNotFound) {
		g.log.Warn().Err(err).Str("alert_id", string(id)).Msg("Draft not marked retracted (the alert is)")
	}
}

// operatorGroup names operators as phone targets ("~operators.ben")
// (routing.OperatorGroup).
const operatorGroup = routing.OperatorGroup

// page tells the on-duty approvers who may approve d (its zones, not its
// author) on the configured channels that an alert waits for them: a notice
// through Tocsin's own SMS and voice routes, never anything of the alert
// itself beyond its event and id.
func (g *Gateway) page(ctx context.Context, d *release.Draft) {
	if len(g.cfg.Release.Page) == 0 {
		return
	}
	var targets []alert.Target
	for i := range g.cfg.Operators {
		o := &g.cfg.Operators[i]
		if !o.OnDuty || o.Phone == "" || !o.Has(config.RoleApprover) || o.ID == d.Author {
			continue
		}
		who := release.Actor{ID: o.ID, Zones: o.Zones, Approver: true, Person: true, SteppedUp: true}
		if release.Check(d, release.ActReturn, who) != nil { // outside their zones
			continue
		}
		for _, k := range g.cfg.Release.Page {
			if g.delivery.Has(k) {
				targets = append(targets, alert.Target{Kind: k, ID: operatorGroup + "." + o.ID})
			}
		}
	}
	if len(targets) == 0 {
		g.log.Warn().Str("draft", string(d.ID)).Msg("Nobody on duty to page for a pending alert")
		return
	}
	now := time.Now()
	a := &alert.Alert{ID: newID(now), Principal: "system", Source: "release", Status: alert.StatusActual, MsgType: "Alert",
		Event: "Freigabe nötig / Approval needed", Severity: alert.SeverityMinor, Urgency: alert.UrgencyImmediate,
		Headline: fmt.Sprintf("Tocsin: %q (%s) wartet auf Freigabe / waits for approval", d.Package.Event, d.ID),
		Zones:    d.Package.Zones, Channels: g.cfg.Release.Page, Sent: now.UTC(), Expires: now.Add(g.cfg.Release.ApprovalTTL).UTC()}
	a.Priority = alert.PriorityOf(a.Severity, a.Urgency)
	if _, err := g.q.Enqueue(ctx, priority.Plan{Alert: a, Fingerprint: "page\x00" + string(d.ID), Targets: targets}); err != nil {
		g.log.Error().Err(err).Str("draft", string(d.ID)).Msg("Approvers not paged")
		return
	}
	g.log.Info().Str("draft", string(d.ID)).Int("pages", len(targets)).Msg("On-duty approvers paged")
}

// settleDrafts, every few seconds until ctx ends, expires the drafts whose
// alert expired before release and completes the live ones whose alert is
// done, so the audit records it even if nobody looks.
func (g *Gateway) settleDrafts(ctx context.Context) {
	if g.drafts == nil {
		return
	}
	stop := delivery.Every(ctx, 5*time.Second, func(ctx context.Context) {
		ds, err := g.drafts.List(ctx, 1000)
		if err != nil {
			return
		}
		for _, d := range ds {
			g.expireIfDue(ctx, d)
			g.completeIfDone(ctx, d)
		}
	})
	<-ctx.Done()
	stop()
}

// channelHealth is one channel kind's health as the dashboard shows it.
type channelHealth struct {
	Kind alert.Kind `json:"kind"`
	// Ready is how many jobs wait on the kind's lane.
	Ready int64 `json:"ready"`
}

// getChannelHealth answers GET /v1/health/channels: each channel kind's
// waiting jobs, and the breakers (a target, a controller, a provider
// account) not closed on this instance.
func (g *Gateway) getChannelHealth(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	out := []channelHealth{}
	for _, k := range g.Kinds() {
		n, err := g.queueFor(k).Depth(r.Context(), k)
		if err != nil {
			return unavailable("cannot read the queue right now")
		}
		out = append(out, channelHealth{Kind: k, Ready: n})
	}
	open := g.m.openBreakers()
	if open == nil {
		open = map[string]string{}
	}
	// The probes' outcomes are in Redis too; without them the rest still
	// answers.
	probes, err := g.probeResults(r.Context())
	if err != nil {
		probes = []ProbeResult{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": out, "breakers": open, "probes": probes})
	return nil
}

// capPreview is one dispatch centre's CAP message as a release would send
// it (before its XML signature).
type capPreview struct {
	Centre string `json:"centre"`
	XML    string `json:"xml"`
}

// getDraftCAP answers GET /v1/drafts/{id}/cap: the CAP 1.2 document each
// dispatch centre the package reaches would get. Not part of the digest:
// its identifier and time are the release's.
func (g *Gateway) getDraftCAP(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	d, _, err := g.drafts.Get(r.Context(), alert.ID(r.PathValue("id")))
	if err != nil || !g.mayRead(p, d) {
		return notFound("no such draft")
	}
	author := g.principalByID(d.Author)
	if author == nil {
		return conflict(fmt.Sprintf("the author %q is no longer configured", d.Author))
	}
	_, a, err := g.compose(requestOf(&d.Package), author, d.Created)
	if err != nil {
		return err
	}
	a.ID = d.ID
	names := map[string]string{}
	for _, z := range g.cfg.Zones {
		if z.Name != "" {
			names[z.ID] = z.Name
		}
	}
	out := []capPreview{}
	for _, t := range g.route(a) {
		if t.Kind != alert.KindDispatch {
			continue
		}
		doc, err := cap.Encode(dispatch.Original(alert.Delivery{Alert: a, Target: t, Message: alert.MessageAlert}, g.cfg.Dispatch.Sender, names))
		if err != nil {
			return err
		}
		out = append(out, capPreview{Centre: t.ID, XML: string(doc)})
	}
	writeJSON(w, http.StatusOK, map[string]any{"centres": out})
	return nil
}

// auditCheck is the answer of GET /v1/audit/verify.
type auditCheck struct {
	OK             bool      `json:"ok"`
	Entries        int64     `json:"entries"`
	VerifiedTo     int64     `json:"verifiedTo"`
	CheckpointTime time.Time `json:"checkpointTime,omitzero"`
	Signer         string    `json:"signer,omitempty"`
	Unanchored     int64     `json:"unanchored"`
	// Error names the first bad entry when the chain does not verify.
	Error string `json:"error,omitempty"`
}

// getAuditVerify replays the archive and the Redis tail against the signed
// checkpoints with the configured public key, as tocsin audit verify does.
func (g *Gateway) getAuditVerify(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if p.Operator() == nil && p.Kind != "operator" {
		return forbidden("audit", p.ID+" may not read the audit")
	}
	if g.cfg.Audit.Dir == "" || g.cfg.Audit.VerifierKey == "" {
		return notFound("set audit.dir and audit.verifier_key to verify the audit here")
	}
	tail, err := g.rdb.LRange(r.Context(), audit.KeysFor(g.cfg.Redis.KeyPrefix).Log, 0, -1).Result()
	if err != nil {
		return unavailable(err.Error())
	}
	rep, err := audit.Verify(g.cfg.Audit.Dir, tail, "", g.cfg.Audit.VerifierKey)
	out := auditCheck{OK: err == nil && rep.VerifiedTo > 0, Entries: rep.Entries, VerifiedTo: rep.VerifiedTo,
		CheckpointTime: rep.CheckpointTime, Signer: rep.Signer, Unanchored: rep.Unanchored}
	if err != nil {
		out.Error = err.Error()
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}
