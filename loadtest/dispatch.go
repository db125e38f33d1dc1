package loadtest

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"encoding/xml"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"sync"
	"time"
)

// CAPDoc is what the fake dispatch centre reads of a CAP document (written
// out here independently of Tocsin's cap package, so the fake tests it).
type CAPDoc struct {
	Identifier string `xml:"identifier"`
	Sender     string `xml:"sender"`
	Sent       string `xml:"sent"`
	Status     string `xml:"status"`
	MsgType    string `xml:"msgType"`
	References string `xml:"references"`
	Note       string `xml:"note"`
	Infos      []struct {
		Language      string   `xml:"language"`
		Event         string   `xml:"event"`
		ResponseTypes []string `xml:"responseType"`
		Headline      string   `xml:"headline"`
	} `xml:"info"`
}

// DispatchReceived is one CAP document a fake centre accepted.
type DispatchReceived struct {
	Centre string
	Doc    CAPDoc
	Raw    []byte
	At     time.Time
	// Acked says the centre posted a CAP Ack for it and the gateway took it.
	Acked bool
}

// DispatchOptions configure the fake dispatch centres.
type DispatchOptions struct {
	// Listen is the loopback address to serve on (a free port when empty).
	Listen string
	// Keys are the centres' shared HMAC keys; requests must be signed.
	Keys map[string][]byte
	// AckURL, if set, is where a centre posts its CAP Ack ("{centre}" is
	// replaced by the centre's id), signed with its key, AckDelay after
	// accepting a document (20ms).
	AckURL   string
	AckDelay time.Duration
	// TLS, if set, serves HTTPS (set ClientAuth to require client certificates).
	TLS *tls.Config
	// OnDocument, if set, is told of each accepted document (the demo prints them).
	OnDocument func(DispatchReceived)
}

// Dispatch is a set of fake dispatch centres at URL(id): each verifies the
// HMAC of what it gets, records the CAP, answers 202, and posts a signed CAP
// Ack back. It can be made to fail per centre.
type Dispatch struct {
	o   DispatchOptions
	srv *http.Server
	// Base is the server's root URL.
	Base string

	mu       sync.Mutex
	received []*DispatchReceived
	failing  map[string]string
	rejected int
	hang     chan struct{}
	acks     sync.WaitGroup
}

// StartDispatch serves the fake centres on a free loopback port.
func StartDispatch(o DispatchOptions) (*Dispatch, error) {
	if o.AckDelay == 0 {
		o.AckDelay = 20 * time.Millisecond
	}
	l, err := listenLoopback(o.Listen)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if o.TLS != nil {
		l, scheme = tls.NewListener(l, o.TLS), "https"
	}
	f := &Dispatch{o: o, Base: scheme + "://" + l.Addr().String(), failing: map[string]string{}, hang: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /cap/{centre}", f.receive)
	f.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go f.srv.Serve(l) // exits on Close
	return f, nil
}

// URL is where centre id takes CAP documents.
func (f *Dispatch) URL(id string) string { return f.Base + "/cap/" + id }

// Fail makes centre id answer 500s ("error"), never answer ("hang"), or work
// again ("").
func (f *Dispatch) Fail(id, mode string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failing[id] = mode
}

// Received returns the accepted documents in order.
func (f *Dispatch) Received() []DispatchReceived {
	f.mu.Lock()
	defer f.mu.Unlock()
	return values(f.received)
}

// Rejected counts requests refused for a missing or wrong signature.
func (f *Dispatch) Rejected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.rejected
}

// Close stops the fake, after the Acks under way.
func (f *Dispatch) Close() {
	release(&f.mu, f.hang)
	f.srv.Close()
	f.acks.Wait()
}

func capSign(key []byte, ts int64, body []byte) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "%d.", ts)
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

func (f *Dispatch) receive(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("centre")
	body, _ := io.ReadAll(io.LimitReader(r.Body, 1<<20))
	key, known := f.o.Keys[id]
	ts, _ := strconv.ParseInt(r.Header.Get("X-Tocsin-Timestamp"), 10, 64)
	if !known || ts == 0 || !hmac.Equal([]byte(capSign(key, ts, body)), []byte(r.Header.Get("X-Tocsin-Signature"))) {
		f.mu.Lock()
		f.rejected++
		f.mu.Unlock()
		http.Error(w, "bad signature", http.StatusUnauthorized)
		return
	}
	f.mu.Lock()
	mode := f.failing[id]
	f.mu.Unlock()
	switch mode {
	case "error":
		http.Error(w, "centre busy", http.StatusInternalServerError)
		return
	case "hang":
		select {
		case <-f.hang:
		case <-r.Context().Done():
		}
		return
	}
	var doc CAPDoc
	if err := xml.Unmarshal(body, &doc); err != nil || doc.Identifier == "" || doc.MsgType == "" {
		http.Error(w, fmt.Sprintf("not CAP: %v", err), http.StatusBadRequest)
		return
	}
	rec := &DispatchReceived{Centre: id, Doc: doc, Raw: body, At: time.Now()}
	f.mu.Lock()
	f.received = append(f.received, rec)
	f.mu.Unlock()
	if f.o.OnDocument != nil {
		f.o.OnDocument(*rec)
	}
	w.WriteHeader(http.StatusAccepted)
	if f.o.AckURL != "" {
		f.acks.Add(1)
		go func() { // exits after one POST
			defer f.acks.Done()
			select {
			case <-time.After(f.o.AckDelay):
			case <-f.hang:
				return
			}
			ok := f.postAck(id, key, doc)
			f.mu.Lock()
			rec.Acked = ok
			f.mu.Unlock()
		}()
	}
}

// postAck posts a signed CAP Ack of doc, as the centre would.
func (f *Dispatch) postAck(centre string, key []byte, doc CAPDoc) bool {
	now := time.Now().UTC()
	ack := fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>ACK-%s-%d</identifier>
  <sender>%s@dispatch.invalid</sender>
  <sent>%s-00:00</sent>
  <status>%s</status>
  <msgType>Ack</msgType>
  <scope>Restricted</scope>
  <restriction>Tocsin</restriction>
  <references>%s,%s,%s</references>
</alert>
`, doc.Identifier, now.UnixNano(), centre, now.Format("2006-01-02T15:04:05"), doc.Status, doc.Sender, doc.Identifier, doc.Sent)
	req, err := http.NewRequest(http.MethodPost, replaceCentre(f.o.AckURL, centre), bytes.NewReader([]byte(ack)))
	if err != nil {
		return false
	}
	req.Header.Set("Content-Type", "application/cap+xml")
	req.Header.Set("X-Tocsin-Timestamp", strconv.FormatInt(now.Unix(), 10))
	req.Header.Set("X-Tocsin-Signature", capSign(key, now.Unix(), []byte(ack)))
	c := &http.Client{Timeout: 5 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return false
	}
	resp.Body.Close()
	return resp.StatusCode < 300
}

func replaceCentre(u, centre string) string {
	return string(bytes.ReplaceAll([]byte(u), []byte("{centre}"), []byte(centre)))
}
