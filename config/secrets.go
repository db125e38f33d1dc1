package config

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/url"
	"os"
	"time"
)

// Secrets and files are resolved here, once, when the configuration is
// loaded: so `tocsin config check` names every missing one in one run, the
// way `serve` would refuse it, and serve has nothing left to discover.

// AuthToken is the account's auth token, read from AuthTokenEnv at load time.
func (a *TwilioAccount) AuthToken() string { return a.token }

// HMACKey is the key shared with the centre, read from HMACKeyEnv at load time.
func (d *DispatchCentre) HMACKey() []byte { return d.key }

// TLSClient is the TLS client the centre's tls files make (nil without tls).
func (d *DispatchCentre) TLSClient() *tls.Config { return d.tls }

// Token is the controller's bearer token, read from TokenEnv at load time.
func (p *PAController) Token() string { return p.token }

// Password is the Redis password, read from PasswordEnv at load time.
func (r *Redis) Password() string { return r.password }

// Password is the broker password, read from PasswordEnv at load time.
func (m *MQTT) Password() string { return m.password }

// env reads a configured secret's environment variable; a variable named
// but empty (or shorter than min) is a problem at field.
func (v *validator) env(field, name, what string, min int) string {
	if name == "" {
		return ""
	}
	s := os.Getenv(name)
	switch {
	case s == "":
		v.add(field, fmt.Sprintf("environment variable %s is empty or unset: it must hold %s", name, what))
	case len(s) < min:
		v.add(field, fmt.Sprintf("environment variable %s must hold %s (%d characters or more)", name, what, min))
	}
	return s
}

func (c *Config) validateSecrets(v *validator) {
	c.Redis.password = v.env("redis.password_env", c.Redis.PasswordEnv, "the Redis password", 1)
	c.MQTT.password = v.env("mqtt.password_env", c.MQTT.PasswordEnv, "the broker password", 1)
	for i := range c.Twilio.Accounts {
		a := &c.Twilio.Accounts[i]
		// Without it no send succeeds and no status callback could be
		// checked (one signed with an empty key would pass).
		a.token = v.env(fmt.Sprintf("twilio.accounts[%d].auth_token_env", i), a.AuthTokenEnv, "the account's auth token", 1)
	}
	for i := range c.PA.Controllers {
		p := &c.PA.Controllers[i]
		p.token = v.env(fmt.Sprintf("pa.controllers[%d].token_env", i), p.TokenEnv, "the controller's bearer token", 1)
	}
	for i := range c.Dispatch.Centres {
		d := &c.Dispatch.Centres[i]
		f := fmt.Sprintf("dispatch.centres[%d]", i)
		d.key = []byte(v.env(f+".hmac_key_env", d.HMACKeyEnv, "the HMAC key shared with the centre", 16))
		if d.TLS != nil {
			tc, err := d.TLS.client()
			if err != nil {
				v.add(f+".tls", err.Error())
			}
			d.tls = tc
		}
	}
}

// client is a TLS client configuration from the PEM files: a client
// certificate for mTLS, and the CA that signs the server's certificate.
func (f *TLSFiles) client() (*tls.Config, error) {
	tc := &tls.Config{MinVersion: tls.VersionTLS12}
	if (f.CertFile == "") != (f.KeyFile == "") {
		return nil, fmt.Errorf("cert_file and key_file go together (a client certificate and its key)")
	}
	if f.CertFile != "" {
		c, err := tls.LoadX509KeyPair(f.CertFile, f.KeyFile)
		if err != nil {
			return nil, err
		}
		tc.Certificates = []tls.Certificate{c}
	}
	if f.CAFile != "" {
		pem, err := os.ReadFile(f.CAFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s: no PEM certificates", f.CAFile)
		}
	}
	return tc, nil
}

// ServerTLS is a server certificate and its key (PEM files).
type ServerTLS struct {
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
}

// TLSConfig is the TLS client for Redis (nil without redis.tls).
func (r *Redis) TLSConfig() *tls.Config { return r.tlsConfig }

// TLSConfig is the TLS client for an mqtts:// broker (nil for tcp://).
func (m *MQTT) TLSConfig() *tls.Config { return m.tlsConfig }

// Loopback reports whether a listen or dial address (host:port, or a URL's
// host) stays on this machine.
func Loopback(hostport string) bool {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		host = hostport
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// validateTransport: without TLS, nothing leaves loopback unless
// insecure_plaintext says the network is trusted.
func (c *Config) validateTransport(v *validator) {
	if c.Redis.WaitReplicas < 0 || c.Redis.WaitReplicas > 5 {
		v.add("redis.wait_replicas", "must be between 0 and 5")
	}
	if c.Redis.WaitReplicas > 0 && c.Redis.MasterName == "" && !c.Redis.IsCluster() {
		v.add("redis.wait_replicas", "needs Sentinel (redis.master_name) or Redis Cluster: a single Redis has no replicas to wait for")
	}
	if c.Redis.Shards < 0 || c.Redis.Shards > 1024 {
		v.add("redis.shards", "must be between 1 and 1024 (0: the default)")
	}
	if t := c.Redis.WaitTimeout; t != 0 && (t < 10*time.Millisecond || t > 10*time.Second) {
		v.add("redis.wait_timeout", "must be between 10ms and 10s")
	}
	plain := func(field, addr, fix string) {
		if !c.InsecurePlaintext && !Loopback(addr) {
			v.add(field, fmt.Sprintf("%s is not a loopback address and has no TLS: %s, or set insecure_plaintext: true for a network you trust", addr, fix))
		}
	}
	if t := c.TLS; t != nil {
		if t.CertFile == "" || t.KeyFile == "" {
			v.add("tls", "cert_file and key_file are both required")
		} else if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			v.add("tls", err.Error())
		}
	} else {
		plain("listen", c.Listen, "set tls (cert_file, key_file)")
		if l := c.Console.Listen; l != "" && l != "off" {
			plain("console.listen", l, "set tls (cert_file, key_file)")
		}
	}
	for i, pc := range c.PA.Controllers {
		if u, err := url.Parse(pc.URL); err == nil && u.Scheme == "http" {
			plain(fmt.Sprintf("pa.controllers[%d].url", i), u.Host, "use https:// (its bearer token would cross the network in clear)")
		}
	}
	if c.Redis.TLS != nil {
		tc, err := c.Redis.TLS.client()
		if err != nil {
			v.add("redis.tls", err.Error())
		}
		c.Redis.tlsConfig = tc
	} else {
		for i, a := range c.Redis.Addrs {
			plain(fmt.Sprintf("redis.addrs[%d]", i), a, "set redis.tls")
		}
	}
	u, err := url.Parse(c.MQTT.Broker)
	switch {
	case err != nil || u.Host == "":
		v.add("mqtt.broker", "must be a URL such as mqtts://broker.example:8883 or tcp://127.0.0.1:1883")
	case u.Scheme == "mqtts" || u.Scheme == "ssl" || u.Scheme == "tls":
		tc := &tls.Config{MinVersion: tls.VersionTLS12}
		if c.MQTT.TLS != nil {
			if tc, err = c.MQTT.TLS.client(); err != nil {
				v.add("mqtt.tls", err.Error())
			}
		}
		c.MQTT.tlsConfig = tc
	case u.Scheme == "tcp" || u.Scheme == "mqtt":
		if c.MQTT.TLS != nil {
			v.add("mqtt.tls", "needs an mqtts:// broker")
		}
		plain("mqtt.broker", u.Host, "use mqtts://")
	default:
		v.add("mqtt.broker", fmt.Sprintf("scheme %q: use mqtts:// (or tcp:// on loopback)", u.Scheme))
	}
}
