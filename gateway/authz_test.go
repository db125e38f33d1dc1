package gateway_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/tocsin-alert/tocsin/config"
	"github.com/tocsin-alert/tocsin/gateway"
	"github.com/tocsin-alert/tocsin/release"
)

// unauthenticated are the routes that take no API key or session, each with
// what checks it instead, and the answer an anonymous request gets.
var unauthenticated = map[string]int{
	"POST /v1/callbacks/twilio/{delivery}": 403, // Twilio's signature
	"POST /v1/callbacks/cap/{centre}":      404, // the centre's HMAC (an unknown centre is named as unknown)
	"POST /v1/upstream/{upstream}":         404, // the central's HMAC and XML signature (an unknown upstream is named as unknown)
	"POST /v1/session":                     401, // credentials in the body, one vague answer
	"POST /v1/enrol":                       400, // the invite token in the body
	"POST /v1/session/key/options":         404, // a security key's challenge; 404 without public_url
	"POST /v1/session/key":                 404, // password and a key's assertion in the body
	"GET /healthz":                         200,
	"GET /readyz":                          200,
	"GET /metrics":                         200, // no metrics token configured here
}

// TestEveryRouteIsAuthorised walks the router: every route either needs an
// API key or a session (and an anonymous or forged request gets 401), or is
// one of the few listed above, each answered without anything secret.
func TestEveryRouteIsAuthorised(t *testing.T) {
	s := newStack(t, stackOptions{extra: operatorsConfig, dispatch: nil})
	routes := s.gw.Routes()
	if len(routes) < 30 {
		t.Fatalf("only %d routes: the walk is broken", len(routes))
	}
	for pattern, auth := range routes {
		method, path, _ := strings.Cut(pattern, " ")
		path = strings.NewReplacer("{id}", "x1", "{delivery}", "d1", "{centre}", "c1", "{source}", "school-button").Replace(path)
		body := `{}`
		if auth == gateway.AuthPrincipal {
			if _, listed := unauthenticated[pattern]; listed {
				t.Errorf("%s needs a principal but is listed as unauthenticated", pattern)
			}
			for _, key := range []string{"", "not-a-key-at-all-0000", "tsn_forged-session-token"} {
				if r := s.do(method, path, key, "application/json", body); r.Code != 401 {
					t.Errorf("%s with key %q = %d %s, want 401", pattern, key, r.Code, r.Raw)
				}
			}
			continue
		}
		want, ok := unauthenticated[pattern]
		if !ok {
			t.Errorf("%s takes no principal (%s) and is not in the reviewed list", pattern, auth)
			continue
		}
		if r := s.do(method, path, "", "application/json", body); r.Code != want {
			t.Errorf("anonymous %s = %d %s, want %d", pattern, r.Code, r.Raw, want)
		}
	}
	for pattern := range unauthenticated {
		if _, ok := routes[pattern]; !ok {
			t.Errorf("%s is listed but no longer routed", pattern)
		}
	}
}

// TestEveryStateActionRole tries every (state, action, role) triple on the
// release rules: only the transition table's pairs pass Next, and of those
// only the roles the README names pass Check; four-eyes and step-up hold.
func TestEveryStateActionRole(t *testing.T) {
	allowed := map[release.Action][]config.Role{
		release.ActEdit: {config.RoleAuthor}, release.ActSubmit: {config.RoleAuthor},
		release.ActApprove: {config.RoleApprover}, release.ActRelease: {config.RoleApprover},
		release.ActReturn: {config.RoleApprover}, release.ActReject: {config.RoleApprover},
		release.ActRetract: {config.RoleAuthor, config.RoleApprover},
	}
	n := 0
	for _, st := range release.States {
		for _, act := range release.Actions {
			for _, role := range config.Roles {
				for _, drill := range []bool{false, true} {
					for _, own := range []bool{false, true} {
						n++
						o := &config.Operator{ID: "op", Roles: []config.Role{role}, Zones: []string{"*"}}
						p := o.Principal()
						who := release.Actor{ID: p.ID, Zones: p.Scopes.Zones, Retract: p.Scopes.Retract, Person: true,
							Author: o.Has(config.RoleAuthor), Approver: o.Has(config.RoleApprover), SteppedUp: true}
						d := &release.Draft{State: st, Author: "someone", Editor: "someone", Package: release.Package{Status: "actual", Zones: []string{"school"}}}
						if drill {
							d.Package.Status = "exercise"
						}
						if own {
							d.Author, d.Editor = "op", "op"
						}
						to, nextErr := release.Next(st, act)
						_, inTable := release.Transitions[st][act]
						if (nextErr == nil) != inTable || (inTable && to == "") {
							t.Errorf("Next(%s, %s) = %q, %v; table says %v", st, act, to, nextErr, inTable)
						}
						err := release.Check(d, act, who)
						want := slices.Contains(allowed[act], role)
						if act == release.ActApprove && own && !drill {
							want = false // four-eyes; an exercise allows self-approval
						}
						if (err == nil) != want {
							t.Errorf("Check(%s, %s, role %s, exercise %v, own %v) = %v, want allowed %v", st, act, role, drill, own, err, want)
						}
						// The step-up is needed exactly for approving and releasing.
						who.SteppedUp = false
						err2 := release.Check(d, act, who)
						if needs := act == release.ActApprove || act == release.ActRelease; want && needs != (err2 == release.ErrStepUp) {
							t.Errorf("Check(%s, %s, %s) without step-up = %v", st, act, role, err2)
						}
					}
				}
			}
		}
	}
	if n != len(release.States)*len(release.Actions)*len(config.Roles)*4 {
		t.Fatal(fmt.Sprint("tried ", n))
	}
	// Outside the zones: refused whatever the role.
	o := &config.Operator{ID: "op", Roles: config.Roles, Zones: []string{"townhall"}}
	who := release.Actor{ID: "op", Zones: o.Zones, Author: true, Approver: true, Person: true, SteppedUp: true, Retract: true}
	for _, act := range release.Actions {
		if err := release.Check(&release.Draft{Author: "x", Editor: "x", Package: release.Package{Status: "actual", Zones: []string{"school"}}}, act, who); err == nil {
			t.Errorf("%s outside the zones allowed", act)
		}
	}
}
