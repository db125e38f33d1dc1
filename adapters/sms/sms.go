// Package sms delivers alerts and their retractions as SMS through Twilio's
// Messages API (twilio-go). Twilio's 201 means accepted, not delivered: the
// outcome arrives by status callback, so the adapter is Pending. Each message
// carries a ValidityPeriod of the time left before the alert expires, so
// Twilio drops it rather than deliver it late.
package sms

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net/url"
	"time"

	api "github.com/twilio/twilio-go/rest/api/v2010"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/twilioapi"
	"github.com/tocsin-alert/tocsin/alert"
)

// Config configures one SMS sender on one Twilio account.
type Config struct {
	// Account names the account (breaker and pacing keys, logs).
	Account string
	Twilio  twilioapi.Account
	// From is the sender number, or MessagingServiceSID a sender pool.
	From                string
	MessagingServiceSID string
	// Rate is messages per second for this sender.
	Rate float64
	// CallbackURL is the public URL status callbacks go to; the delivery id
	// is appended as the last path segment.
	CallbackURL string
	// Recipients finds a target's phone and language.
	Recipients func(targetID string) (adapters.Recipient, bool)
	// Location is the time zone of times in texts.
	Location *time.Location
	// Texts, if set, are the configured texts (and their time zone);
	// otherwise the defaults in Location.
	Texts *alert.Texts
}

// Notifier is the SMS adapter for one sender.
type Notifier struct {
	cfg    Config
	client *twilioapi.Client
}

var (
	_ adapters.Adapter = (*Notifier)(nil)
	_ adapters.Router  = (*Notifier)(nil)
	_ adapters.Coster  = (*Notifier)(nil)
	_ adapters.Pending = (*Notifier)(nil)
)

// New builds the adapter.
func New(cfg Config) (*Notifier, error) {
	if cfg.From == "" && cfg.MessagingServiceSID == "" {
		return nil, errors.New("sms: a from number or messaging service is required")
	}
	c, err := twilioapi.New(cfg.Twilio)
	if err != nil {
		return nil, err
	}
	return &Notifier{cfg: cfg, client: c}, nil
}

// Route is the account's breaker and the sender's pace (rate in segments).
func (n *Notifier) Route(alert.Delivery) adapters.Route {
	sender := n.cfg.From
	if n.cfg.MessagingServiceSID != "" {
		sender = n.cfg.MessagingServiceSID
	}
	return adapters.Route{Breaker: "twilio/" + n.cfg.Account, Sender: "twilio/" + n.cfg.Account + "/sms/" + sender, Rate: n.cfg.Rate}
}

// Cost is how many of the sender's slots d takes: the segments of the text
// its recipient gets.
func (n *Notifier) Cost(d alert.Delivery) int {
	r, ok := n.cfg.Recipients(d.Target.ID)
	if !ok || d.Alert == nil {
		return 1
	}
	segments, _ := Segments(n.text(d, r))
	return segments
}

// text is what recipient r is sent for d.
func (n *Notifier) text(d alert.Delivery, r adapters.Recipient) string {
	tx := n.cfg.Texts
	if tx == nil {
		tx = &alert.Texts{Location: n.cfg.Location}
	}
	return tx.Text(d.Alert, alert.KindSMS, d.Message, d.Reason, r.Language)
}

// Pending says a nil Deliver means accepted by Twilio.
func (n *Notifier) Pending() bool { return true }

// ValidityPeriod is Twilio's validity for a message expiring at exp: the whole
// seconds left, within Twilio's 1..36000.
func ValidityPeriod(exp time.Time) int {
	return int(min(max(math.Ceil(time.Until(exp).Seconds()), 1), 36000))
}

// Deliver asks Twilio to send the SMS.
func (n *Notifier) Deliver(ctx context.Context, d alert.Delivery) error {
	if d.Target.Kind != alert.KindSMS {
		return adapters.Permanent(fmt.Errorf("sms: target %s is not an SMS recipient", d.Target.Key()))
	}
	r, ok := n.cfg.Recipients(d.Target.ID)
	if !ok {
		return adapters.Permanent(fmt.Errorf("sms: no recipient %q in the configuration", d.Target.ID))
	}
	if time.Until(d.Expires) < time.Second {
		return adapters.NotAttempted(adapters.Permanent(fmt.Errorf("sms: %w", adapters.ErrExpired)))
	}
	p := (&api.CreateMessageParams{}).SetTo(r.Phone).
		SetBody(n.text(d, r)).
		SetValidityPeriod(ValidityPeriod(d.Expires)).
		SetStatusCallback(n.cfg.CallbackURL + "/" + url.PathEscape(d.ID))
	if n.cfg.MessagingServiceSID != "" {
		p.SetMessagingServiceSid(n.cfg.MessagingServiceSID)
	} else {
		p.SetFrom(n.cfg.From)
	}
	_, err := twilioapi.Do(ctx, func() (*api.ApiV2010Message, error) { return n.client.Api.CreateMessage(p) })
	if err == nil || adapters.IsNotAttempted(err) {
		return err
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return n.client.Classify("twilio: create message", err)
}
