// Package voice delivers alerts and their retractions as phone calls through
// Twilio's Calls API (twilio-go): TwiML <Say> in the recipient's language,
// repeated. Twilio's 201 means the call is queued; its outcome arrives by
// status callback. Calls of a retracted alert still queued or ringing are
// cancelled at Twilio (CancelAlert).
package voice

import (
	"context"
	"encoding/xml"
	"errors"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"
	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/alert"
)

// Config configures one caller on one Twilio account.
type Config struct {
	Account string
	Twilio  twilioapi.Account
	From    string
	// Rate is calls per second for this caller.
	Rate float64
	// Voice is the <Say> voice; Repeat how often the text is spoken.
	Voice  string
	Repeat int
	// CallbackURL is the public URL status callbacks go to.
	CallbackURL string
	Recipients  func(targetID string) (adapters.Recipient, bool)
	Location    *time.Location
	// Texts, if set, are the configured texts; otherwise the defaults in Location.
	Texts *alert.Texts
	Log   zerolog.Logger
}

// Notifier is the voice adapter for one caller.
type Notifier struct {
	cfg    Config
	client *twilioapi.Client

	mu    sync.Mutex
	calls map[alert.ID][]placed // original calls, for CancelAlert
}

type placed struct {
	sid string
	at  time.Time
}

var (
	_ adapters.Adapter = (*Notifier)(nil)
	_ adapters.Router  = (*Notifier)(nil)
	_ adapters.Pending = (*Notifier)(nil)
)

// New builds the adapter.
func New(cfg Config) (*Notifier, error) {
	if cfg.From == "" {
		return nil, errors.New("voice: a from number is required")
	}
	if cfg.Repeat < 1 {
		cfg.Repeat = 1
	}
	c, err := twilioapi.New(cfg.Twilio)
	if err != nil {
		return nil, err
	}
	return &Notifier{cfg: cfg, client: c, calls: map[alert.ID][]placed{}}, nil
}

// Route is the account's breaker and the caller's pace.
func (n *Notifier) Route(alert.Delivery) adapters.Route {
	return adapters.Route{Breaker: "twilio/" + n.cfg.Account, Sender: "twilio/" + n.cfg.Account + "/voice/" + n.cfg.From, Rate: n.cfg.Rate}
}

// Pending says a nil Deliver means the call is queued at Twilio.
func (n *Notifier) Pending() bool { return true }

// languages maps Tocsin's text languages to <Say> language tags.
var languages = map[string]string{"de": "de-DE", "en": "en-US"}

// TwiML is the call's script: the text, spoken Repeat times.
func TwiML(text, voice, lang string, repeat int) string {
	var b strings.Builder
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?><Response><Say voice="`)
	xml.EscapeText(&b, []byte(voice))
	fmt.Fprintf(&b, `" language="%s" loop="%d">`, languages[alert.TextLanguage(lang)], repeat)
	xml.EscapeText(&b, []byte(text))
	b.WriteString(`</Say></Response>`)
	return b.String()
}

// Deliver asks Twilio to place the call.
func (n *Notifier) Deliver(ctx context.Context, d alert.Delivery) error {
	if d.Target.Kind != alert.KindVoice {
		return adapters.Permanent(fmt.Errorf("voice: target %s is not a voice recipient", d.Target.Key()))
	}
	r, ok := n.cfg.Recipients(d.Target.ID)
	if !ok {
		return adapters.Permanent(fmt.Errorf("voice: no recipient %q in the configuration", d.Target.ID))
	}
	if time.Until(d.Expires) < time.Second {
		return adapters.NotAttempted(adapters.Permanent(fmt.Errorf("voice: %w", adapters.ErrExpired)))
	}
	tx := n.cfg.Texts
	if tx == nil {
		tx = &alert.Texts{Location: n.cfg.Location}
	}
	text := tx.Text(d.Alert, alert.KindVoice, d.Message, d.Reason, r.Language)
	p := (&api.CreateCallParams{}).SetTo(r.Phone).SetFrom(n.cfg.From).
		SetTwiml(TwiML(text, n.cfg.Voice, r.Language, n.cfg.Repeat)).
		SetStatusCallback(n.cfg.CallbackURL + "/" + url.PathEscape(d.ID)).
		SetStatusCallbackEvent([]string{"initiated", "ringing", "answered", "completed"}).
		SetTimeout(30)
	call, err := twilioapi.Do(ctx, func() (*api.ApiV2010Call, error) { return n.client.Api.CreateCall(p) })
	if adapters.IsNotAttempted(err) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err != nil {
		return n.client.Classify("twilio: create call", err)
	}
	if d.Message == alert.MessageAlert && call.Sid != nil {
		n.mu.Lock()
		n.calls[d.Alert.ID] = append(n.calls[d.Alert.ID], placed{sid: *call.Sid, at: time.Now()})
		n.mu.Unlock()
	}
	return nil
}

// CancelAlert cancels at Twilio every call of alert id this adapter placed
// that may still be queued or ringing. Twilio ignores the cancel for calls
// already answered; those people hear the retraction call after.
func (n *Notifier) CancelAlert(id alert.ID) {
	n.mu.Lock()
	calls := n.calls[id]
	delete(n.calls, id)
	// Forget calls long over, of any alert.
	for k, cs := range n.calls {
		if len(cs) > 0 && time.Since(cs[len(cs)-1].at) > 10*time.Minute {
			delete(n.calls, k)
		}
	}
	n.mu.Unlock()
	cancelled := 0
	for _, c := range calls {
		if _, err := n.client.Api.UpdateCall(c.sid, (&api.UpdateCallParams{}).SetStatus("canceled")); err == nil {
			cancelled++
		} else {
			n.cfg.Log.Debug().Err(n.client.Classify("twilio: cancel call", err)).Msg("Call not cancelled")
		}
	}
	if len(calls) > 0 {
		n.cfg.Log.Info().Str("alert_id", string(id)).Int("calls", len(calls)).Int("cancel_requests_accepted", cancelled).Msg("Cancelled queued calls of a retracted alert")
	}
}
