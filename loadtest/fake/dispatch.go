package fake

import (
	"bytes"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"time"

	"github.com/tocsin-alert/tocsin/cap"
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
	// Doc is read from the verified document when a certificate is pinned.
	Doc CAPDoc
	// Raw is the body as it came, signature and all.
	Raw []byte
	At  time.Time
	// Signed says its XML signature verified against a pinned certificate.
	Signed bool
	// Acked says the centre posted a CAP Ack for it and the gateway took it.
	Acked bool
}

// DispatchOptions configure the fake dispatch centres.
type DispatchOptions struct {
	// Listen is the loopback address to serve on (a free port when empty).
	Listen string
	// Keys are the centres' shared HMAC keys; requests must be signed.
	Keys map[string][]byte
	// Pinned, if set, are the certificates the gateway signs CAP with
	// (dispatch.signing.cert_file): every document must carry an enveloped
	// XML signature by one of them (cap.VerifySignature), or it is refused
	// with 403 and counted in Rejected. Without any (here or by Pin) the XML
	// signature is not checked.
	Pinned []*x509.Certificate
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
// HMAC of what it gets and, with a pinned certificate, its XML signature,
// records the CAP, answers 202, and posts a signed CAP Ack back. It can be
// made to fail per centre.
type Dispatch struct {
	o   DispatchOptions
	srv *http.Server
	// Base is the server's root URL.
	Base string

	mu         sync.Mutex
	pinned     []*x509.Certificate
	received   []*DispatchReceived
	failing    map[string]string
	rejections []string
	hang       chan struct{}
	acks       sync.WaitGroup
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
	f := &Dispatch{o: o, Base: scheme + "://" + l.Addr().String(), failing: map[string]string{}, hang: make(chan struct{}),
		pinned: append([]*x509.Certificate(nil), o.Pinned...)}
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

// Rejected counts requests refused for a missing or wrong signature (the
// HMAC header, or the XML signature when a certificate is pinned).
func (f *Dispatch) Rejected() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.rejections)
}

// Rejections say why each refused request was refused, in order.
func (f *Dispatch) Rejections() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.rejections...)
}

// Pin adds certificates the documents' XML signatures are verified against;
// from the first one on, unsigned documents are refused.
func (f *Dispatch) Pin(certs ...*x509.Certificate) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.pinned = append(f.pinned, certs...)
}

// PinFile pins the certificates of a PEM file, such as the cert_file
// TestSigningCert wrote.
func (f *Dispatch) PinFile(certFile string) error {
	certs, err := ReadCerts(certFile)
	if err != nil {
		return err
	}
	f.Pin(certs...)
	return nil
}

func (f *Dispatch) reject(w http.ResponseWriter, centre string, status int, why string) {
	f.mu.Lock()
	f.rejections = append(f.rejections, centre+": "+why)
	f.mu.Unlock()
	http.Error(w, why, status)
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
		f.reject(w, id, http.StatusUnauthorized, "bad signature")
		return
	}
	f.mu.Lock()
	mode, pinned := f.failing[id], f.pinned
	f.mu.Unlock()
	// What is read is what was signed: with a pinned certificate, only the
	// verified document.
	doc, signed := body, false
	if len(pinned) > 0 {
		if bytes.Contains(body, []byte("<!DOCTYPE")) || bytes.Contains(body, []byte("<!ENTITY")) {
			f.reject(w, id, http.StatusBadRequest, "DOCTYPE or ENTITY in a CAP document")
			return
		}
		verified, err := cap.VerifySignature(body, pinned, time.Now())
		if err != nil {
			f.reject(w, id, http.StatusForbidden, "XML signature: "+err.Error())
			return
		}
		doc, signed = verified, true
	}
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
	var capDoc CAPDoc
	if err := xml.Unmarshal(doc, &capDoc); err != nil || capDoc.Identifier == "" || capDoc.MsgType == "" {
		http.Error(w, fmt.Sprintf("not CAP: %v", err), http.StatusBadRequest)
		return
	}
	rec := &DispatchReceived{Centre: id, Doc: capDoc, Raw: body, At: time.Now(), Signed: signed}
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
			ok := f.postAck(id, key, capDoc)
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

// TestSigningCert writes a fresh self-signed RSA-2048 certificate (valid from
// an hour ago for a year, for digital signatures) and its PKCS#8 key as PEM
// files in dir, for dispatch.signing in tests and the demo; pin certFile at
// the fake centre (PinFile, or Pinned with ReadCerts).
func TestSigningCert(dir string) (certFile, keyFile string, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return "", "", err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 62))
	if err != nil {
		return "", "", err
	}
	now := time.Now()
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: "Tocsin test CAP signing"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.AddDate(1, 0, 0),
		KeyUsage: x509.KeyUsageDigitalSignature, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return "", "", err
	}
	pkcs8, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return "", "", err
	}
	write := func(pattern, typ string, b []byte, mode os.FileMode) (string, error) {
		f, err := os.CreateTemp(dir, pattern)
		if err != nil {
			return "", err
		}
		if err := f.Chmod(mode); err != nil {
			f.Close()
			return "", err
		}
		if err := pem.Encode(f, &pem.Block{Type: typ, Bytes: b}); err != nil {
			f.Close()
			return "", err
		}
		return filepath.Clean(f.Name()), f.Close()
	}
	if certFile, err = write("tocsin-signing-*.pem", "CERTIFICATE", der, 0o644); err != nil {
		return "", "", err
	}
	if keyFile, err = write("tocsin-signing-*.key", "PRIVATE KEY", pkcs8, 0o600); err != nil {
		return "", "", err
	}
	return certFile, keyFile, nil
}

// ReadCerts reads the certificates of a PEM file.
func ReadCerts(file string) ([]*x509.Certificate, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var certs []*x509.Certificate
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", file, err)
		}
		certs = append(certs, c)
	}
	if len(certs) == 0 {
		return nil, errors.New(file + ": no PEM CERTIFICATE")
	}
	return certs, nil
}
