// Package pa delivers alerts and their retractions to public-address
// controllers, which play an announcement in a PA zone. A controller is
// reached over HTTP (a JSON command POSTed to its URL; a 2xx means it is
// playing) or over MQTT (the same command on {prefix}/pa/{controller}/cmd,
// confirmed by the controller's ack like a siren's). A retraction plays the
// all-clear announcement. Each PA zone may name a fallback controller, used
// while its controller's breaker is open.
package pa

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/mqttcmd"
	"github.com/tocsin-alert/tocsin/alert"
)

// Command is the JSON a PA controller receives, over HTTP or MQTT.
type Command struct {
	DeliveryID string `json:"delivery_id"`
	AlertID    string `json:"alert_id"`
	// Zone is the PA zone to play in.
	Zone string `json:"zone"`
	// MessageID names a prepared announcement, for controllers that play
	// recordings: "alert", or the retraction's reason ("false_alarm",
	// "all_clear", "superseded").
	MessageID string `json:"message_id"`
	// Text is the announcement for controllers that speak (text to speech).
	Text     string `json:"text"`
	Language string `json:"language"`
	Repeat   int    `json:"repeat"`
	// Priority is the alert's priority (0-9; 10 for a retraction): a
	// controller lets a higher one interrupt a lower one.
	Priority  int       `json:"priority"`
	Event     string    `json:"event,omitempty"`
	Exercise  bool      `json:"exercise,omitempty"`
	ExpiresAt time.Time `json:"expires_at"`
}

// Controller is how one PA controller is reached.
type Controller struct {
	ID string
	// URL takes HTTP commands; empty for an MQTT controller.
	URL   string
	Token string
}

// Zone is one PA zone and the controllers that play in it.
type Zone struct {
	ID, Controller, Fallback, Language string
	Repeat                             int
}

// Config configures the PA adapter.
type Config struct {
	Controllers map[string]Controller
	Zones       map[string]Zone
	// MQTT carries commands to MQTT controllers (its Kinds include "pa").
	MQTT *mqttcmd.Client
	// Timeout bounds one HTTP command (5s).
	Timeout time.Duration
	// Location is the time zone of times in announcements.
	Location *time.Location
	// Texts, if set, are the configured texts; otherwise the defaults in Location.
	Texts *alert.Texts
}

// Notifier is the PA adapter: through each zone's controller, or through its
// fallback controller (see Fallback).
type Notifier struct {
	cfg      Config
	http     *http.Client
	fallback bool
}

var (
	_ adapters.Adapter = (*Notifier)(nil)
	_ adapters.Router  = (*Notifier)(nil)
)

// New builds the adapter.
func New(cfg Config) *Notifier {
	if cfg.Timeout == 0 {
		cfg.Timeout = 5 * time.Second
	}
	return &Notifier{cfg: cfg, http: &http.Client{Timeout: cfg.Timeout}}
}

// Fallback is the same adapter going through each zone's fallback controller;
// for a zone without one it returns adapters.ErrNoFallback.
func (n *Notifier) Fallback() *Notifier {
	f := *n
	f.fallback = true
	return &f
}

func (n *Notifier) controller(zone string) (Controller, bool) {
	z, ok := n.cfg.Zones[zone]
	if !ok {
		return Controller{}, false
	}
	id := z.Controller
	if n.fallback {
		id = z.Fallback
	}
	c, ok := n.cfg.Controllers[id]
	return c, ok
}

// Route is one breaker per controller.
func (n *Notifier) Route(d alert.Delivery) adapters.Route {
	if c, ok := n.controller(d.Target.ID); ok {
		return adapters.Route{Breaker: "pa/" + c.ID}
	}
	return adapters.Route{}
}

// CommandFor is the command that plays d in zone z, its text written by tx.
func CommandFor(d alert.Delivery, z Zone, tx *alert.Texts) Command {
	c := Command{DeliveryID: d.ID, Zone: z.ID, MessageID: "alert", Language: z.Language, Repeat: z.Repeat, ExpiresAt: d.Expires}
	if d.Message == alert.MessageRetraction {
		c.MessageID, c.Priority = d.Reason, int(alert.PriorityRetraction)
		if c.MessageID == "" {
			c.MessageID = "false_alarm"
		}
	}
	if a := d.Alert; a != nil {
		c.AlertID, c.Event, c.Exercise = string(a.ID), a.Event, a.Status.IsDrill()
		c.Text = tx.Text(a, alert.KindPA, d.Message, d.Reason, z.Language)
		if d.Message == alert.MessageAlert {
			c.Priority = int(a.Priority)
		}
	}
	return c
}

// Deliver plays d's announcement in its PA zone. It returns nil once the
// controller confirmed it: a 2xx over HTTP, an "ok" ack over MQTT.
// Probe checks that controller id can still play: an HTTP controller
// answers GET on its url (with its token) with a 2xx — its health call,
// which plays nothing; an MQTT controller acks a command whose
// message_id and signal are "probe", which it must never play.
func (n *Notifier) Probe(ctx context.Context, id string) error {
	c, ok := n.cfg.Controllers[id]
	if !ok {
		return fmt.Errorf("pa: no controller %q", id)
	}
	if c.URL == "" {
		if n.cfg.MQTT == nil {
			return fmt.Errorf("pa: controller %q is on MQTT but no broker is configured", id)
		}
		var b [6]byte
		rand.Read(b[:])
		did := "probe." + id + "." + hex.EncodeToString(b[:])
		payload, _ := json.Marshal(map[string]string{"delivery_id": did, "message_id": "probe", "signal": "probe"})
		return n.cfg.MQTT.Send(ctx, "pa", id, did, payload)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.URL, nil)
	if err != nil {
		return err
	}
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	resp, err := n.http.Do(req)
	if err != nil {
		return fmt.Errorf("pa: controller %s: %w", id, err)
	}
	resp.Body.Close()
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("pa: controller %s: health call answered %s", id, resp.Status)
	}
	return nil
}

func (n *Notifier) Deliver(ctx context.Context, d alert.Delivery) error {
	if d.Target.Kind != alert.KindPA {
		return adapters.Permanent(fmt.Errorf("pa: target %s is not a PA zone", d.Target.Key()))
	}
	z, ok := n.cfg.Zones[d.Target.ID]
	if !ok {
		return adapters.Permanent(fmt.Errorf("pa: no PA zone %q in the configuration", d.Target.ID))
	}
	c, ok := n.controller(z.ID)
	if !ok {
		if n.fallback {
			return adapters.ErrNoFallback
		}
		return adapters.Permanent(fmt.Errorf("pa: zone %q has no controller", z.ID))
	}
	tx := n.cfg.Texts
	if tx == nil {
		tx = &alert.Texts{Location: n.cfg.Location}
	}
	payload, err := json.Marshal(CommandFor(d, z, tx))
	if err != nil {
		return adapters.Permanent(fmt.Errorf("pa: encode command: %w", err))
	}
	if c.URL == "" {
		if n.cfg.MQTT == nil {
			return adapters.Permanent(fmt.Errorf("pa: controller %q is on MQTT but no broker is configured", c.ID))
		}
		return n.cfg.MQTT.Send(ctx, "pa", c.ID, d.ID, payload)
	}
	h := map[string]string{"Content-Type": "application/json", "Idempotency-Key": d.ID}
	if c.Token != "" {
		h["Authorization"] = "Bearer " + c.Token
	}
	return adapters.Post(ctx, n.http, "pa: controller "+c.ID, c.URL, payload, h)
}
