package gateway

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/priority"
	"github.com/tocsin-alert/tocsin/release"
)

// A trigger quarantined by maintenance waits for a person: released as an
// alert (a draft in their name, through their release policy) or dismissed
// with a reason. Either handles it once.

// handleScript marks a quarantined trigger handled, once, and appends the
// audit entry in the same step.
// KEYS: handled marker, audit seq, audit log. ARGV: marker value, ttl ms, body.
// Returns the entry's number, or 0 if it was handled before.
var handleScript = redis.NewScript(audit.Lua + `
if not redis.call('SET', KEYS[1], ARGV[1], 'NX', 'PX', ARGV[2]) then return 0 end
return tocsin_audit(KEYS[2], KEYS[3], ARGV[3])
`)

// handledKey marks a quarantined trigger as released or dismissed.
func (g *Gateway) handledKey(source, event string) string {
	return g.cfg.Redis.KeyPrefix + ":{audit}:trigger-handled:" + source + ":" + event // in the audit's slot: one script writes both
}

// quarantined finds a quarantined trigger in the trigger audit.
func (g *Gateway) quarantined(ctx context.Context, source, event string) (*priority.AuditEntry, error) {
	log, err := g.q.AuditLog(ctx, 10000, false)
	if err != nil {
		return nil, unavailable(err.Error())
	}
	for i := range log {
		if e := &log[i]; e.Source == source && e.EventID == event && e.Status == "quarantined" {
			return e, nil
		}
	}
	return nil, notFound(fmt.Sprintf("no quarantined trigger %s from %s among the recent decisions", event, source))
}

// markHandled marks the trigger handled with its audit entry; a conflict if
// someone did already.
func (g *Gateway) markHandled(ctx context.Context, e *priority.AuditEntry, how string, entry audit.Entry) error {
	k := audit.KeysFor(g.cfg.Redis.KeyPrefix)
	n, err := handleScript.Run(ctx, g.rdb, []string{g.handledKey(e.Source, e.EventID), k.Seq, k.Log},
		how, (7 * 24 * time.Hour).Milliseconds(), entry.Body()).Int64()
	if err != nil {
		return unavailable(err.Error())
	}
	if n == 0 {
		v, _ := g.rdb.Get(ctx, g.handledKey(e.Source, e.EventID)).Result()
		return conflict("this trigger was handled already: " + v)
	}
	return nil
}

type dismissRequest struct {
	Reason string `json:"reason"`
}

// dismissTrigger dismisses a quarantined trigger with a reason.
func (g *Gateway) dismissTrigger(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if !p.Scopes.Maintenance {
		return forbidden("maintenance", p.ID+" may not handle quarantined triggers")
	}
	var req dismissRequest
	if err := readJSON(r, &req); err != nil {
		return err
	}
	if strings.TrimSpace(req.Reason) == "" || len(req.Reason) > 2000 {
		return badRequest("reason", "required: why the trigger is dismissed (at most 2000 characters)")
	}
	e, err := g.quarantined(r.Context(), r.PathValue("source"), r.PathValue("event"))
	if err != nil {
		return err
	}
	if e.Zone != "" && !p.Scopes.AllowsZone(e.Zone) {
		return forbidden("zones", fmt.Sprintf("%s may not act on zone %q", p.ID, e.Zone))
	}
	entry := audit.Entry{Time: time.Now(), Kind: "trigger.dismissed", Actor: actorName(p), Subject: e.Source,
		Detail: map[string]string{"event_id": e.EventID, "trigger": e.Trigger, "zone": e.Zone, "reason": req.Reason}}
	if err := g.markHandled(r.Context(), e, "dismissed by "+p.ID+": "+req.Reason, entry); err != nil {
		return err
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "dismissed"})
	return nil
}

// releaseTrigger releases a quarantined trigger as an alert: a draft from
// the trigger's template and zone in the person's name, submitted through
// their release policy (so it waits for a second person where that is the
// rule).
func (g *Gateway) releaseTrigger(w http.ResponseWriter, r *http.Request, p *config.Principal) error {
	if !p.Can(config.RoleAuthor) {
		return forbidden("role", p.ID+" is not a signed-in author: a quarantined trigger is released as an alert in a person's name")
	}
	e, err := g.quarantined(r.Context(), r.PathValue("source"), r.PathValue("event"))
	if err != nil {
		return err
	}
	tp := g.cfg.Triggers.Template(e.Trigger)
	if tp == nil {
		return conflict(fmt.Sprintf("no template for trigger %q any more", e.Trigger))
	}
	now := time.Now()
	req := &draftRequest{alertRequest: alertRequest{Status: tp.Status, Source: "trigger/" + e.Trigger, Event: tp.Event,
		Severity: tp.Severity, Urgency: tp.Urgency, Headline: tp.Headline, Description: tp.Description,
		Instruction: tp.Instruction, Zones: []string{e.Zone}, Channels: tp.Channels}}
	pkg, a, err := g.compose(req, p, now)
	if err != nil {
		return err
	}
	// The draft's id comes from the trigger: a second release finds it.
	d := &release.Draft{ID: triggerDraftID(e.At, e.Source, e.EventID), State: release.StateDraft, Author: p.ID, Editor: p.ID,
		Created: now, Updated: now, Package: *pkg, Needed: g.cfg.Release.ApproversFor(pkg.Zones, a.Severity)}
	if err := release.Check(d, release.ActSubmit, g.actor(r.Context(), p)); err != nil {
		return refusal(err)
	}
	d.Digest = pkg.Digest()
	switch err := g.drafts.Put(r.Context(), d, 0, entry("draft.created", p, d, map[string]string{"from_trigger": e.Source + "/" + e.EventID})); {
	case errors.Is(err, release.ErrConflict):
		return conflict("this trigger was released already as draft " + string(d.ID))
	case err != nil:
		return unavailable(err.Error())
	}
	handled := audit.Entry{Time: now, Kind: "trigger.released", Actor: actorName(p), Subject: e.Source,
		Detail: map[string]string{"event_id": e.EventID, "trigger": e.Trigger, "zone": e.Zone, "draft": string(d.ID)}}
	if err := g.markHandled(r.Context(), e, "released by "+p.ID+" as "+string(d.ID), handled); err != nil {
		return err // dismissed meanwhile: the draft stays unsubmitted
	}
	d, err = g.act(r.Context(), d.ID, release.ActSubmit, p, actionRequest{})
	if err != nil && !errors.Is(err, release.ErrConflict) {
		return refusal(err)
	}
	w.Header().Set("Location", "/v1/drafts/"+string(d.ID))
	writeJSON(w, http.StatusCreated, g.draftView(d))
	return nil
}

// triggerView is a trigger decision with, for a quarantined one, whether
// and how it was handled.
type triggerView struct {
	priority.AuditEntry
	Handled string `json:"handled,omitempty"`
}

// handledOf says how each quarantined trigger in es was handled.
func (g *Gateway) handledOf(ctx context.Context, es []priority.AuditEntry) []triggerView {
	out := make([]triggerView, len(es))
	var keys []string
	var at []int
	for i, e := range es {
		out[i].AuditEntry = e
		if e.Status == "quarantined" && g.rdb != nil {
			keys = append(keys, g.handledKey(e.Source, e.EventID))
			at = append(at, i)
		}
	}
	if len(keys) == 0 {
		return out
	}
	vs, err := g.rdb.MGet(ctx, keys...).Result()
	if err != nil {
		return out
	}
	for j, v := range vs {
		if s, ok := v.(string); ok {
			out[at[j]].Handled = s
		}
	}
	return out
}
