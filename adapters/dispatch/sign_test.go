package dispatch_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"math/big"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// newSigner is a Signer with a fresh key and self-signed certificate, read
// back from the PEM files fake.TestSigningCert writes (as the gateway
// reads dispatch.signing).
func newSigner(t *testing.T) *dispatch.Signer {
	t.Helper()
	certFile, keyFile, err := fake.TestSigningCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dispatch.NewSigner(pair.PrivateKey.(*rsa.PrivateKey), pair.Leaf)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func newNotifier(t *testing.T, cfg dispatch.Config) *dispatch.Notifier {
	t.Helper()
	n, err := dispatch.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// pinnedCentre is a fake centre "ils" that pins the certificate of pinned,
// and a notifier that signs with signer and reaches it.
func pinnedCentre(t *testing.T, pinned, signer *dispatch.Signer) (*fake.Dispatch, *dispatch.Notifier) {
	t.Helper()
	centres, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": key}, Pinned: []*x509.Certificate{pinned.Certificate()}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(centres.Close)
	return centres, newNotifier(t, dispatch.Config{Sender: "tocsin@example.org", Signer: signer,
		Centres: map[string]dispatch.Centre{"ils": {ID: "ils", URL: centres.URL("ils"), Key: key, InsecureHTTP: true}}})
}

// selfSigned is a certificate for key valid from notBefore to notAfter.
func selfSigned(t *testing.T, key *rsa.PrivateKey, notBefore, notAfter time.Time) *x509.Certificate {
	t.Helper()
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(time.Now().UnixNano()), Subject: pkix.Name{CommonName: "tocsin"},
		NotBefore: notBefore, NotAfter: notAfter, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func testAlert() *alert.Alert {
	return &alert.Alert{ID: "a1", Status: alert.StatusActual, Event: "Amok", Headline: "Amokalarm Schule", Severity: alert.SeverityExtreme,
		Urgency: alert.UrgencyImmediate, Zones: []string{"school"}, Sent: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour)}
}

var ils = alert.Target{Kind: alert.KindDispatch, ID: "ils"}

func deliveryOf(a *alert.Alert, msg alert.Message) alert.Delivery {
	return alert.Delivery{ID: alert.DeliveryID(a.ID, ils, msg), Alert: a, Target: ils, Message: msg, Reason: "false_alarm", Expires: a.Expires}
}

// Every kind of document Tocsin sends a centre — an alert, an alert that
// updates an earlier one, the retraction's Cancel and its AllClear Update —
// carries an enveloped XML signature (exclusive c14n, RSA-SHA256) that
// cap.VerifySignature accepts against the gateway's certificate and refuses
// against any other; the HMAC header is over the same, signed, bytes.
func TestEverythingSentIsXMLSigned(t *testing.T) {
	gw, other := newSigner(t), newSigner(t)
	centres, n := pinnedCentre(t, gw, gw)
	a := testAlert()
	update := testAlert()
	update.ID = "a2"
	update.Supersedes = []alert.Superseded{{ID: a.ID, Sent: a.Sent, Expires: a.Expires}}
	for _, d := range []alert.Delivery{deliveryOf(a, alert.MessageAlert), deliveryOf(update, alert.MessageAlert), deliveryOf(a, alert.MessageRetraction)} {
		if err := n.Deliver(context.Background(), d); err != nil {
			t.Fatalf("Deliver(%s %s) = %v", d.Alert.ID, d.Message, err)
		}
	}
	got := centres.Received()
	var types []string
	for _, r := range got {
		types = append(types, r.Doc.MsgType)
	}
	if strings.Join(types, ",") != "Alert,Update,Cancel,Update" {
		t.Fatalf("centre got %v; want Alert, Update (of the alert), Cancel, Update (AllClear)", types)
	}
	if centres.Rejected() != 0 {
		t.Fatalf("centre refused: %v", centres.Rejections())
	}
	for _, r := range got {
		what := r.Doc.MsgType + " " + r.Doc.Identifier
		if !r.Signed {
			t.Errorf("%s: the centre did not verify an XML signature", what)
		}
		for _, alg := range []string{"http://www.w3.org/2000/09/xmldsig#enveloped-signature", "http://www.w3.org/2001/10/xml-exc-c14n#",
			"http://www.w3.org/2001/04/xmldsig-more#rsa-sha256", "http://www.w3.org/2001/04/xmlenc#sha256"} {
			if !bytes.Contains(r.Raw, []byte(`"`+alg+`"`)) {
				t.Errorf("%s: the signature does not use %s", what, alg)
			}
		}
		verified, err := cap.VerifySignature(r.Raw, []*x509.Certificate{gw.Certificate()}, time.Now())
		if err != nil {
			t.Fatalf("%s: VerifySignature(gateway certificate) = %v", what, err)
		}
		if c, err := cap.Parse(verified); err != nil || c.Identifier != r.Doc.Identifier || c.MsgType != r.Doc.MsgType {
			t.Errorf("%s: verified document reads %+v, %v", what, c, err)
		}
		if _, err := cap.Parse(r.Raw); err != nil {
			t.Errorf("%s: Tocsin's own parser refuses the signed document: %v", what, err)
		}
		if _, err := cap.VerifySignature(r.Raw, []*x509.Certificate{other.Certificate()}, time.Now()); err == nil {
			t.Errorf("%s: verified against a certificate that is not the gateway's", what)
		}
	}
}

// Changing any byte of a signed document, from its root element's start tag
// to its end tag (the signature included), makes verification fail.
func TestTamperedDocumentFailsVerification(t *testing.T) {
	gw := newSigner(t)
	a := testAlert()
	a.Description = "Täter im Gebäude & auf dem Hof <unbestätigt>"
	doc, err := dispatch.Encode(gw, dispatch.Original(deliveryOf(a, alert.MessageAlert), "tocsin@example.org", map[string]string{"school": "Schule"}))
	if err != nil {
		t.Fatal(err)
	}
	pinned := []*x509.Certificate{gw.Certificate()}
	if _, err := cap.VerifySignature(doc, pinned, time.Now()); err != nil {
		t.Fatalf("untouched: %v", err)
	}
	start, end := bytes.Index(doc, []byte("<alert")), bytes.LastIndex(doc, []byte("</alert>"))+len("</alert>")
	if start < 0 || end < start || !bytes.Contains(doc[start:end], []byte("SignatureValue")) {
		t.Fatalf("signed document has no <alert> with a signature inside:\n%s", doc)
	}
	for i := start; i < end; i++ {
		bad := bytes.Clone(doc)
		bad[i] ^= 0x01
		if samePadding(doc, bad, i) {
			continue // the same bytes in another spelling, not a change
		}
		if _, err := cap.VerifySignature(bad, pinned, time.Now()); err == nil {
			t.Fatalf("byte %d (%q → %q) changed, and the document still verifies:\n%s", i, doc[i], bad[i], bad)
		}
	}
	// The headline changed consistently (well-formed, as an attacker would).
	bad := bytes.Replace(doc, []byte("Amokalarm Schule"), []byte("Amokalarm Rathaus"), 1)
	if _, err := cap.VerifySignature(bad, pinned, time.Now()); err == nil {
		t.Fatal("a changed headline still verifies")
	}
}

// samePadding reports whether the byte at i is the last character of a
// base64 text before its '=' padding and the flip only touched the bits the
// padding leaves unused: both spellings decode to the same bytes (the
// certificate or signature value is unchanged), so verifying is right.
func samePadding(doc, bad []byte, i int) bool {
	if i+1 >= len(doc) || doc[i+1] != '=' {
		return false
	}
	from := bytes.LastIndexByte(doc[:i], '>') + 1
	text := func(d []byte) string {
		return strings.Join(strings.Fields(string(d[from:i+1+bytes.IndexByte(d[i+1:], '<')])), "")
	}
	a, errA := base64.StdEncoding.DecodeString(text(doc))
	b, errB := base64.StdEncoding.DecodeString(text(bad))
	return errA == nil && errB == nil && bytes.Equal(a, b)
}

// A centre with the gateway's certificate pinned refuses (403, retryable
// for the adapter, counted) what another key signed and what is unsigned,
// even with a correct HMAC.
func TestCentreRefusesOtherOrNoXMLSignature(t *testing.T) {
	gw, other := newSigner(t), newSigner(t)
	centres, n := pinnedCentre(t, gw, other)
	err := n.Deliver(context.Background(), deliveryOf(testAlert(), alert.MessageAlert))
	if err == nil || adapters.IsPermanent(err) || !strings.Contains(err.Error(), "403") {
		t.Fatalf("Deliver signed by another key = %v; want a retryable 403", err)
	}
	unsigned, err := cap.Encode(dispatch.Original(deliveryOf(testAlert(), alert.MessageAlert), "tocsin@example.org", nil))
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	req, _ := http.NewRequest(http.MethodPost, centres.URL("ils"), bytes.NewReader(unsigned))
	req.Header.Set(dispatch.HeaderTimestamp, strconv.FormatInt(now.Unix(), 10))
	req.Header.Set(dispatch.HeaderSignature, dispatch.Sign(key, now, unsigned))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unsigned document with a good HMAC: HTTP %d, want 403", resp.StatusCode)
	}
	if len(centres.Received()) != 0 || centres.Rejected() != 2 || !strings.Contains(strings.Join(centres.Rejections(), "\n"), "XML signature") {
		t.Errorf("centre accepted %d, refused %v; want both refused for their XML signature", len(centres.Received()), centres.Rejections())
	}
}

// With an expired signing certificate nothing is sent, and the delivery is
// retryable (a gateway restarted with a renewed certificate delivers it).
func TestExpiredSigningCertificateSendsNothing(t *testing.T) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	s, err := dispatch.NewSigner(k, selfSigned(t, k, time.Now().Add(-48*time.Hour), time.Now().Add(-time.Hour)))
	if err != nil {
		t.Fatal(err)
	}
	centres, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": key}})
	if err != nil {
		t.Fatal(err)
	}
	defer centres.Close()
	n := newNotifier(t, dispatch.Config{Sender: "tocsin@example.org", Signer: s,
		Centres: map[string]dispatch.Centre{"ils": {ID: "ils", URL: centres.URL("ils"), Key: key, InsecureHTTP: true}}})
	err = n.Deliver(context.Background(), deliveryOf(testAlert(), alert.MessageAlert))
	if !errors.Is(err, dispatch.ErrCertificateExpired) || adapters.IsPermanent(err) {
		t.Fatalf("Deliver = %v; want retryable ErrCertificateExpired", err)
	}
	if len(centres.Received())+centres.Rejected() != 0 {
		t.Fatal("something reached the centre")
	}
}

// New refuses to build an adapter that would send unsigned CAP or CAP over
// plain http:// without the centre's explicit insecure_http; NewSigner
// refuses a key that does not match its certificate or is too short.
func TestNewRefusesUnsignedOrPlainHTTP(t *testing.T) {
	s := newSigner(t)
	centre := func(url string, insecure bool) map[string]dispatch.Centre {
		return map[string]dispatch.Centre{"ils": {ID: "ils", URL: url, Key: key, InsecureHTTP: insecure}}
	}
	for _, tt := range []struct {
		name   string
		cfg    dispatch.Config
		wantOK bool
	}{
		{"no signer", dispatch.Config{Centres: centre("https://ils.example/cap", false)}, false},
		{"http:// without InsecureHTTP", dispatch.Config{Signer: s, Centres: centre("http://ils.example/cap", false)}, false},
		{"HTTP:// without InsecureHTTP", dispatch.Config{Signer: s, Centres: centre("HTTP://ils.example/cap", false)}, false},
		{"not a URL", dispatch.Config{Signer: s, Centres: centre("ftp://ils.example/cap", true)}, false},
		{"http:// with InsecureHTTP", dispatch.Config{Signer: s, Centres: centre("http://127.0.0.1:1/cap", true)}, true},
		{"https://", dispatch.Config{Signer: s, Centres: centre("https://ils.example/cap", false)}, true},
	} {
		if _, err := dispatch.New(tt.cfg); (err == nil) != tt.wantOK {
			t.Errorf("%s: New = %v, want ok=%v", tt.name, err, tt.wantOK)
		}
	}

	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dispatch.NewSigner(k, s.Certificate()); err == nil || !strings.Contains(err.Error(), "does not match") {
		t.Errorf("NewSigner(key of another certificate) = %v", err)
	}
	small, err := rsa.GenerateKey(rand.Reader, 1024)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := dispatch.NewSigner(small, selfSigned(t, small, time.Now(), time.Now().Add(time.Hour))); err == nil {
		t.Error("NewSigner(1024-bit key) = nil")
	}
	if _, err := dispatch.NewSigner(nil, s.Certificate()); err == nil {
		t.Error("NewSigner(no key) = nil")
	}
}
