package config

import (
	"fmt"
	"net/url"
)

// UpstreamLink is how a site gateway hears from its central Tocsin: the
// central lists the site as a dispatch centre, POSTs it every alert,
// Cancel and AllClear as signed CAP, and the site answers each with a CAP
// Ack posted back — the open standard both ends already speak.
type UpstreamLink struct {
	// HMACKeyEnv names the environment variable with the key the central's
	// dispatch centre entry for this site has (16 characters or more).
	HMACKeyEnv string `yaml:"hmac_key_env"`
	// AckURL is the central's CAP Ack endpoint for this site:
	// https://central.example/v1/callbacks/cap/{the site's centre id}.
	AckURL string `yaml:"ack_url"`
	// InsecureHTTP allows an http:// ack_url (loopback tests).
	InsecureHTTP bool `yaml:"insecure_http"`
	// Sender is the CAP <sender> of the site's Acks (default: dispatch.sender).
	Sender string `yaml:"sender"`

	key []byte
}

// HMACKey is the key shared with the central, read at load time.
func (u *UpstreamLink) HMACKey() []byte { return u.key }

func (p *Principal) validateUpstream(v *validator, f string) {
	u := p.Upstream
	if u == nil {
		v.add(f+".upstream", "required for kind upstream: hmac_key_env and ack_url")
		return
	}
	if p.KeySHA256 != "" || p.KeyEnv != "" || p.KeyFile != "" {
		v.add(f+".kind", "an upstream has no API key: it signs every message (upstream.hmac_key_env, cap_certs)")
	}
	if len(p.CAPCerts) == 0 {
		v.add(f+".cap_certs", "required for kind upstream: the central's CAP signing certificate")
	}
	if u.HMACKeyEnv == "" {
		v.add(f+".upstream.hmac_key_env", "required: the environment variable with the key shared with the central")
	} else {
		u.key = []byte(v.env(f+".upstream.hmac_key_env", u.HMACKeyEnv, "the HMAC key shared with the central", 16))
	}
	switch au, err := url.Parse(u.AckURL); {
	case u.AckURL == "" || err != nil || au.Host == "" || (au.Scheme != "https" && au.Scheme != "http"):
		v.add(f+".upstream.ack_url", "required: the central's https://…/v1/callbacks/cap/{centre} for this site")
	case au.Scheme == "http" && !u.InsecureHTTP:
		v.add(f+".upstream.ack_url", fmt.Sprintf("%s: must be https:// (insecure_http: true only on a network you trust)", u.AckURL))
	}
}
