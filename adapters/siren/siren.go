// Package siren delivers alerts to siren controllers over MQTT. A command is
// published with QoS 1 and never retained; the broker's PUBACK only means the
// broker has it, so a delivery is confirmed by the controller's own ack on its
// ack topic, and the adapter reports every other outcome as an error so the
// retry decorator resends until acked or expired.
package siren

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
)

// Signals a siren understands.
const (
	SignalAlarm    = "alarm"
	SignalAllClear = "all_clear"
	SignalStop     = "stop"
	SignalTest     = "test"
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

// Ack is the JSON a controller publishes on its ack topic.
type Ack struct {
	DeliveryID string `json:"delivery_id"`
	// Status is "ok" when the siren carried out the command, "error" otherwise.
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// SignalFor is the signal a delivery turns into: all_clear for a retraction,
// test for a drill (test or exercise) alert, alarm otherwise.
func SignalFor(d alert.Delivery) string {
	switch {
	case d.Message == alert.MessageRetraction:
		return SignalAllClear
	case d.Alert != nil && d.Alert.Status.IsDrill():
		return SignalTest
	}
	return SignalAlarm
}

// Notifier is the siren adapter. It owns one MQTT connection with a stable
// client id and a persistent session, and re-subscribes to acks on every connect.
type Notifier struct {
	cfg    Config
	log    zerolog.Logger
	client mqtt.Client

	mu      sync.Mutex
	waiting map[string]chan Ack
	// acked remembers "ok" acks by delivery@siren, so an ack that arrives
	// after its attempt timed out still confirms the delivery: the next
	// attempt finds it and does not resend.
	acked map[string]time.Time
}

// ackMemory is how long an ack is remembered; longer than any retry gap.
const ackMemory = 10 * time.Minute

var _ adapters.Adapter = (*Notifier)(nil)

// errNoAck means the controller did not confirm in time; the command is resent.
var errNoAck = errors.New("siren: no ack from controller")

// New connects to the broker and returns the adapter. If the broker is not
// reachable within cfg.ConnectWait it returns anyway and keeps connecting in the
// background: deliveries fail (and are retried) until it is up.
func New(cfg Config, log zerolog.Logger) (*Notifier, error) {
	cfg.defaults()
	if cfg.Broker == "" || cfg.ClientID == "" {
		return nil, errors.New("siren: broker and client id are required")
	}
	n := &Notifier{cfg: cfg, log: log.With().Str("component", "siren").Logger(), waiting: map[string]chan Ack{}, acked: map[string]time.Time{}}
	o := mqtt.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.ClientID).
		SetCleanSession(false).SetResumeSubs(true).SetOrderMatters(false).
		SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(250 * time.Millisecond).SetMaxReconnectInterval(2 * time.Second).
		SetKeepAlive(10 * time.Second).SetPingTimeout(3 * time.Second).SetWriteTimeout(5 * time.Second).
		SetOnConnectHandler(n.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			n.log.Warn().Err(err).Msg("MQTT connection lost; reconnecting")
		})
	if cfg.Username != "" {
		o.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	n.client = mqtt.NewClient(o)
	tok := n.client.Connect()
	if !tok.WaitTimeout(cfg.ConnectWait) {
		n.log.Warn().Str("broker", cfg.Broker).Msg("MQTT broker not reachable yet; connecting in the background")
	} else if err := tok.Error(); err != nil {
		return nil, fmt.Errorf("siren: connect: %w", err)
	}
	return n, nil
}

// Connected reports whether the MQTT connection is up.
func (n *Notifier) Connected() bool { return n.client.IsConnectionOpen() }

// Close disconnects, waiting up to 250ms for in-flight publishes.
func (n *Notifier) Close() { n.client.Disconnect(250) }

func (n *Notifier) onConnect(c mqtt.Client) {
	n.log.Info().Str("broker", n.cfg.Broker).Msg("MQTT connected")
	topic := AckTopic(n.cfg.TopicPrefix, "+")
	tok := c.Subscribe(topic, 1, n.onAck)
	go func() { // exits when the subscription is answered or times out
		if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
			n.log.Error().Err(tok.Error()).Str("topic", topic).Msg("Subscribe to siren acks failed")
		}
	}()
}

func (n *Notifier) onAck(_ mqtt.Client, m mqtt.Message) {
	var a Ack
	if err := json.Unmarshal(m.Payload(), &a); err != nil || a.DeliveryID == "" {
		n.log.Warn().Str("topic", m.Topic()).Msg("Ignoring malformed siren ack")
		return
	}
	// The ack must come from the siren the command went to.
	parts := strings.Split(m.Topic(), "/")
	key := a.DeliveryID + "@" + parts[len(parts)-2]
	n.mu.Lock()
	ch := n.waiting[key]
	if a.Status == "ok" {
		now := time.Now()
		if len(n.acked) >= 10000 {
			for k, at := range n.acked {
				if now.Sub(at) > ackMemory {
					delete(n.acked, k)
				}
			}
		}
		n.acked[key] = now
	}
	n.mu.Unlock()
	if ch != nil {
		select {
		case ch <- a:
		default:
		}
	}
}

// Deliver publishes the command for d to its siren and waits for the siren's
// ack. It returns nil only on an "ok" ack.
func (n *Notifier) Deliver(ctx context.Context, d alert.Delivery) error {
	if d.Target.Kind != alert.KindSiren {
		return adapters.Permanent(fmt.Errorf("siren: target %s is not a siren", d.Target.Key()))
	}
	cmd := Command{DeliveryID: d.ID, Signal: SignalFor(d), ExpiresAt: d.Expires, SentAt: time.Now().UTC()}
	if d.Alert != nil {
		cmd.AlertID, cmd.Event, cmd.Exercise = string(d.Alert.ID), d.Alert.Event, d.Alert.Status.IsDrill()
	}
	payload, err := json.Marshal(cmd)
	if err != nil {
		return adapters.Permanent(fmt.Errorf("siren: encode command: %w", err))
	}
	key := d.ID + "@" + d.Target.ID
	ch := make(chan Ack, 1)
	n.mu.Lock()
	if at, ok := n.acked[key]; ok && time.Since(at) < ackMemory {
		n.mu.Unlock()
		return nil // a late ack of an earlier attempt confirmed it
	}
	n.waiting[key] = ch
	n.mu.Unlock()
	defer func() {
		n.mu.Lock()
		delete(n.waiting, key)
		n.mu.Unlock()
	}()

	tok := n.client.Publish(CommandTopic(n.cfg.TopicPrefix, d.Target.ID), 1, false, payload)
	timer := time.NewTimer(n.cfg.AckTimeout)
	defer timer.Stop()
	for {
		select {
		case a := <-ch:
			if a.Status == "ok" {
				return nil
			}
			return fmt.Errorf("siren: controller reported %q: %s", a.Status, a.Detail)
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				return fmt.Errorf("siren: publish: %w", err)
			}
			tok = doneToken{} // PUBACK only means the broker has it; keep waiting for the ack
		case <-timer.C:
			return errNoAck
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// doneToken is a token that never completes again, so the select above stops
// looking at the publish once its PUBACK arrived.
type doneToken struct{ mqtt.Token }

func (doneToken) Done() <-chan struct{} { return nil }
