package cap_test

import (
	"crypto/x509"
	"encoding/base64"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/cap"
)

var certRE = regexp.MustCompile(`<(?:\w+:)?X509Certificate>([^<]+)</`)

// certOf is the signing certificate a document carries (the tests pin it).
func certOf(t *testing.T, doc []byte) *x509.Certificate {
	t.Helper()
	m := certRE.FindSubmatch(doc)
	if m == nil {
		t.Fatal("no X509Certificate in the document")
	}
	der, err := base64.StdEncoding.DecodeString(strings.Join(strings.Fields(string(m[1])), ""))
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// Real signed documents: an IPAWS alert verifies against its own pinned
// certificate at the time it was sent, and only the signed alert (without its
// signature) comes back. Any change to its content or its SignatureValue, an
// unpinned or expired certificate, or no signature at all fails. The two
// tampered documents in invalid/ fail.
func TestSignatures(t *testing.T) {
	read := func(f string) []byte {
		b, err := os.ReadFile("testdata/" + f)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	ipaws := read("ipaws-montgomery-md-lae-polygon-jpeg-signed.xml")
	sent := time.Date(2019, 12, 13, 21, 24, 50, 0, time.UTC)
	pinned := []*x509.Certificate{certOf(t, ipaws)}

	verified, err := cap.VerifySignature(ipaws, pinned, sent)
	if err != nil {
		t.Fatalf("IPAWS alert, its certificate pinned: %v", err)
	}
	a, err := cap.Parse(verified)
	if err != nil || a.Infos[0].Severity != "Extreme" || strings.Contains(string(verified), "SignatureValue") {
		t.Fatalf("verified document: %v; want the signed alert without its signature", err)
	}
	for name, doc := range map[string]string{
		"content changed":        strings.Replace(string(ipaws), "<severity>Extreme</severity>", "<severity>Minor</severity>", 1),
		"SignatureValue changed": strings.Replace(string(ipaws), "<SignatureValue>Uy3X7", "<SignatureValue>Uy3X8", 1),
	} {
		if doc == string(ipaws) {
			t.Fatalf("%s: the change did not apply", name)
		}
		if _, err := cap.VerifySignature([]byte(doc), pinned, sent); err == nil {
			t.Errorf("%s: verified", name)
		}
	}
	other := []*x509.Certificate{certOf(t, read("belize-small-craft-cap-prefix-signed.xml"))}
	if _, err := cap.VerifySignature(ipaws, other, sent); err == nil {
		t.Error("verified against a certificate that is not its signer's")
	}
	if _, err := cap.VerifySignature(ipaws, pinned, time.Now().AddDate(30, 0, 0)); err == nil {
		t.Error("verified with the certificate long expired")
	}
	if _, err := cap.VerifySignature(read("oasis-example-a2-thunderstorm-warning.xml"), pinned, sent); !errors.Is(err, cap.ErrUnsigned) {
		t.Errorf("unsigned document: %v, want ErrUnsigned", err)
	}
	for _, f := range []string{"invalid/belize-tampered-signaturevalue.xml", "invalid/cameroon-tampered-digestvalue.xml"} {
		b := read(f)
		if _, err := cap.VerifySignature(b, []*x509.Certificate{certOf(t, b)}, time.Date(2024, 7, 13, 18, 0, 0, 0, time.UTC)); err == nil {
			t.Errorf("%s verified", f)
		}
	}
}
