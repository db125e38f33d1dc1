package config

import (
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/tocsin-alert/tocsin/alert"
)

// Operator is a person who works Tocsin: signs in, composes, approves,
// retracts. Their credentials (password, second factor) live in Redis, set by
// enrolment (tocsin operator invite); the configuration says who they are and
// what they may do.
type Operator struct {
	ID   string `yaml:"id"`
	Name string `yaml:"name"`
	// Roles are viewer, author, approver, maintainer and admin.
	Roles []Role `yaml:"roles"`
	// Zones the person may act on; "*" is every zone.
	Zones []string `yaml:"zones"`
	// Phone (E.164) is where the person is paged when an alert waits for
	// their approval while they are on duty.
	Phone string `yaml:"phone"`
	// OnDuty people with the approver role are paged for pending alerts.
	OnDuty bool `yaml:"on_duty"`
}

// Role is a named set of permissions.
type Role string

// The roles. Every role may read; the rest is what each adds.
const (
	// RoleViewer reads alerts, drafts, sources and the audit.
	RoleViewer Role = "viewer"
	// RoleAuthor composes drafts, submits them, and retracts.
	RoleAuthor Role = "author"
	// RoleApprover approves, returns and rejects pending alerts, and retracts.
	RoleApprover Role = "approver"
	// RoleMaintainer puts trigger sources into maintenance and ends it.
	RoleMaintainer Role = "maintainer"
	// RoleAdmin invites, disables and re-roles operators.
	RoleAdmin Role = "admin"
)

// Roles are the roles that exist.
var Roles = []Role{RoleViewer, RoleAuthor, RoleApprover, RoleMaintainer, RoleAdmin}

// Has reports whether the operator holds role r.
func (o *Operator) Has(r Role) bool { return slices.Contains(o.Roles, r) }

// Principal is the operator as the API sees a caller: their roles turned into
// scopes. Its ID is the operator's id; its Kind "person".
func (o *Operator) Principal() *Principal {
	p := &Principal{ID: o.ID, Kind: KindPerson, Scopes: Scopes{Zones: o.Zones}, operator: o}
	p.Scopes.Retract = o.Has(RoleAuthor) || o.Has(RoleApprover)
	p.Scopes.Maintenance = o.Has(RoleMaintainer)
	return p
}

// KindPerson is the Kind of a Principal that is a signed-in operator.
const KindPerson = "person"

// Operator is the person behind a session principal, nil for an API key.
func (p *Principal) Operator() *Operator { return p.operator }

// Can reports whether the principal holds role r: an operator by their
// roles; an API key never holds operator roles.
func (p *Principal) Can(r Role) bool { return p.operator != nil && p.operator.Has(r) }

// Sessions tune operators' sign-in.
type Sessions struct {
	// Idle ends a session nobody used for this long (default 30m).
	Idle time.Duration `yaml:"idle"`
	// Absolute ends every session this long after sign-in (default 12h).
	Absolute time.Duration `yaml:"absolute"`
	// StepUp is how fresh a second factor must be to approve, release, end
	// maintenance or change roles (default 2m).
	StepUp time.Duration `yaml:"step_up"`
	// LockoutAfter failed sign-ins lock the person out for LockoutFor
	// (defaults 5 and 15m).
	LockoutAfter int           `yaml:"lockout_after"`
	LockoutFor   time.Duration `yaml:"lockout_for"`
	// InviteTTL is how long an enrolment link works (default 24h).
	InviteTTL time.Duration `yaml:"invite_ttl"`
}

// Release says which alerts go out at once and which wait for people.
type Release struct {
	// ApprovalTTL is how long an approval stays valid (default 15m): a
	// package approved but not released by then needs approving again.
	ApprovalTTL time.Duration `yaml:"approval_ttl"`
	// Approvers is how many distinct approvers an alert held for approval
	// needs by default (default 1).
	Approvers int `yaml:"approvers"`
	// Rules raise the number for alerts in some zones or from a severity on;
	// the largest matching rule wins.
	Rules []ApprovalRule `yaml:"rules"`
	// Principals, Sources and Roles map an API principal, a trigger source or
	// an operator role to its policy: auto, approval or quarantine. Unlisted
	// principals and sources are auto (machines that must not wait); an
	// operator's draft is held for approval unless every role it holds that
	// may author is mapped to auto.
	Principals map[string]Policy `yaml:"principals"`
	Sources    map[string]Policy `yaml:"sources"`
	Roles      map[Role]Policy   `yaml:"roles"`
	// Page are the channel kinds (sms, voice) on-duty approvers are paged on
	// when an alert waits for them; empty pages nobody.
	Page []alert.Kind `yaml:"page"`
}

// ApprovalRule asks for more approvers for some alerts.
type ApprovalRule struct {
	// Zones: an alert touching any of them matches ("*": every alert).
	Zones []string `yaml:"zones"`
	// MinSeverity: an alert at this severity or above matches (empty: any).
	MinSeverity string `yaml:"min_severity"`
	Approvers   int    `yaml:"approvers"`
}

// Policy is what happens to an alert from one sender.
type Policy string

// The policies.
const (
	// PolicyAuto releases at once; people review afterwards.
	PolicyAuto Policy = "auto"
	// PolicyApproval holds the alert until enough approvers release it.
	PolicyApproval Policy = "approval"
	// PolicyQuarantine records the alert and sends nothing (as maintenance).
	PolicyQuarantine Policy = "quarantine"
)

// PolicyFor is the policy of an API principal's alerts.
func (r *Release) PolicyFor(principal string) Policy {
	if p, ok := r.Principals[principal]; ok {
		return p
	}
	return PolicyAuto
}

// SourcePolicy is the policy of a trigger source's alerts.
func (r *Release) SourcePolicy(source string) Policy {
	if p, ok := r.Sources[source]; ok {
		return p
	}
	return PolicyAuto
}

// OperatorPolicy is the policy of an operator's drafts: auto only if every
// authoring role they hold is mapped to auto; quarantine if any is.
func (r *Release) OperatorPolicy(o *Operator) Policy {
	pol := PolicyAuto
	for _, role := range o.Roles {
		p, ok := r.Roles[role]
		if !ok {
			if role == RoleAuthor {
				p = PolicyApproval
			} else {
				continue
			}
		}
		switch {
		case p == PolicyQuarantine:
			return PolicyQuarantine
		case p == PolicyApproval:
			pol = PolicyApproval
		}
	}
	return pol
}

// ApproversFor is how many distinct approvers an alert in zones at sev needs.
func (r *Release) ApproversFor(zones []string, sev alert.Severity) int {
	n := max(r.Approvers, 1)
	for _, rule := range r.Rules {
		if rule.MinSeverity != "" {
			min, _ := alert.ParseSeverity(rule.MinSeverity)
			if sev < min {
				continue
			}
		}
		hit := slices.Contains(rule.Zones, "*")
		for _, z := range zones {
			hit = hit || slices.Contains(rule.Zones, z)
		}
		if hit || len(rule.Zones) == 0 {
			n = max(n, rule.Approvers)
		}
	}
	return n
}

// Template is a prepared alert operators compose from: everything but what
// the moment fills in, with the texts its retraction will use.
type Template struct {
	ID string `yaml:"id" json:"id"`
	// Version goes up with every change; a draft keeps the version it was
	// made from.
	Version     int          `yaml:"version" json:"version"`
	Name        string       `yaml:"name" json:"name"`
	Event       string       `yaml:"event" json:"event"`
	Severity    string       `yaml:"severity" json:"severity"`
	Urgency     string       `yaml:"urgency" json:"urgency"`
	Certainty   string       `yaml:"certainty" json:"certainty"`
	Headline    string       `yaml:"headline" json:"headline"`
	Description string       `yaml:"description" json:"description"`
	Instruction string       `yaml:"instruction" json:"instruction"`
	Language    string       `yaml:"language" json:"language"`
	Info        []alert.Info `yaml:"info" json:"info"`
	Zones       []string     `yaml:"zones" json:"zones"`
	Channels    []alert.Kind `yaml:"channels" json:"channels"`
	// Expires is how long alerts from the template last (default: the
	// queue's default_expiry).
	Expires time.Duration `yaml:"expires" json:"expires"`
	// Retraction are the texts a retraction of the alert sends, per reason
	// (false_alarm, all_clear, superseded), language and optionally channel
	// kind; what is missing comes from the configuration's texts.
	Retraction []Text `yaml:"retraction" json:"retraction"`
}

// RetractionTexts are the template's retraction texts as an alert carries
// them: reason → "lang" or "lang/kind" → text.
func (t *Template) RetractionTexts() map[string]map[string]string {
	if len(t.Retraction) == 0 {
		return nil
	}
	m := map[string]map[string]string{}
	for _, x := range t.Retraction {
		if m[x.Key] == nil {
			m[x.Key] = map[string]string{}
		}
		k := strings.ToLower(x.Language)
		if x.Kind != "" {
			k += "/" + string(x.Kind)
		}
		m[x.Key][k] = x.Text
	}
	return m
}

// Template finds a template by id.
func (c *Config) Template(id string) *Template {
	for i := range c.Templates {
		if c.Templates[i].ID == id {
			return &c.Templates[i]
		}
	}
	return nil
}

// Operator finds an operator by id.
func (c *Config) Operator(id string) *Operator {
	for i := range c.Operators {
		if c.Operators[i].ID == id {
			return &c.Operators[i]
		}
	}
	return nil
}

// Console is the web console's own listener (package console).
type Console struct {
	// Listen is its address (default 127.0.0.1:8081 when operators are
	// configured; "off" turns it off). Keep it on the control-room network.
	Listen string `yaml:"listen"`
	// PublicURL is where browsers reach it (https://…): its origin is
	// allowed for security keys and it marks cookies Secure.
	PublicURL string `yaml:"public_url"`
	// Exercise makes this console an exercise context: its own colours and
	// the EXERCISE / ÜBUNG header on every page, and only exercise and test
	// alerts can be composed in it.
	Exercise bool `yaml:"exercise"`
}

// AuditConf says where the audit's archive and checkpoints go.
type AuditConf struct {
	// Dir keeps the archived entries and the signed checkpoints (default:
	// none — entries stay in Redis, and no checkpoints are written).
	Dir string `yaml:"dir"`
	// SigningKeyEnv names the environment variable with the checkpoint
	// signing key (tocsin audit keygen).
	SigningKeyEnv string `yaml:"signing_key_env"`
	// CheckpointEvery entries or CheckpointInterval, whichever comes first
	// (defaults 1000 and 1m).
	CheckpointEvery    int           `yaml:"checkpoint_every"`
	CheckpointInterval time.Duration `yaml:"checkpoint_interval"`
	// Syslog also writes every checkpoint to the local syslog, so a copy
	// lives outside the gateway.
	Syslog bool `yaml:"syslog"`
	// VerifierKey is the checkpoints' public verifier key (tocsin audit
	// keygen): with it, GET /v1/audit/verify replays the chain here.
	VerifierKey string `yaml:"verifier_key"`
	// ArchiveEvery is how often the keeper moves entries from Redis to the
	// archive (default 5s).
	ArchiveEvery time.Duration `yaml:"archive_every"`

	signingKey string
}

// SigningKey is the checkpoint signing key read from SigningKeyEnv.
func (a *AuditConf) SigningKey() string { return a.signingKey }

func (c *Config) defaultsOperators() {
	if c.Console.Listen == "" && len(c.Operators) > 0 {
		c.Console.Listen = "127.0.0.1:8081"
	}
	s := &c.Sessions
	if s.Idle == 0 {
		s.Idle = 30 * time.Minute
	}
	if s.Absolute == 0 {
		s.Absolute = 12 * time.Hour
	}
	if s.StepUp == 0 {
		s.StepUp = 2 * time.Minute
	}
	if s.LockoutAfter == 0 {
		s.LockoutAfter = 5
	}
	if s.LockoutFor == 0 {
		s.LockoutFor = 15 * time.Minute
	}
	if s.InviteTTL == 0 {
		s.InviteTTL = 24 * time.Hour
	}
	if c.Release.ApprovalTTL == 0 {
		c.Release.ApprovalTTL = 15 * time.Minute
	}
	if c.Release.Approvers == 0 {
		c.Release.Approvers = 1
	}
	if c.Audit.CheckpointEvery == 0 {
		c.Audit.CheckpointEvery = 1000
	}
	if c.Audit.CheckpointInterval == 0 {
		c.Audit.CheckpointInterval = time.Minute
	}
	if c.Audit.ArchiveEvery == 0 {
		c.Audit.ArchiveEvery = 5 * time.Second
	}
	for i := range c.Templates {
		if c.Templates[i].Version == 0 {
			c.Templates[i].Version = 1
		}
	}
}

func (c *Config) validateOperators(v *validator, zones map[string]bool, principals map[string]bool) {
	ids := map[string]bool{}
	for i := range c.Operators {
		o := &c.Operators[i]
		f := fmt.Sprintf("operators[%d]", i)
		switch {
		case !validID(o.ID):
			v.add(f+".id", "must be 1-64 letters, digits, '-', '_' or '.'")
		case ids[o.ID]:
			v.add(f+".id", fmt.Sprintf("operator %q is defined twice", o.ID))
		case principals[o.ID]:
			v.add(f+".id", fmt.Sprintf("%q is also a principal's id; operators and principals share one namespace in the audit", o.ID))
		}
		ids[o.ID] = true
		if strings.TrimSpace(o.Name) == "" {
			v.add(f+".name", "required: the person's name as colleagues know it")
		}
		if len(o.Roles) == 0 {
			v.add(f+".roles", "required: one or more of viewer, author, approver, maintainer, admin")
		}
		for j, r := range o.Roles {
			if !slices.Contains(Roles, r) {
				v.add(fmt.Sprintf("%s.roles[%d]", f, j), fmt.Sprintf("%q is not a role (viewer, author, approver, maintainer, admin)", r))
			}
		}
		if len(o.Zones) == 0 {
			v.add(f+".zones", `required: the zones the person may act on ("*" for all)`)
		}
		for j, z := range o.Zones {
			if z != "*" && !zones[z] {
				v.add(fmt.Sprintf("%s.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
		if o.Phone != "" && !e164.MatchString(o.Phone) {
			v.add(f+".phone", "must be an E.164 number such as +4915112345678")
		}
	}
	s := c.Sessions
	if s.Idle < time.Minute || s.Idle > s.Absolute {
		v.add("sessions.idle", "must be at least 1m and at most sessions.absolute")
	}
	if s.Absolute > 24*time.Hour {
		v.add("sessions.absolute", "must be at most 24h")
	}
	if s.StepUp < 10*time.Second || s.StepUp > 10*time.Minute {
		v.add("sessions.step_up", "must be between 10s and 10m")
	}
	if s.LockoutAfter < 1 || s.LockoutAfter > 100 {
		v.add("sessions.lockout_after", "must be between 1 and 100")
	}
	if s.InviteTTL < time.Minute || s.InviteTTL > 7*24*time.Hour {
		v.add("sessions.invite_ttl", "must be between 1m and 168h")
	}
	r := c.Release
	if r.ApprovalTTL < time.Second || r.ApprovalTTL > 24*time.Hour {
		v.add("release.approval_ttl", "must be between 1s and 24h")
	}
	if r.Approvers < 1 || r.Approvers > 10 {
		v.add("release.approvers", "must be between 1 and 10")
	}
	for i, rule := range r.Rules {
		f := fmt.Sprintf("release.rules[%d]", i)
		if rule.Approvers < 1 || rule.Approvers > 10 {
			v.add(f+".approvers", "must be between 1 and 10")
		}
		if rule.MinSeverity != "" {
			if _, err := alert.ParseSeverity(rule.MinSeverity); err != nil {
				v.add(f+".min_severity", err.Error())
			}
		}
		for j, z := range rule.Zones {
			if z != "*" && !zones[z] {
				v.add(fmt.Sprintf("%s.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
	}
	checkPolicy := func(f string, p Policy) {
		if p != PolicyAuto && p != PolicyApproval && p != PolicyQuarantine {
			v.add(f, fmt.Sprintf("%q is not a policy (auto, approval, quarantine)", p))
		}
	}
	for id, p := range r.Principals {
		if !principals[id] {
			v.add("release.principals."+id, fmt.Sprintf("principal %q is not defined under principals", id))
		}
		checkPolicy("release.principals."+id, p)
	}
	for id, p := range r.Sources {
		if c.Triggers.Source(id) == nil {
			v.add("release.sources."+id, fmt.Sprintf("source %q is not defined under triggers.sources", id))
		}
		checkPolicy("release.sources."+id, p)
	}
	for role, p := range r.Roles {
		if !slices.Contains(Roles, role) {
			v.add("release.roles."+string(role), fmt.Sprintf("%q is not a role", role))
		}
		checkPolicy("release.roles."+string(role), p)
	}
	for i, k := range r.Page {
		if k != alert.KindSMS && k != alert.KindVoice {
			v.add(fmt.Sprintf("release.page[%d]", i), "approvers are paged on sms or voice")
		}
	}
	c.validateTemplates(v, zones)
	if c.Audit.SigningKeyEnv != "" {
		if c.Audit.signingKey = strings.TrimSpace(os.Getenv(c.Audit.SigningKeyEnv)); c.Audit.signingKey == "" {
			v.add("audit.signing_key_env", fmt.Sprintf("environment variable %s must hold the checkpoint signing key (tocsin audit keygen)", c.Audit.SigningKeyEnv))
		}
	}
	if c.Audit.VerifierKey != "" {
		if _, err := note.NewVerifier(c.Audit.VerifierKey); err != nil {
			v.add("audit.verifier_key", "not a verifier key (tocsin audit keygen prints it): "+err.Error())
		}
	}
	if c.Audit.CheckpointEvery < 1 {
		v.add("audit.checkpoint_every", "must be at least 1")
	}
	if c.Audit.CheckpointInterval < time.Second {
		v.add("audit.checkpoint_interval", "must be at least 1s")
	}
	if c.Audit.ArchiveEvery < 100*time.Millisecond || c.Audit.ArchiveEvery > c.Audit.CheckpointInterval {
		v.add("audit.archive_every", "must be at least 100ms and at most audit.checkpoint_interval")
	}
}

func (c *Config) validateTemplates(v *validator, zones map[string]bool) {
	ids := map[string]bool{}
	for i := range c.Templates {
		t := &c.Templates[i]
		f := fmt.Sprintf("templates[%d]", i)
		switch {
		case !validID(t.ID):
			v.add(f+".id", "must be 1-64 letters, digits, '-', '_' or '.'")
		case ids[t.ID]:
			v.add(f+".id", fmt.Sprintf("template %q is defined twice", t.ID))
		}
		ids[t.ID] = true
		if t.Version < 1 {
			v.add(f+".version", "must be 1 or more")
		}
		if strings.TrimSpace(t.Event) == "" {
			v.add(f+".event", "required")
		}
		if _, err := alert.ParseSeverity(t.Severity); err != nil {
			v.add(f+".severity", err.Error())
		}
		if t.Urgency != "" {
			if _, err := alert.ParseUrgency(t.Urgency); err != nil {
				v.add(f+".urgency", err.Error())
			}
		}
		for j, z := range t.Zones {
			if !zones[z] {
				v.add(fmt.Sprintf("%s.zones[%d]", f, j), fmt.Sprintf("zone %q is not defined under zones", z))
			}
		}
		for j, k := range t.Channels {
			if !slices.Contains(alert.Kinds, k) {
				v.add(fmt.Sprintf("%s.channels[%d]", f, j), fmt.Sprintf("%q is not a channel kind (siren, pa, sms, voice, dispatch)", k))
			}
		}
		for j, x := range t.Retraction {
			g := fmt.Sprintf("%s.retraction[%d]", f, j)
			switch x.Key {
			case "false_alarm", "all_clear", "superseded":
			default:
				v.add(g+".key", "must be false_alarm, all_clear or superseded")
			}
			if !languageCode.MatchString(x.Language) {
				v.add(g+".language", "must be a base language code such as de or en")
			}
			if x.Kind != "" && !slices.Contains(alert.Kinds, x.Kind) {
				v.add(g+".kind", fmt.Sprintf("%q is not a channel kind", x.Kind))
			}
			if strings.TrimSpace(x.Text) == "" {
				v.add(g+".text", "required")
			}
		}
	}
}
