// Package routing turns an alert into its targets from the configuration:
// the sirens, PA zones and dispatch centres covering its zones, and the
// people of the zones' contact groups; and finds a phone target's person at
// the last moment, so that ledgers and logs only carry "group.person".
package routing

import (
	"slices"
	"strings"

	"github.com/tocsin-alert/tocsin/adapters"
	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/config"
)

// OperatorGroup names operators as phone targets ("~operators.ben"): no
// contact group id can start with "~", and ledgers carry the id, never the
// number.
const OperatorGroup = "~operators"

// Router routes alerts over one configuration.
type Router struct {
	cfg      *config.Config
	sirens   map[string][]config.Siren          // by zone
	contacts map[string][]config.ContactGroup   // by zone
	groups   map[string]*config.ContactGroup    // by id
	paZones  map[string][]config.PAZone         // by zone
	centres  map[string][]config.DispatchCentre // by zone
}

// New builds a Router from cfg (which it keeps: operators are looked up in
// it at each call).
func New(cfg *config.Config) *Router {
	r := &Router{
		cfg: cfg, sirens: map[string][]config.Siren{}, contacts: map[string][]config.ContactGroup{},
		groups: map[string]*config.ContactGroup{}, paZones: map[string][]config.PAZone{}, centres: map[string][]config.DispatchCentre{},
	}
	for _, s := range cfg.Sirens {
		r.sirens[s.Zone] = append(r.sirens[s.Zone], s)
	}
	for i, grp := range cfg.Contacts {
		r.contacts[grp.Zone] = append(r.contacts[grp.Zone], grp)
		r.groups[grp.ID] = &cfg.Contacts[i]
	}
	for _, z := range cfg.PA.Zones {
		r.paZones[z.Zone] = append(r.paZones[z.Zone], z)
	}
	for _, c := range cfg.Dispatch.Centres {
		for _, z := range c.Zones {
			r.centres[z] = append(r.centres[z], c)
		}
	}
	return r
}

// Recipient finds a phone target's person (adapters look numbers up here, at
// the last moment, so ledgers and logs only carry "group.person").
func (r *Router) Recipient(targetID string) (adapters.Recipient, bool) {
	group, id, ok := strings.Cut(targetID, ".")
	if group == OperatorGroup {
		if o := r.cfg.Operator(id); o != nil && o.Phone != "" {
			return adapters.Recipient{Phone: o.Phone}, true
		}
		return adapters.Recipient{}, false
	}
	grp := r.groups[group]
	if !ok || grp == nil {
		return adapters.Recipient{}, false
	}
	p, ok := grp.Members.Find(id)
	return adapters.Recipient{Phone: p.Phone, Language: p.Language}, ok
}

// Route turns an alert into its targets: for each zone, every siren, PA zone
// and dispatch centre covering it, and every person of the zone's contact
// groups by SMS and voice, as far as the alert's channel kinds ask. A test or
// exercise alert reaches only targets that take drills. A phone number is
// reached once per kind, however many groups list it; a dispatch centre once,
// however many of its zones the alert names.
func (r *Router) Route(a *alert.Alert) []alert.Target {
	ts, _ := r.Plan(a)
	return ts
}

// Withheld is a channel kind the channel policy kept an alert from using in
// a zone that has targets for it.
type Withheld struct {
	Kind   alert.Kind `json:"kind"`
	Zone   string     `json:"zone"`
	Reason string     `json:"reason"`
}

// Plan is Route that also says which channels the channel policy withheld
// where the zone has targets for them (an actual alert below a channel's
// lowest severity): the sender learns that no siren sounds.
func (r *Router) Plan(a *alert.Alert) ([]alert.Target, []Withheld) {
	var ts []alert.Target
	var withheld []Withheld
	wants := func(k alert.Kind) bool { return slices.Contains(a.Channels, k) }
	// allowed decides a kind in a zone once; a refusal is reported once,
	// and only where the zone has a target of that kind.
	type zk struct {
		z string
		k alert.Kind
	}
	decided := map[zk]bool{}
	allowed := func(k alert.Kind, z string) bool {
		if a.Status.IsDrill() {
			return true
		}
		ok, done := decided[zk{z, k}]
		if !done {
			rule := r.cfg.ChannelPolicy.Rule(k, z, a.Event)
			ok = rule.Allows(a.Severity)
			decided[zk{z, k}] = ok
			if !ok {
				withheld = append(withheld, Withheld{Kind: k, Zone: z, Reason: rule.Why(z, a.Severity)})
			}
		}
		return ok
	}
	type once struct {
		k     alert.Kind
		dedup string
	}
	seen := map[once]struct{}{}
	var groups []config.ContactGroup
	add := func(k alert.Kind, id, dedup string) {
		if _, dup := seen[once{k, dedup}]; !dup {
			seen[once{k, dedup}] = struct{}{}
			ts = append(ts, alert.Target{Kind: k, ID: id})
		}
	}
	for _, z := range a.Zones {
		if wants(alert.KindSiren) && r.hasSiren(z) && allowed(alert.KindSiren, z) {
			for _, s := range r.sirens[z] {
				if !a.Status.IsDrill() || s.Drills {
					add(alert.KindSiren, s.ID, s.ID)
				}
			}
		}
		if wants(alert.KindPA) && r.hasPA(z) && allowed(alert.KindPA, z) {
			for _, pz := range r.paZones[z] {
				if !a.Status.IsDrill() || pz.Drills {
					add(alert.KindPA, pz.ID, pz.ID)
				}
			}
		}
		if wants(alert.KindDispatch) && r.hasDispatch(z) && allowed(alert.KindDispatch, z) {
			for _, c := range r.centres[z] {
				if !a.Status.IsDrill() || c.Drills {
					add(alert.KindDispatch, c.ID, c.ID) // once, however many of its zones are hit
				}
			}
		}
		if !wants(alert.KindSMS) && !wants(alert.KindVoice) {
			continue // no person is reached: a million-member group costs nothing
		}
		for _, grp := range r.contacts[z] {
			if !a.Status.IsDrill() || grp.Drills {
				groups = append(groups, grp)
			}
		}

	}
	// Phones are deduplicated only where they could repeat: across groups, or
	// inside a group that lists a number twice. A million people in one
	// group need no million-entry map.
	dedup := len(groups) > 1 || len(groups) == 1 && !groups[0].Members.UniquePhones()
	n := 0
	for _, grp := range groups {
		n += 2 * grp.Members.Len()
	}
	ts = slices.Grow(ts, n)
	for _, grp := range groups {
		var kinds []alert.Kind
		for _, k := range []alert.Kind{alert.KindSMS, alert.KindVoice} {
			if wants(k) && allowed(k, grp.Zone) {
				kinds = append(kinds, k)
			}
		}
		if len(kinds) == 0 {
			continue
		}
		for i := range grp.Members.Len() {
			p := grp.Members.At(i)
			id := ""
			for _, k := range kinds {
				if p.Reaches(k) {
					if id == "" {
						id = grp.ID + "." + p.ID
					}
					if dedup {
						add(k, id, p.Phone)
					} else {
						ts = append(ts, alert.Target{Kind: k, ID: id})
					}
				}
			}
		}
	}
	return ts, withheld
}

func (r *Router) hasSiren(z string) bool    { return len(r.sirens[z]) > 0 }
func (r *Router) hasPA(z string) bool       { return len(r.paZones[z]) > 0 }
func (r *Router) hasDispatch(z string) bool { return len(r.centres[z]) > 0 }
