package gateway

import (
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/priority"
)

// capKey is the idempotency key a CAP message is enqueued under, so a repeat
// of it is a duplicate and later messages can find it by reference.
func capKey(sender, identifier string) string { return "cap:" + sender + "," + identifier }

// zoneShape is a zone as CAP areas are matched against it.
type zoneShape struct {
	id       string
	geocodes map[string]bool // "valuename=value", valueName lower-cased
	polygon  []cap.Point
}

func zoneShapes(zs []config.Zone) []zoneShape {
	var out []zoneShape
	for _, z := range zs {
		s := zoneShape{id: z.ID, geocodes: map[string]bool{}}
		for _, gc := range z.Geocodes {
			n, v, _ := strings.Cut(gc, "=")
			s.geocodes[strings.ToLower(strings.TrimSpace(n))+"="+strings.TrimSpace(v)] = true
		}
		s.polygon, _ = cap.ParsePolygon(z.Polygon)
		out = append(out, s)
	}
	return out
}

// capZones are the configured zones a CAP area hits: by a geocode the zone
// lists, or by a polygon or circle that overlaps the zone's outline.
func (g *Gateway) capZones(areas []cap.Area) []string {
	var hit []string
	for _, z := range g.shapes {
		for _, ar := range areas {
			if z.hitBy(ar) {
				hit = append(hit, z.id)
				break
			}
		}
	}
	return hit
}

func (z zoneShape) hitBy(ar cap.Area) bool {
	for _, gc := range ar.Geocodes {
		if z.geocodes[strings.ToLower(strings.TrimSpace(gc.ValueName))+"="+strings.TrimSpace(gc.Value)] {
			return true
		}
	}
	if len(z.polygon) == 0 {
		return false
	}
	for _, p := range ar.Polygons {
		if pts, err := cap.ParsePolygon(p); err == nil && cap.PolygonsIntersect(pts, z.polygon) {
			return true
		}
	}
	for _, c := range ar.Circles {
		if centre, km, err := cap.ParseCircle(c); err == nil && cap.CircleIntersectsPolygon(centre, km, z.polygon) {
			return true
		}
	}
	return false
}

// capProblem turns parse problems into a 400 that names the first element
// at fault and lists them all.
func capProblem(err error) error {
	var ps cap.Problems
	if errors.As(err, &ps) && len(ps) > 0 {
		return badRequest(ps[0].Element, err.Error())
	}
	return badRequest("alert", err.Error())
}

// postCAP takes a CAP 1.2 document on POST /v1/alerts: through the same
// validation, authorisation, dedup and queue as JSON. An Alert is enqueued
// under its sender and identifier; an Update replaces what it references
// (fenced, its queued deliveries cancelled, anyone already reached told it is
// superseded) and is enqueued; a Cancel retracts what it references, and
// leaves a tombstone for a reference not seen yet, so the original is refused
// when it comes.
func (g *Gateway) postCAP(w http.ResponseWriter, r *http.Request, p *config.Principal, body []byte) error {
	doc, err := cap.Parse(body)
	if err != nil {
		return capProblem(err)
	}
	if certs := p.CAPCertificates(); len(certs) > 0 {
		verified, err := cap.VerifySignature(body, certs, time.Now())
		if err != nil {
			g.log.Warn().Str("principal", p.ID).Str("remote", r.RemoteAddr).Err(err).Msg("CAP document without a valid signature refused")
			return forbidden("cap_certs", fmt.Sprintf("principal %q must sign its CAP documents with a pinned certificate: %v", p.ID, err))
		}
		if doc, err = cap.Parse(verified); err != nil { // from here on, only what was signed
			return capProblem(err)
		}
	}
	switch doc.Status {
	case "Actual", "Exercise", "Test":
	default:
		return badRequest("alert/status", fmt.Sprintf("%s messages are not delivered: send Actual, Exercise or Test", doc.Status))
	}
	if doc.MsgType != "Cancel" { // a Cancel is a retraction: never limited
		if err := g.limit(p); err != nil {
			return err
		}
	}
	refs, _ := cap.ParseReferences(doc.References)
	switch doc.MsgType {
	case "Cancel":
		return g.capCancel(w, r, p, doc, refs)
	case "Ack", "Error":
		return badRequest("alert/msgType", doc.MsgType+" is not an alert; dispatch centres acknowledge at POST /v1/callbacks/cap/{centre}")
	}
	key := capKey(doc.Sender, doc.Identifier)
	req, err := g.capRequest(doc)
	if err != nil {
		return err
	}
	a, err := g.validate(req, p, time.Now())
	if err != nil {
		return err
	}
	a.MsgType = doc.MsgType
	var superseded []alert.ID
	if doc.MsgType == "Update" {
		for _, ref := range refs {
			id, err := g.q.Lookup(r.Context(), p.ID, capKey(ref.Sender, ref.Identifier))
			if err != nil || id == "" {
				continue
			}
			superseded = append(superseded, id)
			// The chain: the superseded alert and every unexpired one it replaced.
			if st, err := g.q.Status(r.Context(), id); err == nil {
				a.Supersedes = append(a.Supersedes, alert.Superseded{ID: id, Sent: st.Alert.Sent, Expires: st.Alert.Expires})
				for _, old := range st.Alert.Supersedes {
					if old.Expires.After(time.Now()) && !slices.ContainsFunc(a.Supersedes, func(x alert.Superseded) bool { return x.ID == old.ID }) {
						a.Supersedes = append(a.Supersedes, old)
					}
				}
			}
		}
	}
	_, err = g.accept(w, r, p, a, key, superseded, map[string]any{"supersedes": nonNil(superseded)})
	if err == errCancelledFirst {
		g.log.Warn().Str("principal", p.ID).Str("cap_sender", doc.Sender).Str("cap_identifier", doc.Identifier).
			Msg("CAP message refused: a Cancel for it arrived first")
		if err := g.q.Audit(r.Context(), priority.AuditEntry{At: time.Now().UTC(), Source: "principal:" + p.ID, EventID: doc.Identifier,
			Status: "refused", Reason: "CAP " + doc.MsgType + " from " + doc.Sender + " arrived after its Cancel"}); err != nil {
			g.log.Error().Err(err).Msg("Refusal not audited")
		}
		return conflict(fmt.Sprintf("CAP message %s from %s was cancelled before it arrived; it is not delivered", doc.Identifier, doc.Sender))
	}
	// The update was stored in the step that fenced what it replaces (accept).
	return err
}

// capRequest maps a CAP Alert or Update onto the JSON request, so both go
// through one validation: the most urgent info block (German preferred among
// equals) gives event, texts, severity, urgency and expiry; every block's
// areas give the zones.
func (g *Gateway) capRequest(doc *cap.Alert) (*alertRequest, error) {
	if len(doc.Infos) == 0 {
		return nil, badRequest("alert/info", "an "+doc.MsgType+" needs at least one <info>")
	}
	best := -1
	var bestPrio alert.Priority
	for i, in := range doc.Infos {
		sev, _ := alert.ParseSeverity(in.Severity)
		urg, _ := alert.ParseUrgency(in.Urgency)
		prio := alert.PriorityOf(sev, urg)
		de := strings.HasPrefix(strings.ToLower(in.Language), "de")
		if best < 0 || prio > bestPrio || prio == bestPrio && de && !strings.HasPrefix(strings.ToLower(doc.Infos[best].Language), "de") {
			best, bestPrio = i, prio
		}
	}
	in := doc.Infos[best]
	var areas []cap.Area
	for _, x := range doc.Infos {
		areas = append(areas, x.Areas...)
	}
	zones := g.capZones(areas)
	if len(zones) == 0 {
		return nil, badRequest("alert/info/area", "no configured zone is hit by these areas (zones match by geocode or by polygon)")
	}
	req := &alertRequest{
		Status: alert.Status(strings.ToLower(doc.Status)), Source: doc.Sender, Event: in.Event,
		Severity: in.Severity, Urgency: in.Urgency, Certainty: in.Certainty, Headline: in.Headline,
		Description: in.Description, Instruction: in.Instruction, Language: in.Language, Zones: zones,
	}
	// Every other language's block is kept, the most urgent of each: a
	// recipient gets the text in their own language (alert.InfoFor).
	order := make([]int, len(doc.Infos))
	for i := range order {
		order[i] = i
	}
	prio := func(i int) alert.Priority {
		sev, _ := alert.ParseSeverity(doc.Infos[i].Severity)
		urg, _ := alert.ParseUrgency(doc.Infos[i].Urgency)
		return alert.PriorityOf(sev, urg)
	}
	slices.SortStableFunc(order, func(i, j int) int { return int(prio(j)) - int(prio(i)) })
	seen := map[string]bool{strings.ToLower(in.Language): true}
	for _, i := range order {
		x := doc.Infos[i]
		if x.Language == "" {
			x.Language = "en-US" // CAP's default language
		}
		l := strings.ToLower(x.Language)
		if seen[l] || x.Headline == "" && x.Description == "" && x.Instruction == "" {
			continue
		}
		seen[l] = true
		req.Info = append(req.Info, alert.Info{Language: x.Language, Event: x.Event, Headline: x.Headline, Description: x.Description, Instruction: x.Instruction})
	}
	if in.Expires != nil {
		if !in.Expires.After(time.Now()) {
			return nil, badRequest(fmt.Sprintf("alert/info[%d]/expires", best), "has passed: the message is no longer in effect")
		}
		exp := in.Expires.Time
		req.Expires = &exp
	}
	return req, nil
}

// capCancel retracts every alert a CAP Cancel references, and leaves a
// tombstone for each reference not seen yet.
func (g *Gateway) capCancel(w http.ResponseWriter, r *http.Request, p *config.Principal, doc *cap.Alert, refs []cap.Reference) error {
	var retracted []alert.ID
	var tombstoned []string
	for _, ref := range refs {
		key := capKey(ref.Sender, ref.Identifier)
		id, err := g.q.Lookup(r.Context(), p.ID, key)
		if err != nil {
			return unavailable(err.Error())
		}
		if id == "" {
			if id, err = g.q.Tombstone(r.Context(), p.ID, key, doc.Identifier); err != nil {
				return unavailable(err.Error())
			}
		}
		if id == "" {
			g.log.Warn().Str("principal", p.ID).Str("cap_identifier", ref.Identifier).Msg("CAP Cancel before its message: tombstone left")
			tombstoned = append(tombstoned, ref.String())
			continue
		}
		st, err := g.status(r.Context(), string(id), p)
		if err != nil {
			return err
		}
		if st.Alert.Principal != p.ID && !p.Scopes.Retract {
			return forbidden("retract", fmt.Sprintf("principal %q may only cancel its own alerts", p.ID))
		}
		if st.State == "retracted" {
			continue
		}
		if err := g.retractAlert(r.Context(), id, "all_clear", strings.TrimSpace("CAP Cancel "+doc.Identifier+" "+doc.Note), p); err != nil {
			return err
		}
		retracted = append(retracted, id)
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"msgType": "Cancel", "retracted": nonNil(retracted), "tombstoned": nonNil(tombstoned)})
	return nil
}

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return slices.Clip(s)
}
