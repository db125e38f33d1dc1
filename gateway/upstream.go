package gateway

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/config"
)

// postUpstream takes CAP from a central Tocsin (a principal of kind
// upstream): the central lists this site gateway as a dispatch centre, so
// the request is exactly what its dispatch adapter sends any centre — the
// document XML-signed with the central's certificate, the body HMAC-signed
// with the key both share. It is then handled like any CAP a dispatch
// centre posts (alerts, Updates, Cancels; a repeat is a duplicate), and
// each message this gateway accepted is acknowledged with a CAP Ack posted
// back to the central, which marks its delivery to this site delivered.
//
// So a site keeps its own Redis, broker and sirens, and when the central
// (or its Redis, or the network to it) is gone, its building triggers still
// sound its sirens; the hierarchy needs no protocol of its own.
func (g *Gateway) postUpstream(w http.ResponseWriter, r *http.Request) {
	p := g.principalByID(r.PathValue("upstream"))
	if p == nil || p.Kind != "upstream" {
		writeProblem(w, notFound("no upstream "+r.PathValue("upstream")))
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cap.MaxSize))
	if err != nil {
		writeProblem(w, &Problem{Type: "urn:tocsin:problem:too-large", Title: "Body too large", Status: http.StatusRequestEntityTooLarge})
		return
	}
	if err := dispatch.Verify(p.Upstream.HMACKey(), r.Header, body, time.Now()); err != nil {
		g.log.Warn().Str("upstream", p.ID).Str("remote", r.RemoteAddr).Err(err).Msg("Upstream CAP with a bad signature refused")
		writeProblem(w, forbidden("", err.Error()))
		return
	}
	// Only what the central signed counts, for the Ack as for the alert.
	signed, err := cap.VerifySignature(body, p.CAPCertificates(), time.Now())
	if err != nil {
		g.log.Warn().Str("upstream", p.ID).Str("remote", r.RemoteAddr).Err(err).Msg("Upstream CAP without a valid XML signature refused")
		writeProblem(w, forbidden("cap_certs", fmt.Sprintf("upstream %q must sign its CAP with its pinned certificate: %v", p.ID, err)))
		return
	}
	doc, err := cap.Parse(signed)
	if err != nil {
		writeProblem(w, badRequest("alert", err.Error()))
		return
	}
	// The central's probe (a CAP Test message) is only acknowledged: there is
	// nothing to deliver, and the Ack proves the path both ways.
	if doc.Status == "Test" && strings.HasPrefix(doc.Identifier, dispatch.ProbePrefix) {
		w.WriteHeader(http.StatusAccepted)
		go g.ackUpstream(p, doc) // ends when acked or after its tries
		return
	}
	r = r.WithContext(audit.WithActor(r.Context(), actorName(p)))
	rec := &statusWriter{ResponseWriter: w}
	if err := g.postCAP(rec, r, p, body); err != nil {
		var prob *Problem
		if !errors.As(err, &prob) {
			g.log.Error().Err(err).Str("upstream", p.ID).Msg("Upstream CAP not taken")
			prob = &Problem{Type: "urn:tocsin:problem:internal", Title: "Internal error", Status: 500}
		}
		writeProblem(w, prob)
		return
	}
	if rec.status < 200 || rec.status > 299 {
		return
	}
	// An alert this site holds for its own people (release policy approval
	// or quarantine) is not delivered yet: no Ack, and the central's ledger
	// shows the site sent, not delivered.
	if doc.MsgType != "Cancel" && g.policyFor(p) != config.PolicyAuto {
		return
	}
	// The Ack goes back on its own: the central already has its 2xx.
	go g.ackUpstream(p, doc) // ends when acked or after its tries
}

// ackUpstream posts a CAP Ack of doc to the central, HMAC-signed like the
// central's own requests, trying for about two minutes.
func (g *Gateway) ackUpstream(p *config.Principal, doc *cap.Alert) {
	u := p.Upstream
	sender := u.Sender
	if sender == "" {
		sender = g.cfg.Dispatch.Sender
	}
	if sender == "" {
		host, _ := os.Hostname()
		sender = "tocsin@" + host
	}
	now := time.Now()
	ack := &cap.Alert{Identifier: "ack-" + string(newID(now)), Sender: sender, Sent: cap.Time{Time: now}, Status: doc.Status,
		MsgType: "Ack", Scope: "Public", References: cap.JoinReferences(doc.Ref())}
	body, err := cap.Encode(ack)
	if err != nil {
		g.log.Error().Err(err).Msg("Upstream Ack not encoded")
		return
	}
	client := &http.Client{Timeout: 10 * time.Second}
	wait := 250 * time.Millisecond
	for try := 1; try <= 12; try++ {
		ts := time.Now()
		err = adapters.Post(context.Background(), client, "upstream ack to "+p.ID, u.AckURL, body, map[string]string{
			"Content-Type": cap.ContentType, dispatch.HeaderTimestamp: strconv.FormatInt(ts.Unix(), 10), dispatch.HeaderSignature: dispatch.Sign(u.HMACKey(), ts, body),
		})
		if err == nil {
			return
		}
		time.Sleep(wait)
		wait = min(2*wait, 20*time.Second)
	}
	g.log.Warn().Err(err).Str("upstream", p.ID).Str("identifier", doc.Identifier).Msg("CAP Ack not delivered to the central; the alert is in force here")
}

// statusWriter remembers the status a handler answered.
type statusWriter struct {
	http.ResponseWriter
	status int
}

func (s *statusWriter) WriteHeader(code int) {
	s.status = code
	s.ResponseWriter.WriteHeader(code)
}

func (s *statusWriter) Write(b []byte) (int, error) {
	if s.status == 0 {
		s.status = http.StatusOK
	}
	return s.ResponseWriter.Write(b)
}
