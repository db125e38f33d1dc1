package fake

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"
)

// PACommand is a command as a PA controller receives it (Tocsin's PA
// contract, written out here independently so the fake tests it).
type PACommand struct {
	DeliveryID string    `json:"delivery_id"`
	AlertID    string    `json:"alert_id"`
	Zone       string    `json:"zone"`
	MessageID  string    `json:"message_id"`
	Text       string    `json:"text"`
	Language   string    `json:"language"`
	Repeat     int       `json:"repeat"`
	Priority   int       `json:"priority"`
	Event      string    `json:"event"`
	Exercise   bool      `json:"exercise"`
	ExpiresAt  time.Time `json:"expires_at"`
}

// PAReceived is one command one fake PA controller played.
type PAReceived struct {
	Controller string
	Via        string // "http" or "mqtt"
	Cmd        PACommand
	At         time.Time
}

// PAOptions configure the fake PA controllers.
type PAOptions struct {
	// Listen is the loopback address to serve on (a free port when empty).
	Listen string
	// Token, if set, is the bearer token HTTP commands must carry.
	Token string
	// Broker and MQTTIDs add controllers that take commands over MQTT.
	Broker, TopicPrefix string
	MQTTIDs             []string
	// OnCommand, if set, is told of each command played (the demo prints them).
	OnCommand func(PAReceived)
}

// PA is a set of fake PA controllers: any controller id over HTTP at
// URL(id), and the MQTTIDs over MQTT. It records what each played and can be
// made to fail per controller.
type PA struct {
	o     PAOptions
	srv   *http.Server
	fleet *Fleet
	// Base is the HTTP server's root URL.
	Base string

	mu       sync.Mutex
	received []PAReceived
	failing  map[string]string // controller -> "error" | "hang"
	hang     chan struct{}
}

// StartPA serves the HTTP controllers on a free loopback port and connects
// the MQTT ones.
func StartPA(o PAOptions) (*PA, error) {
	l, err := listenLoopback(o.Listen)
	if err != nil {
		return nil, err
	}
	p := &PA{o: o, Base: "http://" + l.Addr().String(), failing: map[string]string{}, hang: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /pa/{controller}", p.command)
	mux.HandleFunc("GET /pa/{controller}", p.health)
	p.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go p.srv.Serve(l) // exits on Close
	if len(o.MQTTIDs) > 0 {
		p.fleet, err = StartFleet(FleetOptions{Broker: o.Broker, TopicPrefix: o.TopicPrefix, Kind: "pa", IDs: o.MQTTIDs,
			OnCommand: func(r Received) {
				var c PACommand
				if r.Cmd.Signal == "probe" {
					return // acked, never played
				}
				if json.Unmarshal(r.Payload, &c) == nil && r.Acked {
					p.record(PAReceived{Controller: r.Siren, Via: "mqtt", Cmd: c, At: r.At})
				}
			}})
		if err != nil {
			p.Close()
			return nil, err
		}
	}
	return p, nil
}

// URL is where HTTP controller id takes commands.
func (p *PA) URL(id string) string { return p.Base + "/pa/" + id }

// Fail makes controller id answer 500s ("error"), never answer ("hang"), or
// work again ("").
func (p *PA) Fail(id, mode string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.failing[id] = mode
	if p.fleet != nil {
		p.fleet.SetOffline(id, mode != "")
	}
}

// Received returns every command played so far, in order.
func (p *PA) Received() []PAReceived {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]PAReceived(nil), p.received...)
}

// Close stops the fake.
func (p *PA) Close() {
	release(&p.mu, p.hang)
	if p.fleet != nil {
		p.fleet.Close()
	}
	p.srv.Close()
}

func (p *PA) record(r PAReceived) {
	p.mu.Lock()
	p.received = append(p.received, r)
	p.mu.Unlock()
	if p.o.OnCommand != nil {
		p.o.OnCommand(r)
	}
}

// health answers a controller's health call (Tocsin's probe): 200 while it
// works, its failure mode otherwise; it plays nothing.
func (p *PA) health(w http.ResponseWriter, r *http.Request) {
	if p.o.Token != "" && r.Header.Get("Authorization") != "Bearer "+p.o.Token {
		http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	mode := p.failing[r.PathValue("controller")]
	p.mu.Unlock()
	if mode != "" {
		http.Error(w, `{"error":"amplifier fault"}`, http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	fmt.Fprint(w, `{"status":"ok"}`)
}

func (p *PA) command(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("controller")
	if p.o.Token != "" && r.Header.Get("Authorization") != "Bearer "+p.o.Token {
		http.Error(w, `{"error":"bad token"}`, http.StatusUnauthorized)
		return
	}
	p.mu.Lock()
	mode := p.failing[id]
	p.mu.Unlock()
	switch mode {
	case "error":
		http.Error(w, `{"error":"amplifier fault"}`, http.StatusInternalServerError)
		return
	case "hang":
		select {
		case <-p.hang:
		case <-r.Context().Done():
		}
		return
	}
	var c PACommand
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	if err := json.Unmarshal(body, &c); err != nil || c.DeliveryID == "" || c.Zone == "" {
		http.Error(w, fmt.Sprintf(`{"error":"bad command: %v"}`, err), http.StatusBadRequest)
		return
	}
	p.record(PAReceived{Controller: id, Via: "http", Cmd: c, At: time.Now()})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fmt.Fprintf(w, `{"status":"playing","delivery_id":%q}`, c.DeliveryID)
}
