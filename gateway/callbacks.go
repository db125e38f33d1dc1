package gateway

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/twilio/twilio-go/client"

	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
)

// twilioStates maps Twilio's message and call statuses to ledger states.
var twilioStates = map[string]alert.State{
	// Messages.
	"accepted": alert.StateSent, "queued": alert.StateSent, "sending": alert.StateSent, "sent": alert.StateSent,
	"delivered": alert.StateDelivered, "read": alert.StateDelivered,
	"undelivered": alert.StateFailed, "failed": alert.StateFailed,
	// Calls.
	"initiated": alert.StateSent, "ringing": alert.StateSent, "in-progress": alert.StateSent, "answered": alert.StateSent,
	"completed": alert.StateDelivered,
	"busy":      alert.StateFailed, "no-answer": alert.StateFailed, "canceled": alert.StateFailed,
}

// twilioCallback takes Twilio's status callbacks. The X-Twilio-Signature is
// checked with the account's auth token against the configured public URL;
// the delivery (alert, target, message) is named by the URL's last segment,
// which the signature covers. Late, repeated and out-of-order callbacks are
// fine: the ledger only moves forward.
func (g *Gateway) twilioCallback(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxBody)
	if err := r.ParseForm(); err != nil {
		writeProblem(w, badRequest("", "cannot read the form"))
		return
	}
	// An account without a token (never configured, or its environment
	// variable empty) accepts no callback: a signature made with an empty
	// key proves nothing.
	token := g.twilioTokens[r.PostForm.Get("AccountSid")]
	ok := token != ""
	params := map[string]string{}
	for k, v := range r.PostForm {
		params[k] = v[0]
	}
	url := strings.TrimRight(g.cfg.PublicURL, "/") + r.URL.RequestURI()
	if v := client.NewRequestValidator(token); !ok || !v.Validate(url, params, r.Header.Get("X-Twilio-Signature")) {
		g.log.Warn().Str("remote", r.RemoteAddr).Str("path", r.URL.Path).Msg("Twilio callback with a bad signature refused")
		writeProblem(w, forbidden("", "bad X-Twilio-Signature"))
		return
	}
	status := r.PostForm.Get("MessageStatus")
	if status == "" {
		status = r.PostForm.Get("CallStatus")
	}
	st, known := twilioStates[status]
	id, t, msg, err := alert.ParseDeliveryID(r.PathValue("delivery"))
	if !known || err != nil {
		writeProblem(w, badRequest("MessageStatus", "unknown status or delivery"))
		return
	}
	if _, err := g.q.Callback(r.Context(), id, t, msg, st); err != nil {
		writeProblem(w, unavailable(err.Error())) // Twilio retries callbacks on 5xx
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// probeCentre is the centre a probe identifier ("<centre>.<hex>", after
// the prefix) was sent to; centre ids may contain dots.
func probeCentre(s string) string {
	if i := strings.LastIndexByte(s, '.'); i > 0 {
		return s[:i]
	}
	return ""
}

// capAck takes a dispatch centre's CAP Ack: signed like what Tocsin sends
// (X-Tocsin-Timestamp, X-Tocsin-Signature, the centre's key), msgType Ack,
// referencing messages Tocsin sent that centre. Each referenced delivery
// moves to delivered; repeats are harmless.
func (g *Gateway) capAck(w http.ResponseWriter, r *http.Request) {
	centre := r.PathValue("centre")
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, cap.MaxSize))
	if err != nil {
		writeProblem(w, &Problem{Type: "urn:tocsin:problem:too-large", Title: "Body too large", Status: http.StatusRequestEntityTooLarge})
		return
	}
	key, ok := g.dispatchKeys[centre]
	if !ok {
		writeProblem(w, notFound("no dispatch centre "+centre))
		return
	}
	if err := dispatch.Verify(key, r.Header, body, time.Now()); err != nil {
		g.log.Warn().Str("centre", centre).Str("remote", r.RemoteAddr).Err(err).Msg("CAP Ack with a bad signature refused")
		writeProblem(w, forbidden("", err.Error()))
		return
	}
	doc, err := cap.Decode(bytes.NewReader(body))
	if err != nil {
		writeProblem(w, badRequest("alert", err.Error()))
		return
	}
	if doc.MsgType != "Ack" {
		writeProblem(w, badRequest("msgType", "must be Ack: a dispatch centre acknowledges here, it sends alerts to POST /v1/alerts"))
		return
	}
	refs, err := cap.ParseReferences(doc.References)
	if err != nil || len(refs) == 0 {
		writeProblem(w, badRequest("references", "must name the acknowledged message as sender,identifier,sent"))
		return
	}
	for _, ref := range refs {
		if probe, ok := strings.CutPrefix(ref.Identifier, dispatch.ProbePrefix); ok && ref.Sender == g.cfg.Dispatch.Sender && probeCentre(probe) == centre {
			if err := g.probeAcked(r.Context(), ref.Identifier); err != nil {
				writeProblem(w, unavailable(err.Error()))
				return
			}
			continue
		}
		id, t, msg, err := alert.ParseDeliveryID(strings.TrimSuffix(ref.Identifier, dispatch.AllClearSuffix))
		if ref.Sender != g.cfg.Dispatch.Sender || err != nil || t.Kind != alert.KindDispatch || t.ID != centre {
			writeProblem(w, badRequest("references", "references "+ref.Identifier+", which Tocsin did not send to "+centre))
			return
		}
		if _, err := g.q.Callback(r.Context(), id, t, msg, alert.StateDelivered); err != nil {
			writeProblem(w, unavailable(err.Error()))
			return
		}
	}
	w.WriteHeader(http.StatusNoContent)
}
