// Package siren delivers alerts to siren controllers over MQTT, through the
// command/ack exchange of adapters/mqttcmd: a delivery is confirmed only by
// the controller's own ack, and every other outcome is an error so the retry
// decorator resends until acked or expired. Topics:
// {prefix}/siren/{siren}/cmd and {prefix}/siren/{siren}/ack.
package siren

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/mqttcmd"
	"github.com/tocsin-alert/tocsin/alert"
)

// Signals a siren understands.
const (
	SignalAlarm    = "alarm"
	SignalAllClear = "all_clear"
	SignalStop     = "stop"
	SignalTest     = "test"
	// SignalProbe asks a controller to ack without sounding: the synthetic
	// check that it can still be reached. It never sounds, whatever the
	// controller's profiles.
	SignalProbe = "probe"
)

// Command is the JSON published on a siren's command topic.
type Command struct {
	DeliveryID string    `json:"delivery_id"`
	AlertID    string    `json:"alert_id"`
	Signal     string    `json:"signal"`
	ExpiresAt  time.Time `json:"expires_at"`
	SentAt     time.Time `json:"sent_at"`
	Event      string    `json:"event,omitempty"`
	Exercise   bool      `json:"exercise,omitempty"`
}

// SignalFor is the signal a delivery turns into: all_clear for a retraction
// (stop when an update supersedes the alert: the danger is not over), test
// for a drill (test or exercise) alert, and for an actual alert the profile
// its event is given (config channel_policy.signals; alarm when profile is nil).
func SignalFor(d alert.Delivery, profile func(event string) string) string {
	switch {
	case d.Message == alert.MessageRetraction && d.Reason == "superseded":
		return SignalStop // an update replaces it: stop, never all_clear
	case d.Message == alert.MessageRetraction:
		return SignalAllClear
	case d.Alert != nil && d.Alert.Status.IsDrill():
		return SignalTest
	case profile != nil && d.Alert != nil:
		return profile(d.Alert.Event)
	}
	return SignalAlarm
}

// Notifier is the siren adapter. It sends over a shared MQTT command client.
type Notifier struct {
	conn    *mqttcmd.Client
	profile func(event string) string
}

var _ adapters.Adapter = (*Notifier)(nil)

// New returns the siren adapter on conn, which must subscribe to the "siren"
// kind's acks. profile names the signal for an actual alert's event (nil:
// alarm for every event).
func New(conn *mqttcmd.Client, profile func(event string) string) *Notifier {
	return &Notifier{conn: conn, profile: profile}
}

// Probe sends siren id a silent probe command and waits for its ack.
func (n *Notifier) Probe(ctx context.Context, id string) error {
	var b [6]byte
	rand.Read(b[:])
	did := "probe." + id + "." + hex.EncodeToString(b[:])
	// Marked exercise too: a controller that predates probe and sounds what
	// it does not know would at worst sound a drill, never an alarm.
	payload, _ := json.Marshal(Command{DeliveryID: did, Signal: SignalProbe, ExpiresAt: time.Now().Add(time.Minute).UTC(), SentAt: time.Now().UTC(), Exercise: true})
	return n.conn.Send(ctx, "siren", id, did, payload)
}

// Deliver publishes the command for d to its siren and waits for the siren's
// ack. It returns nil only on an "ok" ack.
func (n *Notifier) Deliver(ctx context.Context, d alert.Delivery) error {
	if d.Target.Kind != alert.KindSiren {
		return adapters.Permanent(fmt.Errorf("siren: target %s is not a siren", d.Target.Key()))
	}
	cmd := Command{DeliveryID: d.ID, Signal: SignalFor(d, n.profile), ExpiresAt: d.Expires, SentAt: time.Now().UTC()}
	if d.Alert != nil {
		cmd.AlertID, cmd.Event, cmd.Exercise = string(d.Alert.ID), d.Alert.Event, d.Alert.Status.IsDrill()
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return adapters.Permanent(fmt.Errorf("siren: encode command: %w", err))
	}
	return n.conn.Send(ctx, "siren", d.Target.ID, d.ID, payload)
}
