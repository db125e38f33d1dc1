package fake

import (
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf16"
)

// TwilioOptions configure the fake Twilio REST API.
type TwilioOptions struct {
	// Listen is the loopback address to serve on (a free port when empty).
	Listen string
	// Accounts maps account SIDs to auth tokens: requests must authenticate
	// with them, and status callbacks are signed with them.
	Accounts map[string]string
	// Rates are the senders' (From number or messaging service SID) allowed
	// sends per second; sends above it are counted as violations.
	Rates map[string]float64
	// CallbackDelay is how long after each step a status callback follows (20ms).
	CallbackDelay time.Duration
	// Undelivered numbers get "undelivered" (SMS) or "no-answer" (calls).
	Undelivered []string
	// NoCallbacks turns status callbacks off (fan-out runs that measure sending).
	NoCallbacks bool
	// OnMessage and OnCall, if set, are told of each accepted message and call
	// (the demo prints them).
	OnMessage func(FakeMessage)
	OnCall    func(FakeCall)
}

// TwilioFailure is what the fake does to requests, to test failure handling.
type TwilioFailure struct {
	// Status, when not 0, answers every create request with this status and a
	// Twilio error (500, 503, 401…); with 429, RetryAfter is sent.
	Status     int
	RetryAfter int
	// Latency is added to each request; Hang makes requests never answer.
	Latency time.Duration
	Hang    bool
}

// FakeMessage is a message the fake accepted.
type FakeMessage struct {
	SID, Account, To, From, MessagingServiceSID, Body, StatusCallback string
	ValidityPeriod                                                    int
	At                                                                time.Time
	Status                                                            string
	// Segments is how many SMS segments the provider counts for Body.
	Segments int
}

// FakeCall is a call the fake accepted.
type FakeCall struct {
	SID, Account, To, From, Twiml, StatusCallback string
	At                                            time.Time
	Status                                        string
	CancelRequested                               bool
}

// Twilio is a fake of the parts of Twilio's REST API Tocsin uses: Messages,
// Calls and call updates. It records what it received, answers like Twilio
// (201 with a SID; Twilio's error JSON), posts signed status callbacks, can be
// made to fail, and counts sends above a sender's rate.
type Twilio struct {
	o   TwilioOptions
	srv *http.Server
	URL string

	mu         sync.Mutex
	failure    TwilioFailure
	messages   []*FakeMessage
	calls      map[string]*FakeCall
	callOrder  []string
	sends      map[string][]send
	violations map[string]int
	requests   int
	seq        int
	hang       chan struct{}
}

// StartTwilio serves the fake on a free loopback port.
func StartTwilio(o TwilioOptions) (*Twilio, error) {
	if o.CallbackDelay == 0 {
		o.CallbackDelay = 20 * time.Millisecond
	}
	l, err := listenLoopback(o.Listen)
	if err != nil {
		return nil, err
	}
	f := &Twilio{o: o, URL: "http://" + l.Addr().String(), calls: map[string]*FakeCall{},
		sends: map[string][]send{}, violations: map[string]int{}, hang: make(chan struct{})}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /2010-04-01/Accounts/{account}/Messages.json", f.createMessage)
	mux.HandleFunc("GET /2010-04-01/Accounts/{account}", f.fetchAccount)
	mux.HandleFunc("POST /2010-04-01/Accounts/{account}/Calls.json", f.createCall)
	mux.HandleFunc("POST /2010-04-01/Accounts/{account}/Calls/{sid}", f.updateCall)
	f.srv = &http.Server{Handler: mux}
	go f.srv.Serve(l) // exits on Close
	return f, nil
}

// Close stops the fake.
func (f *Twilio) Close() {
	release(&f.mu, f.hang)
	f.srv.Close()
}

// SetFailure changes how the fake answers from now on.
func (f *Twilio) SetFailure(x TwilioFailure) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failure = x
}

// Messages returns the accepted messages in order.
func (f *Twilio) Messages() []FakeMessage {
	f.mu.Lock()
	defer f.mu.Unlock()
	return values(f.messages)
}

// Calls returns the accepted calls in order.
func (f *Twilio) Calls() []FakeCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]FakeCall, 0, len(f.callOrder))
	for _, sid := range f.callOrder {
		out = append(out, *f.calls[sid])
	}
	return out
}

// Requests is the number of create requests received, failed or not.
func (f *Twilio) Requests() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.requests
}

// Violations is the number of sends above each sender's rate.
func (f *Twilio) Violations() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := map[string]int{}
	for k, v := range f.violations {
		out[k] = v
	}
	return out
}

var fakeE164 = regexp.MustCompile(`^\+[1-9][0-9]{6,14}$`)

func twilioError(w http.ResponseWriter, status, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]any{"code": code, "message": msg,
		"more_info": fmt.Sprintf("https://www.twilio.com/docs/errors/%d", code), "status": status})
}

// admit authenticates a create request and applies the failure mode; it
// reports whether to go on.
func (f *Twilio) admit(w http.ResponseWriter, r *http.Request) bool {
	f.mu.Lock()
	f.requests++
	x := f.failure
	f.mu.Unlock()
	if x.Hang {
		select {
		case <-f.hang:
		case <-r.Context().Done():
		}
		return false
	}
	if x.Latency > 0 {
		time.Sleep(x.Latency)
	}
	user, pass, ok := r.BasicAuth()
	if tok, known := f.o.Accounts[r.PathValue("account")]; !ok || !known || user != r.PathValue("account") || pass != tok {
		twilioError(w, 401, 20003, "Authenticate")
		return false
	}
	switch {
	case x.Status == http.StatusTooManyRequests:
		w.Header().Set("Retry-After", strconv.Itoa(x.RetryAfter))
		twilioError(w, 429, 20429, "Too Many Requests")
		return false
	case x.Status != 0:
		twilioError(w, x.Status, 20500, "Internal Server Error")
		return false
	}
	if err := r.ParseForm(); err != nil {
		twilioError(w, 400, 21100, "Bad request")
		return false
	}
	return true
}

// count records a send of n segments by sender and counts it as a
// violation if it exceeds the sender's rate, which providers count in
// segments: the segments of the sends inside any one-second window, beyond
// this send's own, above the rate.
func (f *Twilio) count(sender string, now time.Time, n int) {
	rate, ok := f.o.Rates[sender]
	if !ok {
		return
	}
	ts := append(f.sends[sender], send{now, n})
	cut := 0
	for cut < len(ts) && now.Sub(ts[cut].at) >= time.Second {
		cut++
	}
	ts = ts[cut:]
	f.sends[sender] = ts
	total := 0
	for _, s := range ts {
		total += s.segments
	}
	if float64(total) > math.Floor(rate)+float64(n) {
		f.violations[sender]++
	}
}

type send struct {
	at       time.Time
	segments int
}

// segments counts a body's SMS segments the way the provider does, written
// here on its own so the fake checks Tocsin's count rather than share it:
// GSM-7 (160, or 153 per part; the extension characters count twice) when
// every character is in the GSM 03.38 alphabet, else UCS-2 (70, or 67 per
// part, in UTF-16 units).
func segments(body string) int {
	const basic = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà"
	const ext = "^{}\\[~]|€\f"
	septets, units := 0, 0
	gsm := true
	for _, r := range body {
		units += utf16.RuneLen(r)
		switch {
		case strings.ContainsRune(basic, r):
			septets++
		case strings.ContainsRune(ext, r):
			septets += 2
		default:
			gsm = false
		}
	}
	one, part, n := 70, 67, units
	if gsm {
		one, part, n = 160, 153, septets
	}
	if n <= one {
		return 1
	}
	return (n + part - 1) / part
}

// fetchAccount answers GET /2010-04-01/Accounts/{sid}.json (the account
// check of a probe) with the same authentication and failure mode as a send.
func (f *Twilio) fetchAccount(w http.ResponseWriter, r *http.Request) {
	sid := strings.TrimSuffix(r.PathValue("account"), ".json")
	r.SetPathValue("account", sid)
	if !f.admit(w, r) {
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"sid": sid, "status": "active", "type": "Full"})
}

func (f *Twilio) createMessage(w http.ResponseWriter, r *http.Request) {
	if !f.admit(w, r) {
		return
	}
	to := r.PostForm.Get("To")
	if !fakeE164.MatchString(to) {
		twilioError(w, 400, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", to))
		return
	}
	from, mg := r.PostForm.Get("From"), r.PostForm.Get("MessagingServiceSid")
	if from == "" && mg == "" {
		twilioError(w, 400, 21603, "The 'From' number is required.")
		return
	}
	vp, _ := strconv.Atoi(r.PostForm.Get("ValidityPeriod"))
	f.mu.Lock()
	f.seq++
	m := &FakeMessage{SID: fmt.Sprintf("SM%032x", f.seq), Account: r.PathValue("account"), To: to, From: from,
		MessagingServiceSID: mg, Body: r.PostForm.Get("Body"), StatusCallback: r.PostForm.Get("StatusCallback"),
		ValidityPeriod: vp, At: time.Now(), Status: "queued"}
	f.messages = append(f.messages, m)
	sender := from
	if mg != "" {
		sender = mg
	}
	m.Segments = segments(m.Body)
	f.count(sender, m.At, m.Segments)
	f.mu.Unlock()
	if f.o.OnMessage != nil {
		f.o.OnMessage(*m)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	json.NewEncoder(w).Encode(map[string]any{"sid": m.SID, "status": "queued", "to": to, "from": from,
		"account_sid": m.Account, "messaging_service_sid": mg, "body": m.Body, "num_segments": strconv.Itoa(m.Segments)})
	if m.StatusCallback != "" && !f.o.NoCallbacks {
		final := "delivered"
		if slices.Contains(f.o.Undelivered, to) {
			final = "undelivered"
		}
		go f.callbacks(m.Account, m.StatusCallback, "MessageSid", m.SID, "MessageStatus", to, []string{"sent", final}, nil) // exits after the last callback
	}
}

func (f *Twilio) createCall(w http.ResponseWriter, r *http.Request) {
	if !f.admit(w, r) {
		return
	}
	to, from := r.PostForm.Get("To"), r.PostForm.Get("From")
	if !fakeE164.MatchString(to) {
		twilioError(w, 400, 21211, fmt.Sprintf("The 'To' number %s is not a valid phone number.", to))
		return
	}
	if r.PostForm.Get("Twiml") == "" && r.PostForm.Get("Url") == "" {
		twilioError(w, 400, 21205, "Url or Twiml is required.")
		return
	}
	f.mu.Lock()
	f.seq++
	c := &FakeCall{SID: fmt.Sprintf("CA%032x", f.seq), Account: r.PathValue("account"), To: to, From: from,
		Twiml: r.PostForm.Get("Twiml"), StatusCallback: r.PostForm.Get("StatusCallback"), At: time.Now(), Status: "queued"}
	f.calls[c.SID] = c
	f.callOrder = append(f.callOrder, c.SID)
	f.count(from, c.At, 1)
	copied := *c
	f.mu.Unlock()
	if f.o.OnCall != nil {
		f.o.OnCall(copied)
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(201)
	json.NewEncoder(w).Encode(map[string]any{"sid": c.SID, "status": "queued", "to": to, "from": from, "account_sid": c.Account})
	steps := []string{"initiated", "ringing", "in-progress", "completed"}
	if slices.Contains(f.o.Undelivered, to) {
		steps = []string{"initiated", "ringing", "no-answer"}
	}
	if c.StatusCallback != "" && !f.o.NoCallbacks {
		go f.callbacks(c.Account, c.StatusCallback, "CallSid", c.SID, "CallStatus", to, steps, c) // exits after the last callback
	}
}

func (f *Twilio) updateCall(w http.ResponseWriter, r *http.Request) {
	user, pass, _ := r.BasicAuth()
	if tok, ok := f.o.Accounts[r.PathValue("account")]; !ok || user != r.PathValue("account") || pass != tok {
		twilioError(w, 401, 20003, "Authenticate")
		return
	}
	r.ParseForm()
	sid := strings.TrimSuffix(r.PathValue("sid"), ".json")
	f.mu.Lock()
	c := f.calls[sid]
	var status string
	if c != nil {
		if r.PostForm.Get("Status") == "canceled" {
			c.CancelRequested = true
			if c.Status == "queued" || c.Status == "initiated" || c.Status == "ringing" {
				c.Status = "canceled"
			}
		}
		status = c.Status // read under the lock: the callbacks goroutine writes it
	}
	f.mu.Unlock()
	if c == nil {
		twilioError(w, 404, 20404, "The requested resource was not found")
		return
	}
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(map[string]any{"sid": sid, "status": status})
}

// callbacks posts each status in turn to the callback URL, signed like
// Twilio signs them. A call cancelled meanwhile reports canceled and stops.
func (f *Twilio) callbacks(account, cbURL, sidKey, sid, statusKey, to string, steps []string, call *FakeCall) {
	for _, st := range steps {
		time.Sleep(f.o.CallbackDelay + time.Duration(rand.Int64N(int64(f.o.CallbackDelay)+1)))
		if call != nil {
			f.mu.Lock()
			if call.Status == "canceled" {
				st = "canceled"
			} else {
				call.Status = st
			}
			f.mu.Unlock()
		}
		form := url.Values{sidKey: {sid}, statusKey: {st}, "AccountSid": {account}, "To": {to}}
		req, _ := http.NewRequest("POST", cbURL, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Header.Set("X-Twilio-Signature", TwilioSignature(f.o.Accounts[account], cbURL, form))
		if resp, err := http.DefaultClient.Do(req); err == nil {
			resp.Body.Close()
		}
		if st == "canceled" {
			return
		}
	}
}

// TwilioSignature is Twilio's X-Twilio-Signature for a form POST to u:
// base64(HMAC-SHA1(token, u + each key and value, keys sorted)).
func TwilioSignature(token, u string, form url.Values) string {
	keys := make([]string, 0, len(form))
	for k := range form {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var b strings.Builder
	b.WriteString(u)
	for _, k := range keys {
		for _, v := range form[k] {
			b.WriteString(k)
			b.WriteString(v)
		}
	}
	mac := hmac.New(sha1.New, []byte(token))
	mac.Write([]byte(b.String()))
	return base64.StdEncoding.EncodeToString(mac.Sum(nil))
}
