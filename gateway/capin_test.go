package gateway_test

import (
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/beevik/etree"
	dsig "github.com/russellhaering/goxmldsig"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/cap"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// world is a zone outline around the whole map, so every CAP polygon or
// circle hits it.
const world = "-89,-179 -89,179 89,179 89,-179 -89,-179"

var expiresRE = regexp.MustCompile(`(<(?:cap:)?expires>)[^<]*(</(?:cap:)?expires>)`)

// fresh moves a real document's expiry into the future (they are all past),
// and leaves every other byte as its authority wrote it.
func fresh(b []byte) []byte {
	exp := cap.FormatTime(time.Now().Add(time.Hour).UTC())
	return expiresRE.ReplaceAll(b, []byte("${1}"+exp+"${2}"))
}

func readFixtures(t *testing.T) map[string][]byte {
	files, _ := filepath.Glob("../cap/testdata/*.xml")
	if len(files) != 30 {
		t.Fatalf("%d CAP fixtures, want 30", len(files))
	}
	out := map[string][]byte{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(f)] = b
	}
	return out
}

// A dispatch centre can post every real CAP document: Alerts and Updates
// whose areas hit a zone are accepted through the same queue as JSON (here
// the school zone is the whole map, plus one geocode from each document that
// has no geometry); Cancels of messages not seen leave tombstones; a document
// whose area names no geocode or geometry is refused naming the area. The
// school has sirens and staff: every document below Severe reaches the staff
// and has its sirens withheld by the channel policy, and says so (a test
// message is not held back: it reaches only drill targets, as test).
func TestCAPRealDocumentsIngest(t *testing.T) {
	docs := readFixtures(t)
	var codes []string
	for _, b := range docs {
		a, err := cap.Parse(b)
		if err != nil {
			t.Fatal(err)
		}
		for _, in := range a.Infos {
			for _, ar := range in.Areas {
				if len(ar.Polygons)+len(ar.Circles) == 0 && len(ar.Geocodes) > 0 {
					codes = append(codes, fmt.Sprintf("%q", ar.Geocodes[0].ValueName+"="+ar.Geocodes[0].Value))
				}
			}
		}
	}
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{school: fmt.Sprintf("{id: school, geocodes: [%s], polygon: %q}", strings.Join(codes, ", "), world), phones: 1, twilio: tw})
	s.cancelWorkers() // ingest only
	for name, b := range docs {
		r := s.postCAP(string(fresh(b)))
		msgType := regexp.MustCompile(`msgType>(\w+)<`).FindStringSubmatch(string(b))[1]
		switch {
		case name == "oasis-example-a1-homeland-security.xml":
			if r.Code != 400 || r.Body["field"] != "alert/info/area" {
				t.Errorf("%s: %d %s; want 400 naming alert/info/area (its area has only a description)", name, r.Code, r.Raw)
			}
		case msgType == "Cancel":
			if r.Code != 202 || !strings.Contains(r.Raw, `"tombstoned":["`) {
				t.Errorf("%s: %d %s; want 202 with a tombstone for the unseen original", name, r.Code, r.Raw)
			}
		default:
			if (r.Code != 202 && r.Code != 200) || r.Body["id"] == nil {
				t.Errorf("%s: %d %s; want accepted", name, r.Code, r.Raw)
				continue
			}
			got := s.get(r.Body["id"].(string))
			if got.Body["msgType"] != msgType || got.Body["source"] == "" {
				t.Errorf("%s: stored %s; want msgType %s and the CAP sender as source", name, got.Raw, msgType)
			}
			sev, _ := alert.ParseSeverity(fmt.Sprint(got.Body["severity"]))
			if withheld := strings.Contains(r.Raw, `"withheld":[{"kind":"siren"`); r.Code == 202 && withheld != (sev < alert.SeveritySevere && got.Body["status"] == "actual") {
				t.Errorf("%s (%s %s): %s; want the sirens withheld exactly for actual alerts below Severe", name, got.Body["status"], sev, r.Raw)
			}
		}
	}
	// The same document again is a duplicate of the first.
	b := fresh(docs["oasis-example-a2-thunderstorm-warning.xml"])
	first := s.postCAP(string(b))
	again := s.postCAP(string(b))
	if again.Code != 200 || again.Body["id"] != first.Body["id"] || again.Body["duplicate"] != true {
		t.Fatalf("repeat = %d %s; want 200 duplicate of %v", again.Code, again.Raw, first.Body["id"])
	}
}

// Invalid documents get a 400 naming the element; a building panel may not
// alert outside its zone by CAP either.
func TestCAPRejections(t *testing.T) {
	s := newStack(t, stackOptions{school: worldSchool})
	s.cancelWorkers()
	inv, _ := os.ReadFile("../cap/testdata/invalid/missing-scope.xml")
	r := s.postCAP(string(inv))
	if d, _ := r.Body["detail"].(string); r.Code != 400 || r.Body["field"] != "alert" || !strings.Contains(d, "<scope> is required") {
		t.Errorf("missing scope: %d %s", r.Code, r.Raw)
	}
	xxe, _ := os.ReadFile("../cap/testdata/invalid/xxe-external-entities-thunderstorm.xml")
	if r := s.postCAP(string(xxe)); r.Code != 400 || !strings.Contains(r.Body["detail"].(string), "DOCTYPE") {
		t.Errorf("XXE: %d %s", r.Code, r.Raw)
	}
	a2, _ := os.ReadFile("../cap/testdata/oasis-example-a2-thunderstorm-warning.xml")
	if r := s.postCAP(string(a2)); r.Code != 400 || r.Body["field"] != "alert/info[0]/expires" {
		t.Errorf("expired document: %d %s; want 400 naming alert/info[0]/expires", r.Code, r.Raw)
	}
	// Severe is the panel's ceiling; the thunderstorm warning is Severe, in
	// zone school (the panel's): allowed. Made Extreme, it is not.
	ext := strings.Replace(string(fresh(a2)), "<severity>Severe</severity>", "<severity>Extreme</severity>", 1)
	if r := s.do("POST", "/v1/alerts", buildingKey, "application/cap+xml", ext); r.Code != 403 || r.Body["scope"] != "max_severity" {
		t.Errorf("panel above its severity: %d %s; want 403 max_severity", r.Code, r.Raw)
	}
	xmlNS := s.do("POST", "/v1/alerts", dispatchKey, "application/xml", string(fresh(a2)))
	if xmlNS.Code != 202 {
		t.Errorf("application/xml with the CAP namespace: %d %s; want 202", xmlNS.Code, xmlNS.Raw)
	}
}

// A CAP Cancel that arrives before its Alert leaves a tombstone; the Alert is
// refused (409) when it comes, and nothing sounds.
func TestCAPCancelBeforeAlert(t *testing.T) {
	s := newStack(t, stackOptions{school: worldSchool})
	a2, orig := thunderstorm(t)
	cancel := cancelOf(orig, "KSTO1055887203-cancel")
	r := s.postCAP(cancel)
	if r.Code != 202 || !strings.Contains(r.Raw, orig.Identifier) {
		t.Fatalf("cancel = %d %s; want 202 with a tombstone", r.Code, r.Raw)
	}
	r = s.postCAP(string(a2))
	if r.Code != 409 || !strings.Contains(r.Raw, "cancelled before it arrived") {
		t.Fatalf("original after its cancel = %d %s; want 409", r.Code, r.Raw)
	}
	if audit := s.do("GET", "/v1/triggers?status=refused", operatorKey, "", ""); !strings.Contains(audit.Raw, orig.Identifier) {
		t.Errorf("audit = %s; want the refused original", audit.Raw)
	}
	time.Sleep(300 * time.Millisecond)
	if n := len(s.fleet.Received()); n != 0 {
		t.Fatalf("%d siren commands; want none", n)
	}
}

// A CAP Cancel after its Alert retracts it through the retraction path:
// every siren that sounded gets all_clear.
func TestCAPCancelRetracts(t *testing.T) {
	s := newStack(t, stackOptions{school: worldSchool})
	a2, orig := thunderstorm(t)
	r := s.postCAP(string(a2))
	if r.Code != 202 {
		t.Fatalf("alert = %d %s", r.Code, r.Raw)
	}
	id := r.Body["id"].(string)
	eventually(t, 5*time.Second, "sirens sounded", func() bool { return s.sirenCounts(id)["delivered"] == float64(3) })
	r = s.postCAP(cancelOf(orig, "KSTO1055887203-cancel"))
	if r.Code != 202 || !strings.Contains(r.Raw, id) {
		t.Fatalf("cancel = %d %s; want 202 retracting %s", r.Code, r.Raw, id)
	}
	eventually(t, 5*time.Second, "all_clear to 3/3", func() bool { return s.sirenCounts(id)["retracted"] == "3/3" })
}

// A CAP Update replaces a queued alert: the original's queued deliveries are
// cancelled, not sent, and only the update sounds.
func TestCAPUpdateReplacesQueuedAlert(t *testing.T) {
	s := newStack(t, stackOptions{school: worldSchool})
	s.cancelWorkers() // nothing is claimed: the original stays queued
	a2, orig := thunderstorm(t)
	r := s.postCAP(string(a2))
	if r.Code != 202 {
		t.Fatalf("alert = %d %s", r.Code, r.Raw)
	}
	origID := r.Body["id"].(string)
	r = s.postCAP(updateOf(orig, "KSTO1055887203-update", "SEVERE THUNDERSTORM WARNING EXTENDED"))
	if r.Code != 202 || !strings.Contains(r.Raw, origID) {
		t.Fatalf("update = %d %s; want 202 superseding %s", r.Code, r.Raw, origID)
	}
	updID := r.Body["id"].(string)
	// Fenced in the step that stored the update; its ledger is swept right after.
	eventually(t, 2*time.Second, "the original's 3 queued sirens cancelled and nobody owed anything", func() bool {
		c := s.sirenCounts(origID)
		return c["cancelled"] == float64(3) && c["retracted"] == "0/0"
	})
	s.cancel()       // this instance's workers are stopped; let another instance take over
	s.startGateway() // (same MQTT client id, so the first must be gone)
	eventually(t, 5*time.Second, "the update sounded", func() bool { return s.sirenCounts(updID)["delivered"] == float64(3) })
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.AlertID == origID {
			t.Fatalf("the superseded original reached %s", rc.Siren)
		}
	}
}

// worldSchool is the school zone outlined around the whole map.
var worldSchool = fmt.Sprintf("{id: school, polygon: %q}", world)

func (s *stack) postCAP(body string) response {
	return s.do("POST", "/v1/alerts", dispatchKey, "application/cap+xml", body)
}

// thunderstorm is the OASIS example warning, its expiry moved ahead, as
// bytes and parsed.
func thunderstorm(t *testing.T) ([]byte, *cap.Alert) {
	b := fresh(mustRead(t, "../cap/testdata/oasis-example-a2-thunderstorm-warning.xml"))
	a, err := cap.Parse(b)
	if err != nil {
		t.Fatal(err)
	}
	return b, a
}

// updateOf is a CAP Update of a, as its sender would write it, with a new
// headline if one is given, and its first info block changed by edit.
func updateOf(a *cap.Alert, identifier, headline string, edit ...func(*cap.Info)) string {
	u := *a
	u.Identifier, u.MsgType, u.References, u.Sent = identifier, "Update", cap.JoinReferences(a.Ref()), cap.Time{Time: time.Now()}
	u.Infos = append([]cap.Info(nil), a.Infos...)
	if headline != "" {
		u.Infos[0].Headline = headline
	}
	for _, e := range edit {
		e(&u.Infos[0])
	}
	b, _ := cap.Encode(&u)
	return string(b)
}

func mustRead(t *testing.T, f string) []byte {
	b, err := os.ReadFile(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// cancelOf is a CAP Cancel of a, as its sender would write it.
func cancelOf(a *cap.Alert, identifier string) string {
	c := &cap.Alert{Identifier: identifier, Sender: a.Sender, Sent: cap.Time{Time: time.Now()}, Status: a.Status,
		MsgType: "Cancel", Scope: a.Scope, References: cap.JoinReferences(a.Ref()), Note: "issued in error"}
	b, _ := cap.Encode(c)
	return string(b)
}

// A principal with pinned certificates must sign its CAP: a document signed
// with its key is accepted, and only the signed content counts; unsigned,
// tampered or signed by another key is a 403 naming cap_certs.
func TestCAPSignatureRequired(t *testing.T) {
	mine, myCert := signer(t)
	theirs, _ := signer(t)
	pemFile := filepath.Join(t.TempDir(), "ils.pem")
	os.WriteFile(pemFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: myCert}), 0o600)
	s := newStack(t, stackOptions{school: worldSchool, capCert: pemFile})
	s.cancelWorkers()
	doc, _ := thunderstorm(t)

	signed := sign(t, mine, doc)
	if r := s.do("POST", "/v1/alerts", signedKey, "application/cap+xml", signed); r.Code != 202 {
		t.Fatalf("signed by the pinned key: %d %s", r.Code, r.Raw)
	}
	for name, body := range map[string]string{
		"unsigned":        string(doc),
		"tampered":        strings.Replace(signed, "SEVERE THUNDERSTORM WARNING", "TORNADO WARNING", 1),
		"another key":     sign(t, theirs, doc),
		"signature moved": strings.Replace(signed, "<identifier>KSTO1055887203</identifier>", "<identifier>KSTO1055887204</identifier>", 1),
	} {
		if r := s.do("POST", "/v1/alerts", signedKey, "application/cap+xml", body); r.Code != 403 || r.Body["scope"] != "cap_certs" {
			t.Errorf("%s: %d %s; want 403 naming cap_certs", name, r.Code, r.Raw)
		}
	}
}

// signer is a fresh RSA key and its self-signed certificate.
func signer(t *testing.T) (dsig.X509KeyStore, []byte) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Leitstelle Test"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	return keyStore{k, der}, der
}

type keyStore struct {
	k   *rsa.PrivateKey
	der []byte
}

func (s keyStore) GetKeyPair() (*rsa.PrivateKey, []byte, error) { return s.k, s.der, nil }

// sign adds an enveloped signature (exclusive c14n, RSA-SHA256) to doc.
func sign(t *testing.T, ks dsig.X509KeyStore, doc []byte) string {
	d := etree.NewDocument()
	if err := d.ReadFromBytes(doc); err != nil {
		t.Fatal(err)
	}
	ctx := dsig.NewDefaultSigningContext(ks)
	ctx.Canonicalizer = dsig.MakeC14N10ExclusiveCanonicalizerWithPrefixList("")
	if err := ctx.SetSignatureMethod(dsig.RSASHA256SignatureMethod); err != nil {
		t.Fatal(err)
	}
	el, err := ctx.SignEnveloped(d.Root())
	if err != nil {
		t.Fatal(err)
	}
	out := etree.NewDocument()
	out.SetRoot(el)
	s, err := out.WriteToString()
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// A CAP Update that replaces a delivered alert reaches the dispatch centre as
// an Update referencing the original Tocsin sent it — never as a Cancel or an
// AllClear — and sirens get stop, not all_clear, for the original; a siren
// that obeys the controller contract (a stop names the alert it ends) keeps
// sounding the update, whichever of the two commands arrives first.
func TestCAPUpdateChainToDispatch(t *testing.T) {
	port := testenv.FreePort(t)
	ils, err := fake.StartDispatch(fake.DispatchOptions{Keys: map[string][]byte{"ils": []byte(dispatchHMAC)}, AckURL: ackURL(port)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ils.Close)
	s := newStack(t, stackOptions{school: worldSchool, dispatch: ils, publicPort: port})
	a2, orig := thunderstorm(t)
	r := s.postCAP(string(a2))
	if r.Code != 202 {
		t.Fatalf("alert = %d %s", r.Code, r.Raw)
	}
	origID := r.Body["id"].(string)
	eventually(t, 5*time.Second, "the original reached the centre and the sirens", func() bool {
		return s.counts(origID, "dispatch")["delivered"] == float64(1) && s.sirenCounts(origID)["delivered"] == float64(3)
	})
	r = s.postCAP(updateOf(orig, "KSTO1055887203-u1", ""))
	if r.Code != 202 {
		t.Fatalf("update = %d %s", r.Code, r.Raw)
	}
	updID := r.Body["id"].(string)
	eventually(t, 5*time.Second, "the update reached the centre and the sirens", func() bool {
		return s.counts(updID, "dispatch")["delivered"] == float64(1) && s.sirenCounts(updID)["delivered"] == float64(3)
	})
	docs := ils.Received()
	var types []string
	for _, d := range docs {
		types = append(types, d.Doc.MsgType)
	}
	if len(docs) != 2 || docs[1].Doc.MsgType != "Update" || docs[1].Doc.References != docs[0].Doc.Sender+","+docs[0].Doc.Identifier+","+docs[0].Doc.Sent {
		t.Fatalf("centre got %v; want the Alert, then an Update referencing it", types)
	}
	for _, rc := range s.fleet.Received() {
		if rc.Cmd.AlertID == origID && rc.Cmd.Signal == "all_clear" {
			t.Fatalf("%s got all_clear for a superseded alert", rc.Siren)
		}
	}
	eventually(t, 5*time.Second, "every siren told the original is stopped", func() bool { return s.sirenCounts(origID)["retracted"] == "3/3" })
	for _, id := range sirenIDs("school", 3) {
		if got := s.fleet.Sounding(id); got != updID {
			t.Errorf("siren %s sounds for %q after the update; want the update %s (a stop for the original must not silence it)", id, got, updID)
		}
	}
}

// Every CAP <info> block is kept: a recipient gets the text in their own
// language, or by the fallback order (same base language, then English,
// then the primary block). The Icelandic Met Office's wind warning comes in
// Icelandic and English; the staff read German and English, so all get the
// English block — none the Icelandic headline, as when only one block was used.
func TestCAPEveryLanguageKept(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{school: worldSchool, phones: 4, twilio: tw})
	r := s.postCAP(string(fresh(mustRead(t, "../cap/testdata/iceland-imo-wind-is-en-polygons.xml"))))
	if r.Code != 202 {
		t.Fatalf("post = %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "4 SMS", func() bool { return len(tw.Messages()) == 4 })
	for _, m := range tw.Messages() {
		if !strings.Contains(m.Body, "Southeast gales") || strings.Contains(m.Body, "Hvöss") {
			t.Errorf("SMS to %s: %q; want the English block's headline", m.To, m.Body)
		}
	}
	if got := s.get(r.Body["id"].(string)).Body["info"]; got == nil {
		t.Errorf("GET shows no info blocks; want the English one kept beside the Icelandic")
	}
}

// A JSON alert may carry its texts in several languages; each person gets
// theirs (the test staff: three read German, every fourth English).
func TestJSONInfoPerLanguage(t *testing.T) {
	tw := fakeTwilio(t, fake.TwilioOptions{NoCallbacks: true})
	s := newStack(t, stackOptions{phones: 8, twilio: tw})
	r := s.post(`{"status":"actual","event":"Gas","severity":"Severe","urgency":"Immediate","language":"de","headline":"Gasaustritt",` +
		`"info":[{"language":"en","headline":"Gas leak","instruction":"Leave the building"}],"zones":["school"],"channels":["sms"]}`)
	if r.Code != 202 {
		t.Fatalf("post = %d %s", r.Code, r.Raw)
	}
	eventually(t, 5*time.Second, "8 SMS", func() bool { return len(tw.Messages()) == 8 })
	for _, m := range tw.Messages() {
		i, _ := strconv.Atoi(m.To[len(m.To)-6:])
		want := "WARNUNG: Gasaustritt."
		if i%4 == 3 {
			want = "WARNING: Gas leak. Leave the building."
		}
		if m.Body != want {
			t.Errorf("SMS to person %d: %q, want %q", i, m.Body, want)
		}
	}
	if r := s.post(`{"status":"actual","event":"Gas","severity":"Severe","urgency":"Immediate","language":"de","info":[{"language":"DE","headline":"x"}],"zones":["school"]}`); r.Code != 400 || r.Body["field"] != "info[0].language" {
		t.Fatalf("a second German block = %d %s; want 400 naming info[0].language", r.Code, r.Raw)
	}
}

// A CAP Cancel is a retraction: the principal's alert rate never refuses it.
func TestCAPCancelNeverRateLimited(t *testing.T) {
	s := newStack(t, stackOptions{school: worldSchool, limit: "rate: 0.1, burst: 1"})
	a2, orig := thunderstorm(t)
	if r := s.postCAP(string(a2)); r.Code != 202 {
		t.Fatalf("alert = %d %s", r.Code, r.Raw)
	}
	if r := s.postCAP(updateOf(orig, "KSTO1055887203-u9", "")); r.Code != 429 {
		t.Fatalf("a second alert over the rate = %d %s; want 429", r.Code, r.Raw)
	}
	if r := s.postCAP(cancelOf(orig, "KSTO1055887203-c9")); r.Code != 202 {
		t.Fatalf("cancel over the rate = %d %s; want 202", r.Code, r.Raw)
	}
}
