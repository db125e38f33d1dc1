package dispatch_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"net"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/adapterstest"
	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

var key = []byte("shared-hmac-key-with-the-centre")

// The conformance suite, against a centre that checks the HMAC header and
// the XML signature (the gateway's certificate pinned) of everything.
func TestConformance(t *testing.T) {
	signer := newSigner(t)
	centres, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": key}, Pinned: []*x509.Certificate{signer.Certificate()}})
	if err != nil {
		t.Fatal(err)
	}
	defer centres.Close()
	invalid := alert.Target{Kind: alert.KindDispatch, ID: "unknown-centre"}
	adapterstest.Run(t, adapterstest.Harness{
		New: func(t *testing.T, log zerolog.Logger) adapters.Adapter {
			return newNotifier(t, dispatch.Config{Sender: "tocsin@example.org", Timeout: 2 * time.Second, Signer: signer,
				Centres: map[string]dispatch.Centre{"ils": {ID: "ils", URL: centres.URL("ils"), Key: key, InsecureHTTP: true}}})
		},
		Target:  alert.Target{Kind: alert.KindDispatch, ID: "ils"},
		Invalid: &invalid,
		Break:   func(mode string) { centres.Fail("ils", mode) },
		Received: func(id string, msg alert.Message) int {
			n := 0
			for _, r := range centres.Received() {
				if r.Doc.Identifier == id && (r.Doc.MsgType == "Alert") == (msg == alert.MessageAlert) {
					n++
				}
			}
			return n
		},
		Secrets: []string{string(key)},
	})
	if centres.Rejected() != 0 {
		t.Fatalf("the centre refused %d signatures: %v", centres.Rejected(), centres.Rejections())
	}
	for _, r := range centres.Received() {
		if !r.Signed {
			t.Fatalf("%s %s reached the centre without a verified XML signature", r.Doc.MsgType, r.Doc.Identifier)
		}
	}
}

// The retraction is a Cancel that references the original exactly, then an
// Update with responseType AllClear in every language.
func TestRetractionIsCancelThenAllClear(t *testing.T) {
	centres, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": key}})
	if err != nil {
		t.Fatal(err)
	}
	defer centres.Close()
	n := newNotifier(t, dispatch.Config{Sender: "tocsin@example.org", Signer: newSigner(t),
		Centres: map[string]dispatch.Centre{"ils": {ID: "ils", URL: centres.URL("ils"), Key: key, InsecureHTTP: true}}})
	a := &alert.Alert{ID: "a1", Status: alert.StatusActual, Event: "Amok", Headline: "Amokalarm Schule", Severity: alert.SeverityExtreme,
		Urgency: alert.UrgencyImmediate, Zones: []string{"school"}, Sent: time.Date(2026, 11, 22, 9, 2, 0, 0, time.UTC), Expires: time.Now().Add(time.Hour)}
	tg := alert.Target{Kind: alert.KindDispatch, ID: "ils"}
	for _, msg := range []alert.Message{alert.MessageAlert, alert.MessageRetraction} {
		d := alert.Delivery{ID: alert.DeliveryID(a.ID, tg, msg), Alert: a, Target: tg, Message: msg, Reason: "false_alarm", Expires: a.Expires}
		if err := n.Deliver(context.Background(), d); err != nil {
			t.Fatalf("Deliver(%s) = %v", msg, err)
		}
	}
	got := centres.Received()
	if len(got) != 3 || got[0].Doc.MsgType != "Alert" || got[1].Doc.MsgType != "Cancel" || got[2].Doc.MsgType != "Update" {
		t.Fatalf("centre got %d documents; want Alert, Cancel, Update", len(got))
	}
	orig := got[0].Doc
	if orig.Sent != "2026-11-22T09:02:00-00:00" {
		t.Errorf("original sent = %q; want UTC written as -00:00", orig.Sent)
	}
	want := orig.Sender + "," + orig.Identifier + "," + orig.Sent
	for _, r := range got[1:] {
		if r.Doc.References != want {
			t.Errorf("%s references %q, want %q", r.Doc.MsgType, r.Doc.References, want)
		}
	}
	up := got[2].Doc
	if len(up.Infos) != 2 || up.Infos[0].ResponseTypes[0] != "AllClear" || !strings.Contains(up.Infos[0].Headline+up.Infos[1].Headline, "war ein Fehlalarm") {
		t.Errorf("update infos = %+v; want AllClear in German and English", up.Infos)
	}
	// What Tocsin wrote reads back with its own decoder, too.
	if _, err := cap.Decode(strings.NewReader(string(got[0].Raw))); err != nil {
		t.Errorf("cap.Decode(original) = %v", err)
	}
}

// The signature covers timestamp and body; a stale or altered request fails.
func TestVerify(t *testing.T) {
	body := []byte("<alert/>")
	now := time.Now()
	h := http.Header{}
	h.Set(dispatch.HeaderSignature, dispatch.Sign(key, now, body))
	h.Set(dispatch.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	if err := dispatch.Verify(key, h, body, now); err != nil {
		t.Fatalf("Verify(good) = %v", err)
	}
	if err := dispatch.Verify(key, h, []byte("<alert>x</alert>"), now); err == nil {
		t.Error("Verify(altered body) = nil")
	}
	if err := dispatch.Verify(key, h, body, now.Add(10*time.Minute)); err == nil {
		t.Error("Verify(stale) = nil")
	}
	if err := dispatch.Verify([]byte("other"), h, body, now); err == nil {
		t.Error("Verify(wrong key) = nil")
	}
}

// mTLS: a centre that requires a client certificate gets one; without it the
// delivery fails (retryably: the endpoint, not the message, is the problem).
func TestMutualTLS(t *testing.T) {
	ca, caKey := cert(t, nil, nil, "Test CA", true)
	srv, srvKey := cert(t, ca, caKey, "127.0.0.1", false)
	cli, cliKey := cert(t, ca, caKey, "tocsin", false)
	pool := x509.NewCertPool()
	pool.AddCert(ca)
	centres, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": key}, TLS: &tls.Config{
		Certificates: []tls.Certificate{{Certificate: [][]byte{srv.Raw}, PrivateKey: srvKey}},
		ClientAuth:   tls.RequireAndVerifyClientCert, ClientCAs: pool, MinVersion: tls.VersionTLS12,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer centres.Close()
	a := &alert.Alert{ID: "a1", Status: alert.StatusActual, Event: "Fire", Zones: []string{"z"}, Sent: time.Now(), Expires: time.Now().Add(time.Hour)}
	tg := alert.Target{Kind: alert.KindDispatch, ID: "ils"}
	d := alert.Delivery{ID: alert.DeliveryID(a.ID, tg, alert.MessageAlert), Alert: a, Target: tg, Message: alert.MessageAlert, Expires: a.Expires}
	signer := newSigner(t)
	for _, tt := range []struct {
		name   string
		certs  []tls.Certificate
		wantOK bool
	}{
		{"with client certificate", []tls.Certificate{{Certificate: [][]byte{cli.Raw}, PrivateKey: cliKey}}, true},
		{"without", nil, false},
	} {
		n := newNotifier(t, dispatch.Config{Sender: "tocsin@example.org", Timeout: 2 * time.Second, Signer: signer, Centres: map[string]dispatch.Centre{
			"ils": {ID: "ils", URL: centres.URL("ils"), Key: key, TLS: &tls.Config{RootCAs: pool, Certificates: tt.certs, MinVersion: tls.VersionTLS12}}}})
		err := n.Deliver(context.Background(), d)
		if (err == nil) != tt.wantOK || adapters.IsPermanent(err) {
			t.Errorf("%s: Deliver = %v, want ok=%v (and never permanent)", tt.name, err, tt.wantOK)
		}
	}
}

func cert(t *testing.T, parent *x509.Certificate, parentKey *ecdsa.PrivateKey, cn string, isCA bool) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: isCA, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	if ip := net.ParseIP(cn); ip != nil {
		tmpl.IPAddresses = []net.IP{ip}
	}
	signer, signerKey := tmpl, k
	if parent != nil {
		signer, signerKey = parent, parentKey
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, signer, &k.PublicKey, signerKey)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	return c, k
}

// A centre gets the alert in every language it is written in, and the
// retraction notice in every language with texts, configured ones included.
func TestEveryLanguageToTheCentre(t *testing.T) {
	a := testAlert()
	a.Language, a.Infos = "de", []alert.Info{{Language: "en", Headline: "Active shooter"}}
	orig := dispatch.Original(deliveryOf(a, alert.MessageAlert), "tocsin@example.org", nil)
	if len(orig.Infos) != 2 || orig.Infos[1].Language != "en" || orig.Infos[1].Headline != "Active shooter" || orig.Infos[1].Event != a.Event {
		t.Fatalf("original infos = %+v; want de and en", orig.Infos)
	}
	var tx alert.Texts
	for _, k := range alert.TextKeys {
		tx.Set(k, "pl", "", "PL "+k+" {headline}")
	}
	d := deliveryOf(a, alert.MessageRetraction)
	d.Reason = "false_alarm"
	_, up := dispatch.Retraction(d, "tocsin@example.org", nil, time.Now(), &tx)
	var langs []string
	for _, in := range up.Infos {
		langs = append(langs, in.Language)
		if in.Language == "pl" && in.Headline != "PL false_alarm Active shooter" { // no Polish block: the English one
			t.Errorf("pl notice = %q", in.Headline)
		}
		if in.Language == "en" && !strings.Contains(in.Headline, "Active shooter") {
			t.Errorf("en notice = %q; want the English headline", in.Headline)
		}
	}
	if strings.Join(langs, ",") != "de,en,pl" {
		t.Fatalf("AllClear languages = %v; want de, en, pl", langs)
	}
}
