// Package audit keeps Tocsin's tamper-evident audit log: every
// security-relevant action appends one canonical entry in the same Redis step
// as the change it records, the entries are chained
// h_i = SHA-256(h_{i-1} ‖ line_i), and signed checkpoints of the chain's head
// are written outside Redis so that a changed, removed or reordered entry is
// found by Verify.
//
// A script that changes state and must record it includes Lua and calls
// tocsin_audit(seq_key, log_key, body) with the two keys passed in KEYS. The
// entry's line is "<seq> <body>", where seq is the entry's number (1, 2, …,
// without gaps) and body the canonical JSON of an Entry (Entry.Body).
package audit

import (
	"encoding/json"
	"time"
)

// Lua defines tocsin_audit for a script that includes it first. It numbers
// the entry, appends its line to the log and returns the number.
const Lua = `
local function tocsin_audit(seq_key, log_key, body)
  local n = redis.call('INCR', seq_key)
  redis.call('RPUSH', log_key, n .. ' ' .. body)
  return n
end
`

// Keys are the audit's Redis keys; they share one hash slot.
type Keys struct {
	// Seq is the number of the last entry appended.
	Seq string
	// Log is the list of entry lines not yet archived, oldest first.
	Log string
}

// KeysFor builds the audit keys under a Redis key prefix.
func KeysFor(prefix string) Keys {
	return Keys{Seq: prefix + ":{audit}:seq", Log: prefix + ":{audit}:log"}
}

// Entry is one audited action.
type Entry struct {
	// Time is when the action happened (UTC, milliseconds).
	Time time.Time `json:"time"`
	// Kind names the action: alert.accepted, alert.approved, signin.failed, …
	Kind string `json:"kind"`
	// Actor is who acted: "operator:ID", "principal:ID", "source:ID" or "system".
	Actor string `json:"actor"`
	// Subject is what the action was on: an alert id, an operator id, a source.
	Subject string `json:"subject,omitempty"`
	// Detail holds what else matters, with sorted keys.
	Detail map[string]string `json:"detail,omitempty"`
}

// Body is the entry's canonical JSON: fields in declaration order, detail
// keys sorted, time in UTC with millisecond precision.
func (e Entry) Body() string {
	e.Time = e.Time.UTC().Truncate(time.Millisecond)
	b, _ := json.Marshal(e) // a struct of strings and a time: cannot fail
	return string(b)
}
