package mqttcmd

import (
	"crypto/tls"
	"time"
)

// Config configures the MQTT connection and its command/ack exchange.
type Config struct {
	// Broker is the MQTT broker URL, e.g. tcp://127.0.0.1:1883.
	Broker string
	// ClientID is stable across restarts so the broker keeps the session.
	ClientID string
	Username string
	Password string
	// TLS is the TLS client for an mqtts:// broker (CA, client certificate).
	TLS *tls.Config
	// TopicPrefix roots the topics: {prefix}/{kind}/{device}/cmd and .../ack.
	TopicPrefix string
	// Kinds are the device kinds whose acks to subscribe to ("siren", "pa").
	Kinds []string
	// AckTimeout is how long one command waits for the device's ack (2s).
	AckTimeout time.Duration
	// Subscriptions are topics to take messages on (QoS 1, in the persistent
	// session), each with its handler; handlers run on paho's goroutines and
	// must not block for long.
	Subscriptions map[string]func(topic string, payload []byte)
	// ConnectWait is how long New waits for the first connection before going
	// on and connecting in the background (5s).
	ConnectWait time.Duration
}

func (c *Config) defaults() {
	if c.TopicPrefix == "" {
		c.TopicPrefix = "tocsin/v1"
	}
	if c.AckTimeout == 0 {
		c.AckTimeout = 2 * time.Second
	}
	if c.ConnectWait == 0 {
		c.ConnectWait = 5 * time.Second
	}
	if len(c.Kinds) == 0 {
		c.Kinds = []string{"siren"}
	}
}

// CommandTopic is where device id of kind listens for commands.
func CommandTopic(prefix, kind, id string) string { return prefix + "/" + kind + "/" + id + "/cmd" }

// AckTopic is where device id of kind acknowledges commands.
func AckTopic(prefix, kind, id string) string { return prefix + "/" + kind + "/" + id + "/ack" }
