// Package mqttcmd is the command/ack exchange that devices on MQTT share
// (sirens, PA controllers): a command is published with QoS 1 and never
// retained; the broker's PUBACK only means the broker has it, so a command is
// confirmed by the device's own ack on its ack topic. One Client holds one
// connection with a stable client id and a persistent session for every
// device kind.
package mqttcmd

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
	"github.com/eclipse/paho.mqtt.golang/packets"
	"github.com/rs/zerolog"
)

// Ack is the JSON a device publishes on its ack topic.
type Ack struct {
	DeliveryID string `json:"delivery_id"`
	// Status is "ok" when the device carried out the command, "error" otherwise.
	Status string `json:"status"`
	Detail string `json:"detail,omitempty"`
}

// ErrNoAck means the device did not confirm in time; the command is resent.
var ErrNoAck = errors.New("no ack from device")

// Client is one MQTT connection that sends commands and waits for acks.
type Client struct {
	cfg    Config
	log    zerolog.Logger
	client mqtt.Client
	// stop ends the first connection's attempts (Close).
	stop      chan struct{}
	closeOnce sync.Once

	mu      sync.Mutex
	waiting map[string]chan Ack
	subs    []subscription
	// acked remembers "ok" acks by kind/device/delivery, so an ack that
	// arrives after its attempt timed out still confirms the delivery: the
	// next attempt finds it and does not resend.
	acked map[string]time.Time
}

type subscription struct {
	topic   string
	handler func(topic string, payload []byte)
}

// ackMemory is how long an ack is remembered; longer than any retry gap.
const ackMemory = 10 * time.Minute

// New connects to the broker. If the broker is not reachable within
// cfg.ConnectWait it returns anyway and keeps connecting in the background:
// commands fail (and are retried) until it is up.
func New(cfg Config, log zerolog.Logger) (*Client, error) {
	cfg.defaults()
	if cfg.Broker == "" || cfg.ClientID == "" {
		return nil, errors.New("mqtt: broker and client id are required")
	}
	c := &Client{cfg: cfg, log: log.With().Str("component", "mqtt").Logger(), waiting: map[string]chan Ack{}, acked: map[string]time.Time{}}
	o := mqtt.NewClientOptions().AddBroker(cfg.Broker).SetClientID(cfg.ClientID).
		SetCleanSession(false).SetResumeSubs(true).SetOrderMatters(false).
		SetAutoReconnect(true).SetConnectTimeout(3 * time.Second).SetMaxReconnectInterval(2 * time.Second).
		SetKeepAlive(10 * time.Second).SetPingTimeout(3 * time.Second).SetWriteTimeout(5 * time.Second).
		SetOnConnectHandler(c.onConnect).
		SetConnectionLostHandler(func(_ mqtt.Client, err error) {
			c.log.Warn().Err(err).Msg("MQTT connection lost; reconnecting")
		})
	if cfg.Username != "" {
		o.SetUsername(cfg.Username).SetPassword(cfg.Password)
	}
	if cfg.TLS != nil {
		o.SetTLSConfig(cfg.TLS)
	}
	c.client = mqtt.NewClient(o)
	// Routes before the first connection, so messages the persistent session
	// kept while we were away are not dropped for want of a handler.
	for topic, h := range cfg.Subscriptions {
		c.subs = append(c.subs, subscription{topic: topic, handler: h})
		c.client.AddRoute(topic, func(_ mqtt.Client, m mqtt.Message) { h(m.Topic(), m.Payload()) })
	}
	c.stop = make(chan struct{})
	connected := make(chan struct{})
	go c.connect(connected) // exits once connected, or on Close
	select {
	case <-connected:
	case <-time.After(cfg.ConnectWait):
		c.log.Warn().Str("broker", cfg.Broker).Msg("MQTT not connected yet; connecting in the background")
	}
	return c, nil
}

// connect makes the first connection, backing off between attempts. A
// broker that refuses the credentials is told apart from one that cannot
// be reached: it is a configuration error, logged as such, and retried
// slowly (up to every 30s) rather than hammered. After the first
// connection, paho reconnects by itself.
func (c *Client) connect(connected chan<- struct{}) {
	wait := 250 * time.Millisecond
	for attempt := 1; ; attempt++ {
		tok := c.client.Connect()
		tok.Wait()
		err := tok.Error()
		if err == nil {
			close(connected)
			return
		}
		ceiling := time.Second
		if errors.Is(err, packets.ErrorRefusedNotAuthorised) || errors.Is(err, packets.ErrorRefusedBadUsernameOrPassword) {
			ceiling = 30 * time.Second
			if wait < time.Second {
				wait = time.Second
			}
			c.log.Error().Str("broker", c.cfg.Broker).Str("username", c.cfg.Username).Dur("retry_in", wait).
				Msg("MQTT broker refused the connection: not authorised (check mqtt.username, mqtt.password_env and the broker's password file and ACL)")
		} else if attempt == 1 || attempt%30 == 0 {
			c.log.Warn().Err(err).Str("broker", c.cfg.Broker).Int("attempt", attempt).Msg("MQTT broker not reachable; retrying")
		}
		select {
		case <-c.stop:
			return
		case <-time.After(wait):
		}
		wait = min(2*wait, ceiling)
	}
}

// Connected reports whether the MQTT connection is up.
func (c *Client) Connected() bool { return c.client.IsConnectionOpen() }

// Close disconnects, waiting up to 250ms for in-flight publishes.
func (c *Client) Close() {
	c.closeOnce.Do(func() { close(c.stop) })
	c.client.Disconnect(250)
}

// TopicPrefix is the prefix the client's topics start with.
func (c *Client) TopicPrefix() string { return c.cfg.TopicPrefix }

func (c *Client) onConnect(mc mqtt.Client) {
	c.log.Info().Str("broker", c.cfg.Broker).Msg("MQTT connected")
	c.mu.Lock()
	subs := append([]subscription(nil), c.subs...)
	c.mu.Unlock()
	for _, s := range subs {
		c.subscribe(mc, s)
	}
	for _, kind := range c.cfg.Kinds {
		topic := AckTopic(c.cfg.TopicPrefix, kind, "+")
		tok := mc.Subscribe(topic, 1, c.onAck)
		go func() { // exits when the subscription is answered or times out
			if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
				c.log.Error().Err(tok.Error()).Str("topic", topic).Msg("Subscribe to device acks failed")
			}
		}()
	}
}

func (c *Client) subscribe(mc mqtt.Client, s subscription) {
	tok := mc.Subscribe(s.topic, 1, func(_ mqtt.Client, m mqtt.Message) { s.handler(m.Topic(), m.Payload()) })
	go func() { // exits when the subscription is answered or times out
		if tok.WaitTimeout(10*time.Second) && tok.Error() != nil {
			c.log.Error().Err(tok.Error()).Str("topic", s.topic).Msg("Subscribe failed")
		}
	}()
}

// Publish sends payload on topic, QoS 1, not retained, without waiting.
func (c *Client) Publish(topic string, payload []byte) {
	c.client.Publish(topic, 1, false, payload)
}

func (c *Client) onAck(_ mqtt.Client, m mqtt.Message) {
	var a Ack
	if err := json.Unmarshal(m.Payload(), &a); err != nil || a.DeliveryID == "" {
		c.log.Warn().Str("topic", m.Topic()).Msg("Ignoring malformed device ack")
		return
	}
	// The ack must come from the device the command went to:
	// {prefix}/{kind}/{device}/ack.
	parts := strings.Split(m.Topic(), "/")
	if len(parts) < 3 {
		return
	}
	key := parts[len(parts)-3] + "/" + parts[len(parts)-2] + "/" + a.DeliveryID
	c.mu.Lock()
	ch := c.waiting[key]
	if a.Status == "ok" {
		now := time.Now()
		if len(c.acked) >= 10000 {
			for k, at := range c.acked {
				if now.Sub(at) > ackMemory {
					delete(c.acked, k)
				}
			}
		}
		c.acked[key] = now
	}
	c.mu.Unlock()
	if ch != nil {
		select {
		case ch <- a:
		default:
		}
	}
}

// Send publishes payload to device id of kind and waits for the device's ack
// of deliveryID. It returns nil only on an "ok" ack (now, or a late one from
// an earlier attempt); ErrNoAck when none came within the ack timeout.
func (c *Client) Send(ctx context.Context, kind, id, deliveryID string, payload []byte) error {
	key := kind + "/" + id + "/" + deliveryID
	ch := make(chan Ack, 1)
	c.mu.Lock()
	if at, ok := c.acked[key]; ok && time.Since(at) < ackMemory {
		c.mu.Unlock()
		return nil // a late ack of an earlier attempt confirmed it
	}
	c.waiting[key] = ch
	c.mu.Unlock()
	defer func() {
		c.mu.Lock()
		delete(c.waiting, key)
		c.mu.Unlock()
	}()

	tok := c.client.Publish(CommandTopic(c.cfg.TopicPrefix, kind, id), 1, false, payload)
	timer := time.NewTimer(c.cfg.AckTimeout)
	defer timer.Stop()
	for {
		select {
		case a := <-ch:
			if a.Status == "ok" {
				return nil
			}
			return fmt.Errorf("%s %s reported %q: %s", kind, id, a.Status, a.Detail)
		case <-tok.Done():
			if err := tok.Error(); err != nil {
				return fmt.Errorf("mqtt publish: %w", err)
			}
			tok = doneToken{} // PUBACK only means the broker has it; keep waiting for the ack
		case <-timer.C:
			return fmt.Errorf("%s %s: %w", kind, id, ErrNoAck)
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// doneToken is a token that never completes again, so the select above stops
// looking at the publish once its PUBACK arrived.
type doneToken struct{ mqtt.Token }

func (doneToken) Done() <-chan struct{} { return nil }
