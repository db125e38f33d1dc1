// Package operator keeps the credentials and sessions of Tocsin's operators
// in Redis, so that a site signs its people in without any external identity
// provider. Who the operators are (id, name, roles, zones) is configuration;
// this package only answers whether a person proved to be one of them.
//
// A person is invited (Invite), sets a password and a TOTP second factor
// with the invite's token (BeginEnrol, FinishEnrol), then signs in with id,
// password and code (SignIn) and gets a session token; sensitive actions need
// a fresh code (StepUp). Every change in Redis appends its audit entry in the
// same script that makes the change.
//
// Decisions worth knowing:
//   - A disabled operator cannot be invited, enrol, sign in or keep a
//     session; Disable also voids a pending invite. Only Enable (an admin)
//     brings them back, and then a new invite if they need new credentials.
//   - Enable also lifts a lockout early, and re-enrolment clears one.
//   - Signing in proves a fresh TOTP code, so a new session counts as
//     stepped up at its creation.
//   - A lockout caused by failed step-ups ends that session too (someone is
//     guessing codes with it); one caused by failed sign-ins does not end
//     the session of the person who is signed in.
//   - Refreshing a session's last-seen time is not audited; everything else
//     that changes state is.
//   - Every key carries the {audit} hash tag: in a Redis Cluster a script's
//     keys must share one slot, and each script here also appends to the
//     audit. Operators are few; one slot holds them.
package operator

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/audit"
)

// Errors.
var (
	// ErrSignIn is every failed sign-in, whatever the reason; the audit
	// records the reason.
	ErrSignIn = errors.New("sign-in failed: wrong name, password or code, or locked")
	// ErrNoSession means the session token is unknown, expired or ended.
	ErrNoSession = errors.New("no session: signed out, expired or ended")
	// ErrStepUp is every failed step-up.
	ErrStepUp = errors.New("step-up failed: wrong or reused code, or locked")
	// ErrUnknown means the id is not an operator in the configuration.
	ErrUnknown = errors.New("unknown operator")
	// ErrDisabled means the operator is disabled.
	ErrDisabled = errors.New("operator disabled")
	// ErrInvite means the invite token is unknown, expired, used or replaced.
	ErrInvite = errors.New("invite unknown, expired, used or replaced")
	// ErrNotBegun means FinishEnrol came before BeginEnrol.
	ErrNotBegun = errors.New("enrolment not begun: set the password first")
	// ErrCode means the code that confirms enrolment is wrong.
	ErrCode = errors.New("wrong code")
	// ErrPasswordTooShort and ErrPasswordTooLong are the password rules.
	ErrPasswordTooShort = fmt.Errorf("password too short: at least %d characters", MinPassword)
	ErrPasswordTooLong  = fmt.Errorf("password too long: at most %d bytes", MaxPassword)
)

// Options tune a Store; zero values take the defaults.
type Options struct {
	// IdleTimeout ends a session unused this long (default 30m).
	IdleTimeout time.Duration
	// AbsoluteTimeout ends every session this long after sign-in (default 12h).
	AbsoluteTimeout time.Duration
	// StepUpWindow is how long a step-up stays fresh (default 2m; Store.Fresh).
	StepUpWindow time.Duration
	// LockoutFailures failed sign-ins or step-ups in a row lock the person
	// out (default 5); the count is forgotten LockoutFor after the last failure.
	LockoutFailures int
	// LockoutFor is how long a lockout lasts (default 15m).
	LockoutFor time.Duration
	// InviteTTL is how long an invite works (default 24h).
	InviteTTL time.Duration
	// Issuer names Tocsin in authenticator apps (default "Tocsin").
	Issuer string
	// Known says which operator ids exist in the configuration, and their
	// names. Nil knows nobody.
	Known func(id string) (name string, ok bool)
	// Now is the clock (default time.Now; tests).
	Now func() time.Time
}

func (o *Options) defaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&o.IdleTimeout, 30*time.Minute)
	def(&o.AbsoluteTimeout, 12*time.Hour)
	def(&o.StepUpWindow, 2*time.Minute)
	def(&o.LockoutFor, 15*time.Minute)
	def(&o.InviteTTL, 24*time.Hour)
	if o.LockoutFailures <= 0 {
		o.LockoutFailures = 5
	}
	if o.Issuer == "" {
		o.Issuer = "Tocsin"
	}
	if o.Known == nil {
		o.Known = func(string) (string, bool) { return "", false }
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Store keeps operators' credentials and sessions in Redis.
type Store struct {
	rdb   redis.UniversalClient
	opts  Options
	k     keys
	audit audit.Keys
}

// New makes a Store on rdb with keys under prefix (config redis.key_prefix).
func New(rdb redis.UniversalClient, prefix string, opts Options) *Store {
	opts.defaults()
	return &Store{rdb: rdb, opts: opts, k: keys{p: prefix + ":{audit}:op"}, audit: audit.KeysFor(prefix)}
}

// Session is a signed-in operator's session.
type Session struct {
	// Operator is the operator's id.
	Operator string
	// Created is the sign-in; LastSeen the last use.
	Created, LastSeen time.Time
	// SteppedUp is when the person last proved a fresh code (sign-in or StepUp).
	SteppedUp time.Time
}

// Fresh reports whether the session stepped up within window before now.
func (s *Session) Fresh(now time.Time, window time.Duration) bool {
	if s == nil || s.SteppedUp.IsZero() {
		return false
	}
	age := now.Sub(s.SteppedUp)
	return age >= -time.Second && age <= window
}

// Fresh reports whether s stepped up within the Store's StepUpWindow.
func (st *Store) Fresh(s *Session) bool { return s.Fresh(st.opts.Now(), st.opts.StepUpWindow) }

// Status is what List tells about an operator.
type Status struct {
	ID string
	// Enrolled: the person has a password and a second factor.
	Enrolled bool
	Disabled bool
	// Locked: too many failures; sign-in is refused until the lockout ends.
	Locked bool
	// LastSignIn is zero if the person never signed in.
	LastSignIn time.Time
	// SessionActive: the person has a live session.
	SessionActive bool
}

// keys are the package's Redis keys. Every one carries the {audit} hash tag
// (see the package comment). The id comes last in each so that no id can
// make one key collide with another kind of key.
type keys struct{ p string }

// rec is the operator's record, a hash: pw (PHC string), totp (secret),
// step (last accepted TOTP step), enrolled, disabled, last_signin (Unix ms),
// session and invite (token sums of the current ones).
func (k keys) rec(id string) string { return k.p + ":rec:" + id }

// fail counts failures in a row; it expires LockoutFor after the last one.
func (k keys) fail(id string) string { return k.p + ":fail:" + id }

// lock holds the lockout's end (Unix ms) and expires then.
func (k keys) lock(id string) string { return k.p + ":lock:" + id }

// invite is a hash: id, and once BeginEnrol ran, totp and pw pending.
func (k keys) invite(sum string) string { return k.p + ":invite:" + sum }

// session is a hash: op, created, seen, stepped (Unix ms).
func (k keys) session(sum string) string { return k.p + ":sess:" + sum }

// record is an operator's record as read.
type record struct {
	pw, totp           string
	step               int64
	enrolled, disabled bool
	lastSignIn         time.Time
	sessionSum, invSum string
	locked             bool
	lockUntil          time.Time
}

var recFields = []string{"pw", "totp", "step", "enrolled", "disabled", "last_signin", "session", "invite"}

// read reads id's record and lockout.
func (st *Store) read(ctx context.Context, id string) (*record, error) {
	pipe := st.rdb.Pipeline()
	h := pipe.HMGet(ctx, st.k.rec(id), recFields...)
	l := pipe.Get(ctx, st.k.lock(id))
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	r := recordFrom(h.Val())
	if v, err := l.Int64(); err == nil {
		r.lockUntil = time.UnixMilli(v)
		r.locked = r.lockUntil.After(st.opts.Now())
	}
	return r, nil
}

func recordFrom(v []any) *record {
	s := func(i int) string {
		if i < len(v) {
			if x, ok := v[i].(string); ok {
				return x
			}
		}
		return ""
	}
	r := &record{pw: s(0), totp: s(1), step: -1, enrolled: s(3) != "", disabled: s(4) == "1",
		lastSignIn: msTime(s(5)), sessionSum: s(6), invSum: s(7)}
	if n, err := strconv.ParseInt(s(2), 10, 64); err == nil {
		r.step = n
	}
	return r
}

func ms(t time.Time) string { return strconv.FormatInt(t.UnixMilli(), 10) }

func msTime(s string) time.Time {
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || s == "" {
		return time.Time{}
	}
	return time.UnixMilli(n)
}

func msDur(d time.Duration) string {
	if d < time.Millisecond {
		d = time.Millisecond
	}
	return strconv.FormatInt(d.Milliseconds(), 10)
}

// lua is the preamble of every script: the audit's append, and the
// lockout's bookkeeping.
//
// tocsin_locked(lock, now) reports whether the lockout in key lock is on.
// tocsin_fail(seq, log, fail, lock, body, max, for_ms, lock_end, locked_body)
// records a failure: appends body, counts it, and at max failures locks the
// person out until lock_end (Unix ms), appending locked_body; it returns
// 'locked' or 'failed'.
//
// The step-ups (KEYS 1 seq, 2 log, 3 rec, 4 fail, 5 lock, 6 session, by
// TOTP or by key) share two more: tocsin_stepup_open(sum, now, locked_body)
// answers 'nosession' or 'failed' (locked) when the step-up cannot be tried,
// else nil; tocsin_stepup_fail(body, max, for_ms, lock_end, locked_body)
// records a failed one and, when that locks the person out, ends the session.
//
// The sign-ins (KEYS 1 seq, 2 log, 3 rec, 4 fail, 5 lock, 6 old session,
// 7 new session) share tocsin_signin_open(old_sum, now, locked_body,
// fail_fn, disabled_body) — 'stale', 'failed' or a failure when the sign-in
// cannot be tried, else nil — and tocsin_signin_start(op, now, ttl_ms,
// new_sum, body), which ends the old session, starts the new one and appends
// body. tocsin_key_counter(keys, field, new, clone_body, fail_fn,
// unknown_body, clone_fail_body) checks a security key's signature counter
// (go-webauthn's rule: it must grow unless both are 0) and stores the new
// one; it returns a failure's result, or nil.
const lua = audit.Lua + `
local function tocsin_locked(lock, now)
  local v = redis.call('GET', lock)
  return v and tonumber(v) > tonumber(now)
end
local function tocsin_fail(seq, log, fail, lock, body, max, for_ms, lock_end, locked_body)
  tocsin_audit(seq, log, body)
  local n = redis.call('INCR', fail)
  redis.call('PEXPIRE', fail, for_ms)
  if n >= tonumber(max) then
    redis.call('SET', lock, lock_end, 'PX', for_ms)
    redis.call('DEL', fail)
    tocsin_audit(seq, log, locked_body)
    return 'locked'
  end
  return 'failed'
end
local function tocsin_stepup_open(sum, now, locked_body)
  if (redis.call('HGET', KEYS[3], 'session') or '') ~= sum or redis.call('EXISTS', KEYS[6]) == 0 then return 'nosession' end
  if tocsin_locked(KEYS[5], now) then
    tocsin_audit(KEYS[1], KEYS[2], locked_body)
    return 'failed'
  end
  return nil
end
local function tocsin_signin_open(old_sum, now, locked_body, fail, disabled_body)
  if (redis.call('HGET', KEYS[3], 'session') or '') ~= old_sum then return 'stale' end
  if tocsin_locked(KEYS[5], now) then
    tocsin_audit(KEYS[1], KEYS[2], locked_body)
    return 'failed'
  end
  if redis.call('HGET', KEYS[3], 'disabled') == '1' then return fail(disabled_body) end
  return nil
end
local function tocsin_signin_start(op, now, ttl_ms, new_sum, body)
  redis.call('DEL', KEYS[4], KEYS[6])
  redis.call('HSET', KEYS[7], 'op', op, 'created', now, 'seen', now, 'stepped', now)
  redis.call('PEXPIRE', KEYS[7], ttl_ms)
  redis.call('HSET', KEYS[3], 'session', new_sum, 'last_signin', now)
  tocsin_audit(KEYS[1], KEYS[2], body)
end
local function tocsin_key_counter(keys, field, new, clone_body, fail, unknown_body, clone_fail_body)
  local stored = redis.call('HGET', keys, field)
  if not stored then return fail(unknown_body) end
  local n, o = tonumber(new), tonumber(stored)
  if n <= o and (n ~= 0 or o ~= 0) then
    tocsin_audit(KEYS[1], KEYS[2], clone_body)
    return fail(clone_fail_body)
  end
  redis.call('HSET', keys, field, new)
  return nil
end
local function tocsin_stepup_fail(body, max, for_ms, lock_end, locked_body)
  local res = tocsin_fail(KEYS[1], KEYS[2], KEYS[4], KEYS[5], body, max, for_ms, lock_end, locked_body)
  if res == 'locked' then
    redis.call('DEL', KEYS[6])
    redis.call('HDEL', KEYS[3], 'session')
  end
  return res
end
`

func script(body string) *redis.Script { return redis.NewScript(lua + body) }

// errStale is a script's answer when the record changed between read and
// script (a concurrent invite, sign-in or enrolment); the caller reads again.
var errStale = errors.New("operator: record changed concurrently")

// retry runs f until it does not return errStale, at most a few times.
func retry(f func() error) error {
	var err error
	for range 5 {
		if err = f(); !errors.Is(err, errStale) {
			return err
		}
	}
	return err
}

func (st *Store) entry(kind, actor, subject string, detail map[string]string) string {
	return audit.Entry{Time: st.opts.Now(), Kind: kind, Actor: actor, Subject: subject, Detail: detail}.Body()
}

var appendScript = script(`return tocsin_audit(KEYS[1], KEYS[2], ARGV[1])`)

// appendAudit appends one entry that goes with no change.
func (st *Store) appendAudit(ctx context.Context, body string) error {
	return appendScript.Run(ctx, st.rdb, []string{st.audit.Seq, st.audit.Log}, body).Err()
}

// subject trims an id given by a stranger before it goes into the audit.
func subject(id string) string {
	if len(id) > 64 {
		return id[:64] + "…"
	}
	return id
}

func actorOf(id string) string { return "operator:" + id }

func (st *Store) known(id string) bool {
	_, ok := st.opts.Known(id)
	return ok && id != ""
}
