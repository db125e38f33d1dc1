package testenv

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Certs are PEM files for TLS tests: a CA, and a certificate signed by it
// for 127.0.0.1 and localhost that serves as a server's and a client's.
type Certs struct {
	CA, Cert, Key string
	ca            *x509.Certificate
	caKey         *ecdsa.PrivateKey
}

// TLSCerts makes a fresh CA and a certificate signed by it in a temporary directory.
func TLSCerts(t testing.TB) *Certs {
	t.Helper()
	dir := t.TempDir()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Tocsin test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(der)
	c := &Certs{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "cert.pem"), Key: filepath.Join(dir, "key.pem"), ca: ca, caKey: caKey}
	writePEM(t, c.CA, "CERTIFICATE", der)
	c.Renew(t, 2)
	return c
}

// Renew writes a new certificate and key (with this serial) over Cert and
// Key, as a certificate rotation would.
func (c *Certs) Renew(t testing.TB, serial int64) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, DNSNames: []string{"localhost"},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, c.ca, &key.PublicKey, c.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kb, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	// Key first, then the certificate: a reader that sees the new
	// certificate finds its key already there.
	writePEM(t, c.Key+".new", "PRIVATE KEY", kb)
	writePEM(t, c.Cert+".new", "CERTIFICATE", der)
	if err := os.Rename(c.Key+".new", c.Key); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(c.Cert+".new", c.Cert); err != nil {
		t.Fatal(err)
	}
}

func writePEM(t testing.TB, path, typ string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// RedisTLS starts a redis-server that speaks only TLS (no plain port),
// requiring clients to present a certificate signed by c's CA.
func RedisTLS(t testing.TB, c *Certs) *Server {
	t.Helper()
	return launch(t, "redis-server", "redis-server", func(dir string, port int) []string {
		return []string{"--port", "0", "--tls-port", strconv.Itoa(port), "--bind", "127.0.0.1", "--dir", dir,
			"--tls-cert-file", c.Cert, "--tls-key-file", c.Key, "--tls-ca-cert-file", c.CA, "--tls-auth-clients", "yes",
			"--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "no"}
	})
}

// MosquittoTLS starts a mosquitto broker with only a TLS listener, requiring
// clients to present a certificate signed by c's CA.
func MosquittoTLS(t testing.TB, c *Certs) *Server {
	t.Helper()
	return launch(t, "mosquitto", "mosquitto", func(dir string, port int) []string {
		conf := filepath.Join(dir, fmt.Sprintf("mosquitto-%d.conf", port))
		body := fmt.Sprintf("listener %d 127.0.0.1\nallow_anonymous true\nset_tcp_nodelay true\n"+
			"cafile %s\ncertfile %s\nkeyfile %s\nrequire_certificate true\nuser %s\n", port, c.CA, c.Cert, c.Key, currentUser())
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatalf("testenv: %v", err)
		}
		return []string{"-c", conf}
	})
}
