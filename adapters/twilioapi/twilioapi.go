// Package twilioapi is the Twilio plumbing the sms and voice adapters share:
// a twilio-go client with a bounded timeout that can be pointed at another
// host (the fake in loadtest/), Retry-After capture, error classification,
// and redaction of phone numbers from provider errors.
package twilioapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"sync"
	"time"

	"github.com/twilio/twilio-go"
	twclient "github.com/twilio/twilio-go/client"

	"github.com/tocsin-alert/tocsin/adapters"
)

// Account is what a client needs to reach one Twilio account.
type Account struct {
	SID       string
	AuthToken string
	// BaseURL, if set, replaces https://api.twilio.com (tests, the demo).
	BaseURL string
	// Timeout bounds every call; twilio-go takes no context (10s).
	Timeout time.Duration
}

// Client is a twilio-go REST client with the transport that makes it ours.
type Client struct {
	*twilio.RestClient
	t *transport
}

// New builds a client for one account.
func New(a Account) (*Client, error) {
	if a.Timeout == 0 {
		a.Timeout = 10 * time.Second
	}
	// Keep connections to the API open for every delivery in flight: the
	// default transport keeps 2 per host, so a fan-out with hundreds of sends
	// in flight would open (and TLS-handshake) a new connection for most of them.
	ht := http.DefaultTransport.(*http.Transport).Clone()
	ht.MaxIdleConnsPerHost = 1024
	ht.MaxIdleConns = 1024
	t := &transport{next: ht}
	if a.BaseURL != "" {
		u, err := url.Parse(a.BaseURL)
		if err != nil || u.Host == "" {
			return nil, fmt.Errorf("twilio: base URL %q: want scheme://host", a.BaseURL)
		}
		t.base = u
	}
	hc := &http.Client{
		Transport:     t,
		Timeout:       a.Timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	c := &twclient.Client{Credentials: twclient.NewCredentials(a.SID, a.AuthToken), HTTPClient: hc}
	c.SetAccountSid(a.SID)
	return &Client{RestClient: twilio.NewRestClientWithParams(twilio.ClientParams{Client: c}), t: t}, nil
}

// Check fetches the account with its credentials: the API is reachable and
// the token is good (the synthetic probe of an account; it sends nothing).
func (c *Client) Check(sid string) error {
	acct, err := c.Api.FetchAccount(sid)
	if err != nil {
		return err
	}
	if acct.Status != nil && *acct.Status != "active" {
		return fmt.Errorf("twilio: account %s is %s", sid, *acct.Status)
	}
	return nil
}

// transport rewrites the host when a base URL is set and remembers the last
// Retry-After Twilio sent with a 429 (twilio-go's error drops the header).
type transport struct {
	next http.RoundTripper
	base *url.URL

	mu         sync.Mutex
	retryUntil time.Time
}

func (t *transport) RoundTrip(r *http.Request) (*http.Response, error) {
	if t.base != nil {
		r = r.Clone(r.Context())
		r.URL.Scheme, r.URL.Host, r.Host = t.base.Scheme, t.base.Host, t.base.Host
	}
	resp, err := t.next.RoundTrip(r)
	if err == nil && resp.StatusCode == http.StatusTooManyRequests {
		if d := adapters.RetryAfterHeader(resp.Header); d > 0 {
			t.mu.Lock()
			t.retryUntil = time.Now().Add(d)
			t.mu.Unlock()
		}
	}
	return resp, err
}

// RetryAfter is how long Twilio asked us to wait, as of now.
func (c *Client) RetryAfter() time.Duration {
	c.t.mu.Lock()
	defer c.t.mu.Unlock()
	return max(time.Until(c.t.retryUntil), 0)
}

var digits = regexp.MustCompile(`\+?[0-9][0-9 ]{5,}[0-9]`)

// Redact removes phone numbers from a provider's text.
func Redact(s string) string { return digits.ReplaceAllString(s, "[number]") }

// redacted is an error whose text has no phone numbers; it keeps the original
// for errors.As (the Twilio code) but never prints it.
type redacted struct {
	msg string
	err error
}

func (e redacted) Error() string { return e.msg }
func (e redacted) Unwrap() error { return e.err }

// Classify turns a twilio-go error into one the decorators understand, by
// adapters.ClassifyStatus: 429 honours Twilio's Retry-After; 401/403 open the
// account's breaker so the fallback account takes over; other 4xx (a bad
// number) fail the delivery without tripping the breaker; 5xx and transport
// errors are retried. Phone numbers are redacted.
func (c *Client) Classify(op string, err error) error {
	if err == nil {
		return nil
	}
	e := redacted{msg: op + ": " + Redact(err.Error()), err: err}
	var te *twclient.TwilioRestError
	if errors.As(err, &te) {
		return adapters.ClassifyStatus(te.Status, c.RetryAfter(), e)
	}
	return e
}

// Do runs a twilio-go call, which takes no context. If ctx has already ended
// nothing is sent and Do returns adapters.NotAttempted(ctx.Err()). Otherwise
// it returns when the call does or when ctx ends, whichever is first; a call
// abandoned that way may still reach Twilio, so it counts as attempted and
// stays registered with adapters.Track until it has really ended.
func Do[T any](ctx context.Context, call func() (T, error)) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, adapters.NotAttempted(err)
	}
	type result struct {
		v   T
		err error
	}
	ch := make(chan result, 1)
	done := adapters.Track(ctx)
	go func() { // exits when the call returns (bounded by the client timeout)
		defer done()
		v, err := call()
		ch <- result{v, err}
	}()
	select {
	case r := <-ch:
		return r.v, r.err
	case <-ctx.Done():
		return zero, ctx.Err()
	}
}
