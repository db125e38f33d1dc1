package siren

import (
	"time"
)

// Config configures the siren adapter and its MQTT connection.
type Config struct {
	// Broker is the MQTT broker URL, e.g. tcp://127.0.0.1:1883.
	Broker string
	// ClientID is stable across restarts so the broker keeps the session.
	ClientID string
	Username string
	Password string
	// TopicPrefix roots the topics: {prefix}/siren/{siren}/cmd and .../ack.
	TopicPrefix string
	// AckTimeout is how long one attempt waits for the controller's ack (2s).
	AckTimeout time.Duration
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
}

// CommandTopic is where siren id listens for commands.
func CommandTopic(prefix, id string) string { return prefix + "/siren/" + id + "/cmd" }

// AckTopic is where siren id acknowledges commands.
func AckTopic(prefix, id string) string { return prefix + "/siren/" + id + "/ack" }
