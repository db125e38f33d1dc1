// Package release holds alerts that wait for people: drafts operators compose
// and alerts held for approval (four-eyes). A held alert lives here, outside
// the delivery queue, so nothing of it can reach any target until it is
// released: the queue only ever sees a released alert.
//
// Every change is one Redis script that checks the draft is still in the
// state and at the package digest the decision was made on (so a racing edit,
// approval or release loses cleanly) and appends its audit entry in the same
// step.
package release

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/tocsin-alert/tocsin/alert"
)

// State is where a draft is in its life.
type State string

// The states (README.md, "Four-eyes release").
const (
	StateDraft     State = "draft"
	StatePending   State = "pending"
	StateReturned  State = "returned"
	StateRejected  State = "rejected"
	StateLive      State = "live"
	StateCompleted State = "completed"
	StateRetracted State = "retracted"
	StateExpired   State = "expired"
)

// States are every state, in the order of a draft's life.
var States = []State{StateDraft, StatePending, StateReturned, StateRejected, StateLive, StateCompleted, StateRetracted, StateExpired}

// Action is something done to a draft.
type Action string

// The actions.
const (
	ActEdit     Action = "edit"
	ActSubmit   Action = "submit"
	ActApprove  Action = "approve"
	ActRelease  Action = "release"
	ActReturn   Action = "return"
	ActReject   Action = "reject"
	ActRetract  Action = "retract"
	ActExpire   Action = "expire"
	ActComplete Action = "complete"
)

// Actions are every action.
var Actions = []Action{ActEdit, ActSubmit, ActApprove, ActRelease, ActReturn, ActReject, ActRetract, ActExpire, ActComplete}

// Transitions is the whole of what may happen: from a state, an action leads
// to a state. Every pair not listed is refused and changes nothing.
var Transitions = map[State]map[Action]State{
	StateDraft:    {ActEdit: StateDraft, ActSubmit: StatePending, ActExpire: StateExpired},
	StateReturned: {ActEdit: StateDraft, ActSubmit: StatePending, ActExpire: StateExpired},
	StatePending: {
		ActEdit: StateDraft, ActApprove: StatePending, ActRelease: StateLive,
		ActReturn: StateReturned, ActReject: StateRejected, ActExpire: StateExpired,
	},
	StateLive: {ActRetract: StateRetracted, ActComplete: StateCompleted},
}

// Next is the state action leads to from s, or an error saying why not.
func Next(s State, a Action) (State, error) {
	to, ok := Transitions[s][a]
	if !ok {
		return "", &Refusal{Status: 409, Field: "state", Msg: fmt.Sprintf("a %s alert cannot be %s", s, pastTense[a])}
	}
	return to, nil
}

var pastTense = map[Action]string{
	ActEdit: "edited", ActSubmit: "submitted", ActApprove: "approved", ActRelease: "released",
	ActReturn: "returned", ActReject: "rejected", ActRetract: "retracted", ActExpire: "expired", ActComplete: "completed",
}

// Refusal is a decision against an action, with the HTTP status and the
// field it is about.
type Refusal struct {
	Status int
	Field  string
	Msg    string
}

func (r *Refusal) Error() string { return r.Msg }

// Package is exactly what an approver approves: the texts per channel and
// language, zones, channels, expiry, retraction texts and the counts a
// release would reach. Its digest binds an approval to it.
type Package struct {
	Template        string       `json:"template,omitempty"`
	TemplateVersion int          `json:"templateVersion,omitempty"`
	Status          alert.Status `json:"status"`
	MsgType         string       `json:"msgType,omitempty"`
	Event           string       `json:"event"`
	Severity        string       `json:"severity"`
	Urgency         string       `json:"urgency,omitempty"`
	Certainty       string       `json:"certainty,omitempty"`
	Headline        string       `json:"headline,omitempty"`
	Description     string       `json:"description,omitempty"`
	Instruction     string       `json:"instruction,omitempty"`
	Language        string       `json:"language,omitempty"`
	Info            []alert.Info `json:"info,omitempty"`
	Zones           []string     `json:"zones"`
	Channels        []alert.Kind `json:"channels,omitempty"`
	Expires         time.Time    `json:"expires"`
	// Retraction are the retraction notices: reason → "lang" or
	// "lang/kind" → text.
	Retraction map[string]map[string]string `json:"retraction,omitempty"`
	// Counts are the targets a release would reach, per channel kind.
	Counts map[alert.Kind]int `json:"counts"`
	// Texts are what each channel would say, per kind and language
	// ("sms/de"), so an approver sees and approves the words themselves.
	Texts map[string]string `json:"texts,omitempty"`
}

// Digest is the SHA-256 of the package's canonical JSON (fields in order,
// map keys sorted, times in UTC).
func (p *Package) Digest() string {
	q := *p
	q.Expires = q.Expires.UTC()
	b, _ := json.Marshal(&q) // strings, ints, times and maps of them
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Exercise reports whether the package is a drill: exercise or test.
func (p *Package) Exercise() bool { return p.Status.IsDrill() }

// Approval is one approver's approval of one digest.
type Approval struct {
	By     string    `json:"by"`
	Digest string    `json:"digest"`
	At     time.Time `json:"at"`
}

// Draft is one alert on its way to release.
type Draft struct {
	ID    alert.ID `json:"id"`
	State State    `json:"state"`
	// Author made the draft; Editor changed it last (both operator or
	// principal ids).
	Author  string    `json:"author"`
	Editor  string    `json:"editor"`
	Created time.Time `json:"created"`
	Updated time.Time `json:"updated"`
	// Policy is why it waits (approval) or went at once (auto).
	Policy  string  `json:"policy"`
	Package Package `json:"package"`
	Digest  string  `json:"digest"`
	// Needed is how many distinct approvers a release needs.
	Needed    int        `json:"needed"`
	Approvals []Approval `json:"approvals,omitempty"`
	// Previous is the package before the last edit, so an approver sees
	// what changed (nil before any edit).
	Previous *Package `json:"previous,omitempty"`
	// Reason is why it was returned or rejected, with who said so.
	Reason   string `json:"reason,omitempty"`
	ReasonBy string `json:"reasonBy,omitempty"`
}

// Valid are the approvals that count now: of the current digest, younger
// than ttl, by people other than the author and the last editor (unless the
// package is an exercise), one per person.
func (d *Draft) Valid(now time.Time, ttl time.Duration) []Approval {
	var ok []Approval
	seen := map[string]bool{}
	for _, a := range d.Approvals {
		if a.Digest != d.Digest || now.Sub(a.At) > ttl || seen[a.By] {
			continue
		}
		if !d.Package.Exercise() && (a.By == d.Author || a.By == d.Editor) {
			continue
		}
		seen[a.By] = true
		ok = append(ok, a)
	}
	return ok
}

// Actor is who acts on a draft, as the release rules see them.
type Actor struct {
	ID string
	// Author, Approver: the roles that matter here.
	Author, Approver bool
	// Retract: may retract.
	Retract bool
	// Zones the actor may act on ("*": all).
	Zones []string
	// SteppedUp: a second factor within the step-up window.
	SteppedUp bool
	// Person: a signed-in operator (approvals need one).
	Person bool
}

func (a Actor) zone(z string) bool {
	return slices.Contains(a.Zones, "*") || slices.Contains(a.Zones, z)
}

// ErrStepUp asks for a fresh second factor.
var ErrStepUp = &Refusal{Status: 403, Field: "step_up", Msg: "this action needs a fresh second factor: POST /v1/session/step-up with a current code, then repeat"}

// Check decides whether who may do act to d, apart from the state (Next):
// roles, zones, step-up, and four-eyes.
func Check(d *Draft, act Action, who Actor) error {
	for _, z := range d.Package.Zones {
		if !who.zone(z) {
			return &Refusal{Status: 403, Field: "zones", Msg: fmt.Sprintf("%s may not act on zone %q", who.ID, z)}
		}
	}
	switch act {
	case ActEdit, ActSubmit:
		if !who.Author {
			return &Refusal{Status: 403, Field: "role", Msg: fmt.Sprintf("%s is not an author", who.ID)}
		}
	case ActApprove, ActRelease, ActReturn, ActReject:
		if !who.Approver || !who.Person {
			return &Refusal{Status: 403, Field: "role", Msg: fmt.Sprintf("%s is not a signed-in approver", who.ID)}
		}
		if act == ActApprove && !d.Package.Exercise() {
			if who.ID == d.Author {
				return &Refusal{Status: 403, Field: "approver", Msg: "four-eyes: the author cannot approve their own alert (only an exercise allows that)"}
			}
			if who.ID == d.Editor {
				return &Refusal{Status: 403, Field: "approver", Msg: "four-eyes: the last editor cannot approve the alert (only an exercise allows that)"}
			}
		}
		if (act == ActApprove || act == ActRelease) && !who.SteppedUp {
			return ErrStepUp
		}
	case ActRetract:
		if !who.Retract {
			return &Refusal{Status: 403, Field: "retract", Msg: fmt.Sprintf("%s may not retract alerts", who.ID)}
		}
	case ActExpire, ActComplete:
		return &Refusal{Status: 403, Field: "action", Msg: "only Tocsin itself expires or completes an alert"}
	default:
		return &Refusal{Status: 400, Field: "action", Msg: fmt.Sprintf("unknown action %q", act)}
	}
	return nil
}

// ErrConflict: the draft changed between the decision and the change.
var ErrConflict = errors.New("release: the draft changed meanwhile")

// ErrNotFound: no such draft.
var ErrNotFound = errors.New("release: no such draft")

// Changes names what differs between the previous package and this one:
// the fields an approver should look at again.
func (d *Draft) Changes() []string {
	if d.Previous == nil {
		return nil
	}
	a, b := d.Previous, &d.Package
	var out []string
	add := func(name string, differ bool) {
		if differ {
			out = append(out, name)
		}
	}
	add("status", a.Status != b.Status)
	add("event", a.Event != b.Event)
	add("severity", a.Severity != b.Severity)
	add("urgency", a.Urgency != b.Urgency)
	add("headline", a.Headline != b.Headline)
	add("description", a.Description != b.Description)
	add("instruction", a.Instruction != b.Instruction)
	add("zones", !slices.Equal(a.Zones, b.Zones))
	add("channels", !slices.Equal(a.Channels, b.Channels))
	add("expires", !a.Expires.Equal(b.Expires))
	add("template", a.Template != b.Template || a.TemplateVersion != b.TemplateVersion)
	add("counts", !maps.Equal(a.Counts, b.Counts))
	add("texts", !maps.Equal(a.Texts, b.Texts))
	return out
}
