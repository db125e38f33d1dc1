package config

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

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
	Sender  string           `yaml:"sender"`
	Centres []DispatchCentre `yaml:"centres"`
}

// DispatchCentre is one dispatch centre's CAP endpoint.
type DispatchCentre struct {
	ID string `yaml:"id"`
	// Zones the centre covers: alerts to any of them reach it.
	Zones []string `yaml:"zones"`
	// URL is where CAP documents are POSTed.
	URL string `yaml:"url"`
	// HMACKeyEnv names the environment variable with the shared key that
	// signs what is sent (X-Tocsin-Signature) and the CAP Acks that come back.
	HMACKeyEnv string `yaml:"hmac_key_env"`
	// TLS, if set, is the client certificate (mTLS) and the CA to trust.
	TLS *TLSFiles `yaml:"tls"`
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
		if !slices.Contains(alert.Languages(), strings.ToLower(z.Language)) {
			v.add(f+".language", fmt.Sprintf("no texts in %q; one of %s", z.Language, strings.Join(alert.Languages(), ", ")))
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
		if !validHTTPURL(dc.URL) {
			v.add(f+".url", "must be the http(s) URL the centre takes CAP documents at")
		}
		if dc.HMACKeyEnv == "" {
			v.add(f+".hmac_key_env", "required: the environment variable holding the key shared with the centre")
		}
		if dc.TLS != nil {
			if (dc.TLS.CertFile == "") != (dc.TLS.KeyFile == "") {
				v.add(f+".tls", "cert_file and key_file go together")
			}
			if strings.HasPrefix(dc.URL, "http://") {
				v.add(f+".url", "must be https:// when tls is set")
			}
		}
	}
}
