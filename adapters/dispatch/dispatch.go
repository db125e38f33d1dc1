// Package dispatch forwards alerts to dispatch centres as CAP 1.2 XML. Each
// document carries an enveloped XML signature made with the gateway's own key
// and certificate (Signer), and is POSTed to the centre's https:// endpoint
// (plain http:// only where a centre is explicitly configured insecure) with
// an HMAC over timestamp and the signed body (and over mTLS where
// configured). A retraction goes as a
// CAP Cancel referencing the original, then an Update with responseType
// AllClear, in every language Tocsin has texts for. A 2xx means the centre
// has the document; its CAP Ack, posted back to the gateway, marks the
// delivery delivered, so the adapter is Pending.
package dispatch

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
)

// The headers that carry the signature.
const (
	HeaderTimestamp = "X-Tocsin-Timestamp"
	HeaderSignature = "X-Tocsin-Signature"
)

// MaxSkew is how far a signed request's timestamp may be from now.
const MaxSkew = 5 * time.Minute

// Sign is the signature header value for body sent at ts: "sha256=" and the
// hex HMAC-SHA256 of "{unix seconds}.{body}".
func Sign(key []byte, ts time.Time, body []byte) string {
	m := hmac.New(sha256.New, key)
	m.Write([]byte(strconv.FormatInt(ts.Unix(), 10)))
	m.Write([]byte("."))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}

// Verify checks a request's signature headers against body, in constant time,
// and that its timestamp is within MaxSkew of now.
func Verify(key []byte, h http.Header, body []byte, now time.Time) error {
	sec, err := strconv.ParseInt(h.Get(HeaderTimestamp), 10, 64)
	if err != nil {
		return fmt.Errorf("%s: want unix seconds", HeaderTimestamp)
	}
	ts := time.Unix(sec, 0)
	if d := now.Sub(ts); d > MaxSkew || d < -MaxSkew {
		return fmt.Errorf("%s: %v away from now, more than %v", HeaderTimestamp, d.Round(time.Second), MaxSkew)
	}
	if !hmac.Equal([]byte(Sign(key, ts, body)), []byte(h.Get(HeaderSignature))) {
		return fmt.Errorf("%s does not match the body", HeaderSignature)
	}
	return nil
}

// Centre is one dispatch centre as the adapter reaches it.
type Centre struct {
	ID, URL string
	// Key is the HMAC key of the X-Tocsin-Signature header.
	Key []byte
	// InsecureHTTP allows an http:// URL; without it the URL must be https://.
	InsecureHTTP bool
	// TLS, if set, is the client TLS configuration (mTLS, pinned CA).
	TLS *tls.Config
}

// Config configures the dispatch adapter.
type Config struct {
	// Sender is the CAP <sender> of every message.
	Sender string
	// Signer XML-signs every document sent (required).
	Signer  *Signer
	Centres map[string]Centre
	// ZoneNames name zones in <areaDesc>.
	ZoneNames map[string]string
	// Timeout bounds one POST (10s).
	Timeout  time.Duration
	Location *time.Location
	// Texts, if set, are the configured retraction texts; otherwise the
	// defaults in Location.
	Texts *alert.Texts
}

// Notifier is the dispatch adapter.
type Notifier struct {
	cfg     Config
	clients map[string]*http.Client
}

var (
	_ adapters.Adapter = (*Notifier)(nil)
	_ adapters.Router  = (*Notifier)(nil)
	_ adapters.Pending = (*Notifier)(nil)
)

// New builds the adapter, one HTTP client per centre. It refuses a
// configuration without a Signer, or with a centre whose URL is not https://
// (http:// only with InsecureHTTP).
func New(cfg Config) (*Notifier, error) {
	if cfg.Timeout == 0 {
		cfg.Timeout = 10 * time.Second
	}
	if cfg.Signer == nil {
		return nil, errors.New("dispatch: no signer: every CAP document sent to a centre must be XML-signed")
	}
	n := &Notifier{cfg: cfg, clients: map[string]*http.Client{}}
	for id, c := range cfg.Centres {
		u, err := url.Parse(c.URL)
		switch {
		case err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http"):
			return nil, fmt.Errorf("dispatch: centre %q: url must be an https:// URL", id)
		case u.Scheme == "http" && !c.InsecureHTTP:
			return nil, fmt.Errorf("dispatch: centre %q: url must be https:// (http:// only with insecure_http)", id)
		}
		t := http.DefaultTransport.(*http.Transport).Clone()
		if c.TLS != nil {
			t.TLSClientConfig = c.TLS
		}
		n.clients[id] = &http.Client{Transport: t, Timeout: cfg.Timeout,
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	}
	return n, nil
}

// Route is one breaker per centre.
func (n *Notifier) Route(d alert.Delivery) adapters.Route {
	return adapters.Route{Breaker: "dispatch/" + d.Target.ID}
}

// ProbePrefix starts the identifier of a probe: a CAP Test message a centre
// must Ack like any other, which tells Tocsin the whole path works.
const ProbePrefix = "probe."

// Probe sends centre a signed CAP message with status Test (nothing for a
// centre to act on) and returns its identifier; the probe passes when the
// centre's Ack referencing it arrives.
func (n *Notifier) Probe(ctx context.Context, centre string) (string, error) {
	c, ok := n.cfg.Centres[centre]
	if !ok {
		return "", fmt.Errorf("dispatch: no centre %q", centre)
	}
	var b [6]byte
	rand.Read(b[:])
	now := time.Now()
	msg := header(ProbePrefix+centre+"."+hex.EncodeToString(b[:]), n.cfg.Sender, now, alert.StatusTest, "Alert")
	msg.Note = "Tocsin probe: please acknowledge; nothing to act on"
	exp := cap.Time{Time: now.Add(10 * time.Minute)}
	msg.Infos = []cap.Info{{Language: "en", Categories: []string{"Other"}, Event: "Probe", Urgency: "Unknown", Severity: "Unknown",
		Certainty: "Unknown", Expires: &exp, SenderName: "Tocsin", Headline: "Tocsin probe"}}
	return msg.Identifier, n.post(ctx, c, msg)
}

// Pending says a nil Deliver means the centre has it; its CAP Ack confirms.
func (n *Notifier) Pending() bool { return true }

// AllClearSuffix ends the identifier of the Update that follows a Cancel.
const AllClearSuffix = "-allclear"

// Original is the CAP message of d's alert. Its identifier is d's delivery
// id, so the centre's Ack names the delivery; its sent time is the alert's,
// so a later Cancel can reference it exactly.
func Original(d alert.Delivery, sender string, zoneNames map[string]string) *cap.Alert {
	a := d.Alert
	orig := d
	orig.Message = alert.MessageAlert
	orig.ID = alert.DeliveryID(a.ID, d.Target, alert.MessageAlert)
	c := header(orig.ID, sender, a.Sent, a.Status, "Alert")
	// An alert that replaced others goes as an Update referencing every
	// earlier message of its chain that this centre got from Tocsin.
	if refs := chain(d, sender); len(refs) > 0 {
		c.MsgType, c.References = "Update", cap.JoinReferences(refs...)
	}
	exp := cap.Time{Time: a.Expires}
	certainty := a.Certainty
	if certainty == "" {
		certainty = "Unknown"
	}
	lang := a.Language
	if lang == "" {
		lang = "de-DE"
	}
	// One <info> per language the alert is written in.
	for _, in := range append([]alert.Info{{Language: lang, Event: a.Event, Headline: a.Headline, Description: a.Description, Instruction: a.Instruction}}, a.Infos...) {
		if in.Event == "" {
			in.Event = a.Event
		}
		c.Infos = append(c.Infos, cap.Info{
			Language: in.Language, Categories: []string{"Safety"}, Event: in.Event,
			Urgency: a.Urgency.String(), Severity: a.Severity.String(), Certainty: certainty,
			Expires: &exp, SenderName: "Tocsin", Headline: in.Headline, Description: in.Description, Instruction: in.Instruction,
			Parameters: []cap.Value{{ValueName: "tocsin:alert_id", Value: string(a.ID)}},
			Areas:      areas(a.Zones, zoneNames),
		})
	}
	return c
}

// Retraction is what retracts d's alert at a centre: a Cancel referencing the
// original, and an Update with responseType AllClear, with the prepared
// retraction text (tx) in every language it has.
func Retraction(d alert.Delivery, sender string, zoneNames map[string]string, now time.Time, tx *alert.Texts) (cancel, update *cap.Alert) {
	a := d.Alert
	// Both reference the original and every earlier unexpired message of its chain.
	refs := cap.JoinReferences(append([]cap.Reference{Original(d, sender, zoneNames).Ref()}, chain(d, sender)...)...)
	cancel = header(d.ID, sender, now, a.Status, "Cancel")
	cancel.References = refs
	cancel.Note = tx.Text(a, alert.KindDispatch, alert.MessageRetraction, d.Reason, "en")
	update = header(d.ID+AllClearSuffix, sender, now, a.Status, "Update")
	update.References = refs
	for _, lang := range tx.Languages() {
		update.Infos = append(update.Infos, cap.Info{
			Language: lang, Categories: []string{"Safety"}, Event: a.Event, ResponseTypes: []string{"AllClear"},
			Urgency: "Past", Severity: "Minor", Certainty: "Observed", SenderName: "Tocsin",
			Headline:   tx.Text(a, alert.KindDispatch, alert.MessageRetraction, d.Reason, lang),
			Parameters: []cap.Value{{ValueName: "tocsin:alert_id", Value: string(a.ID)}, {ValueName: "tocsin:reason", Value: d.Reason}},
			Areas:      areas(a.Zones, zoneNames),
		})
	}
	return cancel, update
}

// chain references the earlier unexpired messages of d's alert's chain, as
// Tocsin sent them to d's centre.
func chain(d alert.Delivery, sender string) []cap.Reference {
	var refs []cap.Reference
	for _, old := range d.Alert.Supersedes {
		if old.Expires.After(time.Now()) {
			refs = append(refs, cap.Reference{Sender: sender, Identifier: alert.DeliveryID(old.ID, d.Target, alert.MessageAlert), Sent: cap.FormatTime(old.Sent)})
		}
	}
	return refs
}

func header(id, sender string, sent time.Time, st alert.Status, msgType string) *cap.Alert {
	status := strings.ToUpper(string(st[:1])) + string(st[1:])
	return &cap.Alert{Identifier: id, Sender: sender, Sent: cap.Time{Time: sent}, Status: status, MsgType: msgType, Scope: "Restricted",
		Restriction: "For dispatch centres"}
}

func areas(zones []string, names map[string]string) []cap.Area {
	var out []cap.Area
	for _, z := range zones {
		desc := names[z]
		if desc == "" {
			desc = z
		}
		out = append(out, cap.Area{AreaDesc: desc, Geocodes: []cap.Value{{ValueName: "tocsin:zone", Value: z}}})
	}
	return out
}

// Deliver POSTs d's CAP document(s) to its centre.
func (n *Notifier) Deliver(ctx context.Context, d alert.Delivery) error {
	if d.Target.Kind != alert.KindDispatch {
		return adapters.Permanent(fmt.Errorf("dispatch: target %s is not a dispatch centre", d.Target.Key()))
	}
	c, ok := n.cfg.Centres[d.Target.ID]
	if !ok {
		return adapters.Permanent(fmt.Errorf("dispatch: no centre %q in the configuration", d.Target.ID))
	}
	if d.Message == alert.MessageAlert {
		return n.post(ctx, c, Original(d, n.cfg.Sender, n.cfg.ZoneNames))
	}
	if d.Reason == "superseded" {
		// The Update that replaces it references it; a Cancel and an
		// AllClear here would tell the centre the danger is over.
		return nil
	}
	tx := n.cfg.Texts
	if tx == nil {
		tx = &alert.Texts{Location: n.cfg.Location}
	}
	cancel, update := Retraction(d, n.cfg.Sender, n.cfg.ZoneNames, time.Now(), tx)
	if err := n.post(ctx, c, cancel); err != nil {
		return err
	}
	return n.post(ctx, c, update)
}

// Encode is msg as the centre gets it: CAP 1.2 XML with an enveloped XML
// signature by s. These are exactly the bytes POSTed (and HMAC-signed).
func Encode(s *Signer, msg *cap.Alert) ([]byte, error) {
	doc, err := cap.Encode(msg)
	if err != nil {
		return nil, fmt.Errorf("encode CAP: %w", err)
	}
	signed, err := s.SignXML(doc)
	if err != nil {
		return nil, fmt.Errorf("XML-sign CAP: %w", err)
	}
	return signed, nil
}

func (n *Notifier) post(ctx context.Context, c Centre, msg *cap.Alert) error {
	body, err := Encode(n.cfg.Signer, msg)
	switch {
	case errors.Is(err, ErrCertificateExpired):
		// Nothing unsigned is ever sent. A gateway restarted with a renewed
		// certificate delivers what is still owed, so this stays retryable.
		return fmt.Errorf("dispatch: centre %s %s: %w", c.ID, msg.MsgType, err)
	case err != nil:
		return adapters.Permanent(fmt.Errorf("dispatch: %w", err))
	}
	now := time.Now()
	return adapters.Post(ctx, n.clients[c.ID], "dispatch: centre "+c.ID+" "+msg.MsgType, c.URL, body, map[string]string{
		"Content-Type": cap.ContentType, HeaderTimestamp: strconv.FormatInt(now.Unix(), 10), HeaderSignature: Sign(c.Key, now, body),
	})
}
