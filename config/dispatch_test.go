package config_test

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// The signing files deploy/tocsin.example.yaml names.
const (
	exampleSigningCert = "/etc/tocsin/cap-signing/tocsin.pem"
	exampleSigningKey  = "/etc/tocsin/cap-signing/tocsin.key"
)

// exampleConfig is deploy/tocsin.example.yaml with its dispatch.signing files
// replaced by a fresh test certificate and key (the example's own paths exist
// only on a real installation).
func exampleConfig(t *testing.T) []byte {
	t.Helper()
	b, err := os.ReadFile("../deploy/tocsin.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(b, []byte(exampleSigningCert)) || !bytes.Contains(b, []byte(exampleSigningKey)) {
		t.Fatalf("deploy/tocsin.example.yaml no longer names %s and %s under dispatch.signing", exampleSigningCert, exampleSigningKey)
	}
	cert, key, err := fake.TestSigningCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b = bytes.ReplaceAll(b, []byte(exampleSigningCert), []byte(cert))
	b = bytes.ReplaceAll(b, []byte(exampleSigningKey), []byte(key))
	// The centre's mTLS files: the same test pair, its certificate as the CA.
	for old, new := range map[string]string{"/etc/tocsin/tls/client.pem": cert, "/etc/tocsin/tls/client.key": key, "/etc/tocsin/tls/leitstelle-ca.pem": cert} {
		if !bytes.Contains(b, []byte(old)) {
			t.Fatalf("deploy/tocsin.example.yaml no longer names %s", old)
		}
		b = bytes.ReplaceAll(b, []byte(old), []byte(new))
	}
	return b
}

// exampleEnv sets every secret deploy/tocsin.example.yaml names, as the
// README's "Running it for real" exports them.
func exampleEnv(t *testing.T) {
	for _, v := range []string{"TOCSIN_KEY_LEITSTELLE", "TOCSIN_KEY_OPERATOR", "TOCSIN_TWILIO_MAIN_TOKEN", "TOCSIN_TWILIO_BACKUP_TOKEN",
		"TOCSIN_PA_SCHOOL_TOKEN", "TOCSIN_DISPATCH_SOEST_KEY", "TOCSIN_TRIGGER_SCHOOL_BUTTON_KEY", "TOCSIN_TRIGGER_SCHOOL_FIRE_KEY"} {
		t.Setenv(v, "example-secret-"+strings.ToLower(v))
	}
}

// The example's dispatch centre is XML-signed and https://.
func TestExampleConfigSignsDispatch(t *testing.T) {
	exampleEnv(t)
	c, err := config.Parse(exampleConfig(t))
	if err != nil {
		t.Fatalf("deploy/tocsin.example.yaml with test signing files: %v", err)
	}
	if c.Dispatch.Signing.Certificate() == nil || c.Dispatch.Signing.Key() == nil {
		t.Fatal("dispatch.signing not loaded")
	}
	for _, dc := range c.Dispatch.Centres {
		if dc.InsecureHTTP || !strings.HasPrefix(dc.URL, "https://") {
			t.Errorf("example centre %s: %s, insecure_http %v; the example must show https://", dc.ID, dc.URL, dc.InsecureHTTP)
		}
	}
}

// dispatchYAML is a configuration with one dispatch centre at url; signing
// and extra are inserted as the dispatch section's signing: value and
// further centre keys.
func dispatchYAML(signing, url, extra string) string {
	s := "zones: [{id: a}]\ndispatch:\n  sender: tocsin@example.org\n"
	if signing != "" {
		s += "  signing: " + signing + "\n"
	}
	return s + "  centres:\n    - {id: ils, zones: [a], url: '" + url + "', hmac_key_env: ILS_KEY" + extra + "}\n"
}

// dispatch.signing is required with centres, its files must be readable PEM,
// the key RSA and the certificate's; a centre's url must be https:// unless
// it sets insecure_http (and never with tls). Each problem names its field.
func TestDispatchSigningAndHTTPS(t *testing.T) {
	dir := t.TempDir()
	cert, key, err := fake.TestSigningCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	_, otherKey, err := fake.TestSigningCert(dir)
	if err != nil {
		t.Fatal(err)
	}
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, _ := x509.MarshalECPrivateKey(ec)
	ecKey := filepath.Join(dir, "ec.key")
	notPEM := filepath.Join(dir, "not.pem")
	unreadable := filepath.Join(dir, "unreadable.key")
	for f, b := range map[string][]byte{ecKey: pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), notPEM: []byte("not PEM\n"), unreadable: {}} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Chmod(unreadable, 0); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	good := fmt.Sprintf("{cert_file: %q, key_file: %q}", cert, key)
	tests := []struct {
		name, yaml string
		want       []string // "line N: field: fragment"; none: valid
	}{
		{"valid", dispatchYAML(good, "https://ils.example/cap", ""), nil},
		{"http:// with insecure_http", dispatchYAML(good, "http://127.0.0.1:8090/cap/ils", ", insecure_http: true"), nil},
		{"no signing", dispatchYAML("", "https://ils.example/cap", ""),
			[]string{"line 2: dispatch.signing: required with dispatch centres: cert_file and key_file"}},
		{"cert_file missing", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", missing, key), "https://ils.example/cap", ""),
			[]string{"line 4: dispatch.signing.cert_file: open " + missing}},
		{"key_file missing", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", cert, missing), "https://ils.example/cap", ""),
			[]string{"line 4: dispatch.signing.key_file: open " + missing}},
		{"key_file unset", dispatchYAML(fmt.Sprintf("{cert_file: %q}", cert), "https://ils.example/cap", ""),
			[]string{"dispatch.signing.key_file: required with cert_file"}},
		{"cert_file unset", dispatchYAML(fmt.Sprintf("{key_file: %q}", key), "https://ils.example/cap", ""),
			[]string{"dispatch.signing.cert_file: required with key_file"}},
		{"cert_file not PEM", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", notPEM, key), "https://ils.example/cap", ""),
			[]string{"dispatch.signing.cert_file: no PEM CERTIFICATE in " + notPEM}},
		{"key_file holds a certificate", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", cert, cert), "https://ils.example/cap", ""),
			[]string{"dispatch.signing.key_file: no PEM RSA PRIVATE KEY or PRIVATE KEY in " + cert}},
		{"key of another certificate", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", cert, otherKey), "https://ils.example/cap", ""),
			[]string{"line 4: dispatch.signing.key_file: " + otherKey + " does not match the certificate in cert_file " + cert}},
		{"EC key", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", cert, ecKey), "https://ils.example/cap", ""),
			[]string{"dispatch.signing.key_file: " + ecKey + ": an EC key; CAP is signed RSA-SHA256, so it must be RSA"}},
		{"http:// without insecure_http", dispatchYAML(good, "http://ils.example/cap", ""),
			[]string{"line 6: dispatch.centres[0].url: must be https://: over http://"}},
		{"HTTP:// without insecure_http", dispatchYAML(good, "HTTP://ils.example/cap", ""),
			[]string{"line 6: dispatch.centres[0].url: must be https://"}},
		{"insecure_http: false", dispatchYAML(good, "http://ils.example/cap", ", insecure_http: false"),
			[]string{"dispatch.centres[0].url: must be https://: over http://"}},
		{"http:// with tls", dispatchYAML(good, "http://ils.example/cap", fmt.Sprintf(", insecure_http: true, tls: {ca_file: %q}", cert)),
			[]string{"dispatch.centres[0].url: must be https:// when tls is set"}},
		{"not a URL", dispatchYAML(good, "ftp://ils.example/cap", ", insecure_http: true"),
			[]string{"dispatch.centres[0].url: must be the https:// URL the centre takes CAP documents at"}},
	}
	if os.Getuid() != 0 { // root reads any file
		tests = append(tests, struct {
			name, yaml string
			want       []string
		}{"key_file unreadable", dispatchYAML(fmt.Sprintf("{cert_file: %q, key_file: %q}", cert, unreadable), "https://ils.example/cap", ""),
			[]string{"dispatch.signing.key_file: open " + unreadable + ": permission denied"}})
	}
	t.Setenv("ILS_KEY", "ils-shared-hmac-key-0001")
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := config.Parse([]byte(tt.yaml))
			if tt.want == nil {
				if err != nil {
					t.Fatalf("Parse = %v", err)
				}
				if c.Dispatch.Signing.Certificate() == nil || c.Dispatch.Signing.Key() == nil ||
					!c.Dispatch.Signing.Key().PublicKey.Equal(c.Dispatch.Signing.Certificate().PublicKey) {
					t.Fatal("dispatch.signing: certificate and key not loaded")
				}
				return
			}
			wantProblems(t, err, tt.want)
		})
	}
}
