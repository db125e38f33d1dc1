package config

import (
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// PA configures public-address systems: the controllers that play
// announcements, and the PA zones (a school's halls, a station's platforms)
// that are the targets alerts reach.
type PA struct {
	Controllers []PAController `yaml:"controllers"`
	Zones       []PAZone       `yaml:"zones"`
}

// PAController is one PA controller, reached over HTTP (URL) or MQTT.
type PAController struct {
	ID string `yaml:"id"`
	// URL is where JSON commands are POSTed; empty with mqtt: true.
	URL string `yaml:"url"`
	// TokenEnv names the environment variable with a bearer token for URL.
	TokenEnv string `yaml:"token_env"`
	token    string
	// MQTT says the controller takes commands on {prefix}/pa/{id}/cmd and
	// acks them on {prefix}/pa/{id}/ack, like a siren.
	MQTT bool `yaml:"mqtt"`
}

// PAZone is one PA zone: the target an alert reaches.
type PAZone struct {
	ID   string `yaml:"id"`
	Zone string `yaml:"zone"`
	// Controller plays the announcement; Fallback, if set, is used while the
	// controller's breaker is open.
	Controller string `yaml:"controller"`
	Fallback   string `yaml:"fallback"`
	// Language of the announcement ("de" by default); Repeat how many times
	// it is played (2).
	Language string `yaml:"language"`
	Repeat   int    `yaml:"repeat"`
	// Drills says the zone takes test and exercise alerts.
	Drills bool `yaml:"drills"`
}

// Controller returns the PA controller with id, or nil.
func (p *PA) Controller(id string) *PAController {
	return find(p.Controllers, func(c *PAController) bool { return c.ID == id })
}

// UsesMQTT reports whether any PA controller is on MQTT.
func (p *PA) UsesMQTT() bool {
	for _, c := range p.Controllers {
		if c.MQTT {
			return true
		}
	}
	return false
}

// HasFallbacks reports whether any PA zone names a fallback controller.
func (p *PA) HasFallbacks() bool {
	for _, z := range p.Zones {
		if z.Fallback != "" {
			return true
		}
	}
	return false
}

// Dispatch configures the dispatch centres alerts are forwarded to as CAP 1.2.
type Dispatch struct {
	// Sender is the CAP <sender> of Tocsin's messages, e.g. tocsin@example.org.
	Sender string `yaml:"sender"`
	// Signing is the gateway's own certificate and RSA key: every CAP
	// document sent to a centre carries an enveloped XML signature made with
	// them. Required with centres.
	Signing DispatchSigning  `yaml:"signing"`
	Centres []DispatchCentre `yaml:"centres"`
}

// DispatchSigning are the PEM files of the gateway's CAP signing certificate
// and its RSA private key (PKCS#1 or PKCS#8, unencrypted). Centres pin the
// certificate.
type DispatchSigning struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`

	// cert and key are read from the files when the configuration is loaded.
	cert *x509.Certificate
	key  *rsa.PrivateKey
}

// Certificate is the signing certificate, read at load time (nil without).
func (s *DispatchSigning) Certificate() *x509.Certificate { return s.cert }

// Key is the signing key, read at load time and checked against the
// certificate (nil without).
func (s *DispatchSigning) Key() *rsa.PrivateKey { return s.key }

// minSigningBits is the smallest RSA key dispatch.signing takes.
const minSigningBits = 2048

// load reads and checks the signing files, naming the field of each problem.
func (s *DispatchSigning) load(v *validator, centres int) {
	const f = "dispatch.signing"
	switch {
	case s.CertFile == "" && s.KeyFile == "":
		if centres > 0 {
			v.add(f, "required with dispatch centres: cert_file and key_file, the PEM certificate and RSA key every CAP document sent to a centre is XML-signed with")
		}
		return
	case s.CertFile == "":
		v.add(f+".cert_file", "required with key_file: the PEM certificate centres verify Tocsin's CAP signatures against")
	case s.KeyFile == "":
		v.add(f+".key_file", "required with cert_file: the PEM RSA private key Tocsin signs CAP with")
	}
	var cert *x509.Certificate
	if s.CertFile != "" {
		c, err := readSigningCert(s.CertFile)
		if err != nil {
			v.add(f+".cert_file", err.Error())
		}
		cert = c
	}
	var key *rsa.PrivateKey
	if s.KeyFile != "" {
		k, err := readSigningKey(s.KeyFile)
		if err != nil {
			v.add(f+".key_file", err.Error())
		}
		key = k
	}
	if cert == nil || key == nil {
		return
	}
	if !key.PublicKey.Equal(cert.PublicKey) {
		v.add(f+".key_file", fmt.Sprintf("%s does not match the certificate in cert_file %s", s.KeyFile, s.CertFile))
		return
	}
	s.cert, s.key = cert, key
}

// pemBlock reads the first PEM block of a file whose type is one of types;
// want names what is missing when there is none.
func pemBlock(file, want string, types ...string) (*pem.Block, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	for {
		var blk *pem.Block
		if blk, b = pem.Decode(b); blk == nil {
			return nil, fmt.Errorf("no PEM %s in %s", want, file)
		}
		if slices.Contains(types, blk.Type) {
			return blk, nil
		}
	}
}

// readSigningCert reads the first certificate of a PEM file: RSA, and valid now.
func readSigningCert(file string) (*x509.Certificate, error) {
	blk, err := pemBlock(file, "CERTIFICATE", "CERTIFICATE")
	if err != nil {
		return nil, err
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%s: certificate: %v", file, err)
	}
	if _, ok := c.PublicKey.(*rsa.PublicKey); !ok {
		return nil, fmt.Errorf("%s: the certificate's key is %v; CAP is signed RSA-SHA256, so it must be RSA", file, c.PublicKeyAlgorithm)
	}
	now := time.Now()
	if now.Before(c.NotBefore) || now.After(c.NotAfter) {
		return nil, fmt.Errorf("%s: the certificate is valid only from %s to %s; centres would refuse every signature",
			file, c.NotBefore.UTC().Format(time.RFC3339), c.NotAfter.UTC().Format(time.RFC3339))
	}
	return c, nil
}

// readSigningKey reads an unencrypted RSA private key (PKCS#1 or PKCS#8) of
// at least minSigningBits from a PEM file.
func readSigningKey(file string) (*rsa.PrivateKey, error) {
	blk, err := pemBlock(file, "RSA PRIVATE KEY or PRIVATE KEY", "RSA PRIVATE KEY", "PRIVATE KEY", "ENCRYPTED PRIVATE KEY", "EC PRIVATE KEY")
	if err != nil {
		return nil, err
	}
	var key any
	switch {
	case blk.Type == "ENCRYPTED PRIVATE KEY" || blk.Headers["Proc-Type"] != "":
		return nil, fmt.Errorf("%s: the key is encrypted; Tocsin needs it unencrypted (protect the file instead)", file)
	case blk.Type == "EC PRIVATE KEY":
		return nil, fmt.Errorf("%s: an EC key; CAP is signed RSA-SHA256, so it must be RSA", file)
	case blk.Type == "RSA PRIVATE KEY":
		key, err = x509.ParsePKCS1PrivateKey(blk.Bytes)
	default:
		key, err = x509.ParsePKCS8PrivateKey(blk.Bytes)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: private key: %v", file, err)
	}
	rk, ok := key.(*rsa.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s: a %T; CAP is signed RSA-SHA256, so it must be an RSA key", file, key)
	}
	if n := rk.N.BitLen(); n < minSigningBits {
		return nil, fmt.Errorf("%s: an RSA key of %d bits; at least %d", file, n, minSigningBits)
	}
	return rk, nil
}

// DispatchCentre is one dispatch centre's CAP endpoint.
type DispatchCentre struct {
	ID string `yaml:"id"`
	// Zones the centre covers: alerts to any of them reach it.
	Zones []string `yaml:"zones"`
	// URL is where CAP documents are POSTed: https://, unless InsecureHTTP.
	URL string `yaml:"url"`
	// InsecureHTTP allows an http:// URL: CAP and its HMAC headers then cross
	// the network in clear. Only for a centre on a network you trust (tests,
	// the demo's simulated centre on loopback).
	InsecureHTTP bool `yaml:"insecure_http"`
	// HMACKeyEnv names the environment variable with the shared key that
	// signs what is sent (X-Tocsin-Signature) and the CAP Acks that come back.
	HMACKeyEnv string `yaml:"hmac_key_env"`
	// TLS, if set, is the client certificate (mTLS) and the CA to trust.
	TLS *TLSFiles `yaml:"tls"`
	key []byte
	tls *tls.Config
	// Drills says the centre takes test and exercise alerts.
	Drills bool `yaml:"drills"`
}

// TLSFiles are PEM files for a TLS client.
type TLSFiles struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	CAFile   string `yaml:"ca_file"`
}

// Centre returns the dispatch centre with id, or nil.
func (d *Dispatch) Centre(id string) *DispatchCentre {
	return find(d.Centres, func(c *DispatchCentre) bool { return c.ID == id })
}

func validHTTPURL(s string) bool {
	u, err := url.Parse(s)
	return err == nil && (u.Scheme == "http" || u.Scheme == "https") && u.Host != ""
}

func (c *Config) validateEndpoints(v *validator, zones map[string]bool) {
	ctrls := map[string]bool{}
	for i := range c.PA.Controllers {
		pc := &c.PA.Controllers[i]
		f := fmt.Sprintf("pa.controllers[%d]", i)
		if !validID(pc.ID) || ctrls[pc.ID] {
			v.add(f+".id", "must be a unique id of letters, digits, '-', '_' or '.'")
		}
		ctrls[pc.ID] = true
		switch {
		case pc.MQTT && pc.URL != "":
			v.add(f+".url", "set url or mqtt: true, not both")
		case !pc.MQTT && !validHTTPURL(pc.URL):
			v.add(f+".url", "must be an http(s) URL the controller takes commands at (or set mqtt: true)")
		}
		if pc.MQTT && c.MQTT.Broker == "" {
			v.add(f+".mqtt", "needs mqtt.broker")
		}
	}
	pzs := map[string]bool{}
	for i := range c.PA.Zones {
		z := &c.PA.Zones[i]
		f := fmt.Sprintf("pa.zones[%d]", i)
		if !validID(z.ID) || pzs[z.ID] {
			v.add(f+".id", "must be a unique id of letters, digits, '-', '_' or '.'")
		}
		pzs[z.ID] = true
		if !zones[z.Zone] {
			v.add(f+".zone", fmt.Sprintf("zone %q is not defined under zones", z.Zone))
		}
		if !ctrls[z.Controller] {
			v.add(f+".controller", fmt.Sprintf("controller %q is not defined under pa.controllers", z.Controller))
		}
		if z.Fallback != "" && (!ctrls[z.Fallback] || z.Fallback == z.Controller) {
			v.add(f+".fallback", fmt.Sprintf("controller %q must be another controller defined under pa.controllers", z.Fallback))
		}
		if z.Language == "" {
			z.Language = "de"
		}
		if missing := c.textsMissing(z.Language, alert.KindPA); missing != "" {
			v.add(f+".language", missing)
		}
		if z.Repeat == 0 {
			z.Repeat = 2
		}
		if z.Repeat < 1 || z.Repeat > 10 {
			v.add(f+".repeat", "must be between 1 and 10")
		}
	}
	if len(c.Dispatch.Centres) > 0 && c.Dispatch.Sender == "" {
		v.add("dispatch.sender", "required with dispatch centres: the CAP sender of Tocsin's messages, e.g. tocsin@example.org")
	}
	if strings.ContainsAny(c.Dispatch.Sender, " ,<&") {
		v.add("dispatch.sender", "must not contain spaces, commas, '<' or '&' (CAP 1.2)")
	}
	c.Dispatch.Signing.load(v, len(c.Dispatch.Centres))
	centres := map[string]bool{}
	for i := range c.Dispatch.Centres {
		dc := &c.Dispatch.Centres[i]
		f := fmt.Sprintf("dispatch.centres[%d]", i)
		if !validID(dc.ID) || centres[dc.ID] {
			v.add(f+".id", "must be a unique id of letters, digits, '-', '_' or '.'")
		}
		centres[dc.ID] = true
		if len(dc.Zones) == 0 {
			v.add(f+".zones", "required: the zones whose alerts the centre receives")
		}
		for j, z := range dc.Zones {
			if !zones[z] {
				v.add(fmt.Sprintf("%s.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
		// CAP to a centre goes over TLS: plain http:// only where the
		// centre says so explicitly.
		if u, err := url.Parse(dc.URL); !validHTTPURL(dc.URL) || err != nil {
			v.add(f+".url", "must be the https:// URL the centre takes CAP documents at")
		} else if u.Scheme == "http" {
			switch {
			case dc.TLS != nil:
				v.add(f+".url", "must be https:// when tls is set")
			case !dc.InsecureHTTP:
				v.add(f+".url", "must be https://: over http:// the CAP and its headers cross the network in clear (set insecure_http: true for a centre on a network you trust, e.g. a loopback test)")
			}
		}
		if dc.HMACKeyEnv == "" {
			v.add(f+".hmac_key_env", "required: the environment variable holding the key shared with the centre")
		}
		// dc.TLS is read, and checked, with the other secrets (validateSecrets).
	}
}
