package fake

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"time"

	mqtt "github.com/eclipse/paho.mqtt.golang"
)

// SirenCommand is a command as a siren controller receives it (Tocsin's MQTT
// contract, written out here independently so the fleet tests it).
type SirenCommand struct {
	DeliveryID string    `json:"delivery_id"`
	AlertID    string    `json:"alert_id"`
	Signal     string    `json:"signal"`
	ExpiresAt  time.Time `json:"expires_at"`
	SentAt     time.Time `json:"sent_at"`
	Event      string    `json:"event"`
	Exercise   bool      `json:"exercise"`
}

// Received is one command one simulated siren received.
type Received struct {
	Siren string
	Cmd   SirenCommand
	At    time.Time
	// Acked says the siren answered (it was online and did not drop it).
	Acked bool
	// Repeat says the siren had already seen this delivery id.
	Repeat bool
	// Payload is the command as received (a PA command for Kind "pa").
	Payload []byte
}

// FleetOptions configure a simulated siren fleet.
type FleetOptions struct {
	Broker      string
	TopicPrefix string // "tocsin/v1"
	// Kind is the device kind in the topics: "siren" (default) or "pa".
	Kind string
	IDs  []string
	// Latency before each ack.
	Latency time.Duration
	// DropRate is the chance (0..1) that a siren ignores a command without acking.
	DropRate float64
	// Offline sirens are connected but never ack (a dead controller).
	Offline []string
	// OnCommand, if set, is told of each command (the demo prints them).
	OnCommand func(Received)
	// Password, if set, gives each controller's broker password; its user
	// name is its id (the deployed ACL's %u).
	Password func(id string) string
}

// Fleet is a set of siren (or MQTT PA) controllers, each a real MQTT client with a stable
// client id and a persistent session, that ack the commands they receive.
type Fleet struct {
	o       FleetOptions
	clients []mqtt.Client

	mu       sync.Mutex
	received []Received
	seen     map[string]bool
	offline  map[string]bool
	active   map[string][]string // siren -> the alerts it sounds for, oldest first
}

// StartFleet connects every siren and subscribes it to its command topic.
func StartFleet(o FleetOptions) (*Fleet, error) {
	if o.TopicPrefix == "" {
		o.TopicPrefix = "tocsin/v1"
	}
	if o.Kind == "" {
		o.Kind = "siren"
	}
	f := &Fleet{o: o, seen: map[string]bool{}, offline: map[string]bool{}, active: map[string][]string{}}
	for _, id := range o.Offline {
		f.offline[id] = true
	}
	for _, id := range o.IDs {
		c := f.connect(id)
		tok := c.Connect()
		if !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
			f.Close()
			return nil, fmt.Errorf("siren %s: connect to %s: %v", id, o.Broker, tok.Error())
		}
		f.clients = append(f.clients, c)
	}
	return f, nil
}

func (f *Fleet) connect(id string) mqtt.Client {
	cmdTopic := f.o.TopicPrefix + "/" + f.o.Kind + "/" + id + "/cmd"
	ackTopic := f.o.TopicPrefix + "/" + f.o.Kind + "/" + id + "/ack"
	handle := func(c mqtt.Client, m mqtt.Message) {
		var cmd SirenCommand
		if err := json.Unmarshal(m.Payload(), &cmd); err != nil {
			return
		}
		f.mu.Lock()
		r := Received{Siren: id, Cmd: cmd, At: time.Now(), Repeat: f.seen[id+"|"+cmd.DeliveryID], Payload: m.Payload()}
		f.seen[id+"|"+cmd.DeliveryID] = true
		r.Acked = !f.offline[id] && (f.o.DropRate == 0 || rand.Float64() >= f.o.DropRate)
		if r.Acked {
			f.obey(id, cmd)
		}
		f.received = append(f.received, r)
		f.mu.Unlock()
		if f.o.OnCommand != nil {
			f.o.OnCommand(r)
		}
		if !r.Acked {
			return
		}
		go func() { // exits after one publish
			if f.o.Latency > 0 {
				time.Sleep(f.o.Latency)
			}
			b, _ := json.Marshal(map[string]string{"delivery_id": cmd.DeliveryID, "status": "ok"})
			c.Publish(ackTopic, 1, false, b)
		}()
	}
	o := mqtt.NewClientOptions().AddBroker(f.o.Broker).SetClientID(f.o.Kind + "-sim-" + id).
		SetCleanSession(false).SetAutoReconnect(true).SetConnectRetry(true).
		SetConnectRetryInterval(200 * time.Millisecond).SetMaxReconnectInterval(time.Second).
		SetOnConnectHandler(func(c mqtt.Client) { c.Subscribe(cmdTopic, 1, handle) })
	if f.o.Password != nil {
		o.SetUsername(id).SetPassword(f.o.Password(id))
	}
	return mqtt.NewClient(o)
}

// obey carries out a command as Tocsin's siren contract asks a controller
// to: an alarm (a test, or a profile such as fire) adds its alert to those the siren sounds for (the
// latest one's signal is heard); stop and all_clear take only the alert they
// name away; the siren is quiet when none is left. So an update's alarm and
// the stop of the alert it replaces may arrive in either order, and
// retracting one of two alerts in force leaves the other sounding.
func (f *Fleet) obey(id string, cmd SirenCommand) {
	if cmd.Signal == "probe" {
		return // acked, never sounded
	}
	as := slices.DeleteFunc(f.active[id], func(a string) bool { return a == cmd.AlertID })
	if cmd.Signal != "stop" && cmd.Signal != "all_clear" { // alarm, test or a profile (fire, amok, …)
		as = append(as, cmd.AlertID)
	}
	f.active[id] = as
}

// Sounding is the alert whose signal a siren sounds now (the latest of
// those in force), or "" when it is quiet.
func (f *Fleet) Sounding(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if as := f.active[id]; len(as) > 0 {
		return as[len(as)-1]
	}
	return ""
}

// Active are the alerts a siren sounds for, oldest first.
func (f *Fleet) Active(id string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.active[id])
}

// SetOffline makes a siren stop (true) or resume (false) acking.
func (f *Fleet) SetOffline(id string, off bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.offline[id] = off
}

// Received returns every command received so far, in arrival order.
func (f *Fleet) Received() []Received {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]Received(nil), f.received...)
}

// Close disconnects every siren.
func (f *Fleet) Close() {
	for _, c := range f.clients {
		c.Disconnect(100)
	}
}
