package gateway_test

import (
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tocsin-alert/tocsin/adapters/dispatch"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/loadtest/fake"
)

// Alive when central IT is not. A site gateway with its own Redis, broker
// and sirens takes the central Tocsin's alerts as a dispatch centre would —
// signed CAP over the dispatch route — and acks each, so the central's
// ledger shows the site delivered. With the central gateway and its Redis
// gone, the school's own alarm button still sounds the school's sirens.
// Restored, the central retracts its alert: the site gets the Cancel, its
// sirens get the all-clear for that alert only (the button's alarm sounds
// on), the central sees the retraction acked, and no alert was doubled.
func TestSiteGateway(t *testing.T) {
	cert, key, err := fake.TestSigningCert(t.TempDir()) // the central's CAP signing pair
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("TOCSIN_TEST_SITE_HMAC", "site-shared-hmac-key-0001")
	centralPort := testenv.FreePort(t)
	// The central names its zones in CAP as geocode tocsin:zone=<id>; the
	// site maps them onto its own zones.
	site := newStack(t, stackOptions{triggers: true, clientID: "tocsin-site", school: `{id: school, geocodes: ["tocsin:zone=school"]}`, principal: fmt.Sprintf(`  - id: central
    kind: upstream
    cap_certs: [%q]
    upstream: {hmac_key_env: TOCSIN_TEST_SITE_HMAC, ack_url: "http://127.0.0.1:%d/v1/callbacks/cap/site-school", insecure_http: true}
    scopes: {zones: [school], channels: [siren]}
`, cert, centralPort)})
	central := newStack(t, stackOptions{publicPort: centralPort, clientID: "tocsin-central", extra: fmt.Sprintf(`dispatch:
  sender: tocsin@central.test
  signing: {cert_file: %q, key_file: %q}
  centres:
    - {id: site-school, zones: [school], url: %q, hmac_key_env: TOCSIN_TEST_SITE_HMAC, insecure_http: true}
operators:
  - {id: ben, name: Ben Duty, roles: [viewer], zones: ["*"], phone: "+4915199999999", on_duty: true}
probes: {dispatch: 1s}
`, cert, key, site.url+"/v1/upstream/central")})

	r := central.post(`{"status":"actual","event":"Amok","severity":"Extreme","urgency":"Immediate","headline":"Amokalarm","zones":["school"],"channels":["dispatch"]}`)
	if r.Code != 202 {
		t.Fatalf("central post = %d %s", r.Code, r.Raw)
	}
	centralID := r.Body["id"].(string)
	eventually(t, 10*time.Second, "the central's delivery to the site acked", func() bool {
		return central.counts(centralID, "dispatch")["delivered"] == float64(1)
	})
	// The central's probe of the site (a CAP Test message) is acked, and
	// sounds nothing there.
	eventually(t, 5*time.Second, "the site passing the central's probe", func() bool {
		return strings.Contains(central.do("GET", "/v1/health/channels", operatorKey, "", "").Raw, `"kind":"dispatch","target":"site-school","ok":true`)
	})
	school := sirenIDs("school", 3)
	var siteID string
	eventually(t, 5*time.Second, "the site's sirens sounding the central's alert", func() bool {
		siteID = site.fleet.Sounding(school[0])
		return siteID != "" && site.sirenCounts(siteID)["delivered"] == float64(3)
	})

	// The central and its Redis are gone; the school's button still works.
	central.cancel()
	central.redis.Kill()
	p := newPanel(t, site)
	tr := trigger("school-button", "amok-button", "school", time.Now())
	p.send("school-button", tr)
	a := p.ack(tr.EventID)
	if a.Status != "accepted" || string(a.AlertID) == siteID {
		t.Fatalf("the site's own trigger with the central cut off: %+v", a)
	}
	eventually(t, 5*time.Second, "the button sounded the school's sirens", func() bool {
		return site.sirenCounts(string(a.AlertID))["delivered"] == float64(3)
	})

	// Restored: the central retracts its alert at the site.
	central.redis.Restart()
	central.startGateway()
	if r := central.retract(centralID, "false_alarm"); r.Code != 202 {
		t.Fatalf("central retract = %d %s", r.Code, r.Raw)
	}
	eventually(t, 15*time.Second, "the site's copy retracted, all-clear at its sirens, the central's retraction acked", func() bool {
		return site.sirenCounts(siteID)["retracted"] == "3/3" && central.counts(centralID, "dispatch")["retracted"] == "1/1"
	})
	for _, id := range school {
		if got := site.fleet.Sounding(id); got != string(a.AlertID) {
			t.Errorf("siren %s sounds for %q; want the button's alarm %s still in force", id, got, a.AlertID)
		}
	}
	alarms := map[string]int{}
	for _, rc := range site.fleet.Received() {
		if rc.Cmd.Signal == "alarm" && !rc.Repeat {
			alarms[rc.Cmd.AlertID]++
		}
	}
	if len(alarms) != 2 || alarms[siteID] != 3 || alarms[string(a.AlertID)] != 3 {
		t.Errorf("alarms at the site by alert: %v; want the central's and the button's, 3 sirens each, nothing doubled", alarms)
	}
}

// The upstream door takes nothing it cannot prove came from the central:
// no or a wrong HMAC, a stale timestamp, a document without the central's
// XML signature — and an unknown upstream is named as unknown.
func TestUpstreamRefusals(t *testing.T) {
	cert, _, err := fake.TestSigningCert(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	key := "site-shared-hmac-key-0001"
	t.Setenv("TOCSIN_TEST_SITE_HMAC", key)
	site := newStack(t, stackOptions{school: `{id: school, geocodes: ["tocsin:zone=school"]}`, principal: fmt.Sprintf(`  - id: central
    kind: upstream
    cap_certs: [%q]
    upstream: {hmac_key_env: TOCSIN_TEST_SITE_HMAC, ack_url: "http://127.0.0.1:1/v1/callbacks/cap/site", insecure_http: true}
    scopes: {zones: [school], channels: [siren]}
`, cert)})
	doc, _ := thunderstorm(t) // real CAP, not signed by the central
	signed := func(k string, at time.Time) []string {
		return []string{dispatch.HeaderTimestamp, strconv.FormatInt(at.Unix(), 10), dispatch.HeaderSignature, dispatch.Sign([]byte(k), at, doc)}
	}
	for _, c := range []struct {
		name, path string
		hdr        []string
		code       int
		want       string
	}{
		{"no signature", "/v1/upstream/central", nil, 403, dispatch.HeaderTimestamp},
		{"another key", "/v1/upstream/central", signed("not-the-shared-key-000001", time.Now()), 403, "does not match the body"},
		{"stale", "/v1/upstream/central", signed(key, time.Now().Add(-10*time.Minute)), 403, "away from now"},
		{"not XML-signed by the central", "/v1/upstream/central", signed(key, time.Now()), 403, "cap_certs"},
		{"unknown upstream", "/v1/upstream/nobody", signed(key, time.Now()), 404, "no upstream"},
		{"a dispatch principal is no upstream", "/v1/upstream/leitstelle", signed(key, time.Now()), 404, "no upstream"},
	} {
		r := site.do("POST", c.path, "", "application/cap+xml", string(doc), c.hdr...)
		if r.Code != c.code || !strings.Contains(r.Raw, c.want) {
			t.Errorf("%s: %d %s; want %d naming %q", c.name, r.Code, r.Raw, c.code, c.want)
		}
	}
	if n := len(site.fleet.Received()); n != 0 {
		t.Errorf("%d siren commands after refused upstream requests", n)
	}
}
