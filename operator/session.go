package operator

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KEYS: seq, log, rec, fail, lock, old session, new session.
// ARGV: 1 old session sum, 2 new session sum, 3 "1" if password and code
// are right, 4 the code's step, 5 now ms, 6 session ttl ms, 7 lockout
// failures, 8 lockout ms, 9 lockout end ms, 10 id, then bodies: 11 signin,
// 12 failure for Go's reason, 13 locked, 14 disabled, 15 replayed, 16 signin.locked.
var signInScript = script(`
local function fail(body)
  return tocsin_fail(KEYS[1], KEYS[2], KEYS[4], KEYS[5], body, ARGV[7], ARGV[8], ARGV[9], ARGV[16])
end
local closed = tocsin_signin_open(ARGV[1], ARGV[5], ARGV[13], fail, ARGV[14])
if closed then return closed end
if ARGV[3] ~= '1' then return fail(ARGV[12]) end
if tonumber(redis.call('HGET', KEYS[3], 'step') or '-1') >= tonumber(ARGV[4]) then return fail(ARGV[15]) end
redis.call('HSET', KEYS[3], 'step', ARGV[4])
tocsin_signin_start(ARGV[10], ARGV[5], ARGV[6], ARGV[2], ARGV[11])
return 'ok'
`)

// SignIn checks id, password and a TOTP code and starts a session, ending
// the person's previous one. Whatever fails, the error is ErrSignIn (or a
// Redis error); the audit records why (signin.failed, detail reason:
// unknown, not_enrolled, disabled, locked, bad_password, bad_code,
// replayed_code). LockoutFailures failures in a row lock the person out for
// LockoutFor, during which even the right credentials are refused.
func (st *Store) SignIn(ctx context.Context, id, password, code string) (token string, s *Session, err error) {
	failed := func(reason string) string {
		return st.entry("signin.failed", "system", subject(id), map[string]string{"reason": reason})
	}
	// An overlong password is wrong (no password is set that long), but is
	// hashed, cut short, like any other.
	tooLong := len(password) > MaxPassword
	password = password[:min(len(password), MaxPassword)]
	if !st.known(id) {
		dummyVerify(ctx, password)
		if err := st.appendAudit(ctx, failed("unknown")); err != nil {
			return "", nil, err
		}
		return "", nil, ErrSignIn
	}
	token = newToken(sessionPrefix)
	sum, _ := tokenSum(sessionPrefix, token)
	err = retry(func() error {
		r, err := st.read(ctx, id)
		if err != nil {
			return err
		}
		// Check both factors whatever the record says, so that the time
		// taken does not tell a locked, disabled or unenrolled person apart.
		now := st.opts.Now()
		reason := ""
		if !r.enrolled || r.pw == "" {
			dummyVerify(ctx, password)
			reason = "not_enrolled"
		} else if ok, err := verifyPassword(ctx, r.pw, password); err != nil {
			return err
		} else if !ok || tooLong {
			reason = "bad_password"
		}
		step, codeOK := matchCode(r.totp, code, now)
		if reason == "" && !codeOK {
			reason = "bad_code"
		}
		right := "0"
		if reason == "" {
			right = "1"
		}
		// Time may have passed hashing; the session starts now.
		now = st.opts.Now()
		ttl := min(st.opts.IdleTimeout, st.opts.AbsoluteTimeout)
		lockEnd := now.Add(st.opts.LockoutFor)
		res, err := signInScript.Run(ctx, st.rdb,
			[]string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.fail(id), st.k.lock(id), st.k.session(r.sessionSum), st.k.session(sum)},
			r.sessionSum, sum, right, step, ms(now), msDur(ttl), st.opts.LockoutFailures, msDur(st.opts.LockoutFor), ms(lockEnd), id,
			st.entry("signin", actorOf(id), id, nil),
			failed(orDefault(reason, "bad_code")), failed("locked"), failed("disabled"), failed("replayed_code"),
			st.lockedEntry(id, lockEnd, false),
		).Text()
		s, err = signedIn(res, err, id, now)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return token, s, nil
}

// steppedUp turns a step-up script's answer into its error: ErrStepUp for
// every refusal, ErrNoSession when the session is gone.
func steppedUp(res string, err error) error {
	switch {
	case err != nil:
		return err
	case res == "ok":
		return nil
	case res == "nosession":
		return ErrNoSession
	}
	return ErrStepUp
}

// lockedEntry is the audit of a lockout until lockEnd (sessionEnded: a
// step-up's failures locked the person out, which also ends the session).
func (st *Store) lockedEntry(id string, lockEnd time.Time, sessionEnded bool) string {
	d := map[string]string{"failures": strconv.Itoa(st.opts.LockoutFailures), "until": lockEnd.UTC().Format(time.RFC3339)}
	if sessionEnded {
		d["session_ended"] = "true"
	}
	return st.entry("signin.locked", "system", id, d)
}

// signedIn turns a sign-in script's answer into the new session or the
// error: ErrSignIn for every refusal, errStale to read and try again.
func signedIn(res string, err error, id string, now time.Time) (*Session, error) {
	switch {
	case err != nil:
		return nil, err
	case res == "ok":
		t := time.UnixMilli(now.UnixMilli())
		return &Session{Operator: id, Created: t, LastSeen: t, SteppedUp: t}, nil
	case res == "stale":
		return nil, errStale
	}
	return nil, ErrSignIn
}

func orDefault(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var sessionFields = []string{"op", "created", "seen", "stepped"}

// sessionFrom makes a Session from HMGET sessionFields, nil if it is missing.
func sessionFrom(v []any) *Session {
	str := func(i int) string { s, _ := v[i].(string); return s }
	if len(v) != len(sessionFields) || str(0) == "" {
		return nil
	}
	return &Session{Operator: str(0), Created: msTime(str(1)), LastSeen: msTime(str(2)), SteppedUp: msTime(str(3))}
}

// expired says why s is over at now ("idle", "absolute"), or "" if it is not.
func (st *Store) expired(s *Session, now time.Time) string {
	switch {
	case now.Sub(s.Created) >= st.opts.AbsoluteTimeout:
		return "absolute"
	case now.Sub(s.LastSeen) >= st.opts.IdleTimeout:
		return "idle"
	}
	return ""
}

// ttl is how long Redis keeps a session used at now: the idle timeout, but
// never past the absolute limit.
func (st *Store) ttl(s *Session, now time.Time) time.Duration {
	return min(st.opts.IdleTimeout, s.Created.Add(st.opts.AbsoluteTimeout).Sub(now))
}

// KEYS: session. ARGV: now ms, ttl ms. Not audited: it records use, not a change of who may do what.
var touchScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'seen', ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

// KEYS: seq, log, rec, session. ARGV: session sum, body.
var endScript = script(`
if redis.call('DEL', KEYS[4]) == 0 then return 'none' end
if redis.call('HGET', KEYS[3], 'session') == ARGV[1] then redis.call('HDEL', KEYS[3], 'session') end
tocsin_audit(KEYS[1], KEYS[2], ARGV[2])
return 'ok'
`)

// end ends session sum of s, auditing body if it was still there.
func (st *Store) end(ctx context.Context, sum string, s *Session, body string) error {
	return endScript.Run(ctx, st.rdb, []string{st.audit.Seq, st.audit.Log, st.k.rec(s.Operator), st.k.session(sum)}, sum, body).Err()
}

// Session finds the session of token and records its use (the idle timeout
// slides). ErrNoSession if there is none: never was, signed out, idle too
// long, past the absolute limit, replaced by a newer sign-in, or the
// operator is disabled or gone from the configuration.
func (st *Store) Session(ctx context.Context, token string) (*Session, error) {
	s, _, err := st.session(ctx, token)
	return s, err
}

func (st *Store) session(ctx context.Context, token string) (*Session, string, error) {
	sum, ok := tokenSum(sessionPrefix, token)
	if !ok {
		return nil, "", ErrNoSession
	}
	v, err := st.rdb.HMGet(ctx, st.k.session(sum), sessionFields...).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, "", err
	}
	s := sessionFrom(v)
	if s == nil {
		return nil, "", ErrNoSession
	}
	now := st.opts.Now()
	if why := st.expired(s, now); why != "" {
		if err := st.end(ctx, sum, s, st.entry("session.expired", "system", s.Operator, map[string]string{"reason": why})); err != nil {
			return nil, "", err
		}
		return nil, "", ErrNoSession
	}
	r, err := st.read(ctx, s.Operator)
	if err != nil {
		return nil, "", err
	}
	if r.sessionSum != sum || r.disabled || !st.known(s.Operator) {
		return nil, "", ErrNoSession
	}
	n, err := touchScript.Run(ctx, st.rdb, []string{st.k.session(sum)}, ms(now), msDur(st.ttl(s, now))).Int()
	if err != nil {
		return nil, "", err
	}
	if n == 0 {
		return nil, "", ErrNoSession
	}
	s.LastSeen = time.UnixMilli(now.UnixMilli())
	return s, sum, nil
}

// SignOut ends the session of token; no session is not an error.
func (st *Store) SignOut(ctx context.Context, token string) error {
	sum, ok := tokenSum(sessionPrefix, token)
	if !ok {
		return nil
	}
	op, err := st.rdb.HGet(ctx, st.k.session(sum), "op").Result()
	if errors.Is(err, redis.Nil) {
		return nil
	} else if err != nil {
		return err
	}
	return st.end(ctx, sum, &Session{Operator: op}, st.entry("signout", actorOf(op), op, nil))
}

// KEYS: seq, log, rec, fail, lock, session.
// ARGV: 1 session sum, 2 "1" if the code is right, 3 its step, 4 now ms,
// 5 lockout failures, 6 lockout ms, 7 lockout end ms, then bodies: 8
// stepup, 9 failure bad_code, 10 locked, 11 replayed, 12 signin.locked.
var stepUpScript = script(`
local closed = tocsin_stepup_open(ARGV[1], ARGV[4], ARGV[10])
if closed then return closed end
local function fail(body) return tocsin_stepup_fail(body, ARGV[5], ARGV[6], ARGV[7], ARGV[12]) end
if ARGV[2] ~= '1' then return fail(ARGV[9]) end
if tonumber(redis.call('HGET', KEYS[3], 'step') or '-1') >= tonumber(ARGV[3]) then return fail(ARGV[11]) end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[3], 'step', ARGV[3])
redis.call('HSET', KEYS[6], 'stepped', ARGV[4])
tocsin_audit(KEYS[1], KEYS[2], ARGV[8])
return 'ok'
`)

// StepUp checks a fresh TOTP code within the session of token and marks the
// session stepped up now. ErrNoSession if the session is over, ErrStepUp for
// every failed code (wrong, reused, locked out); failures count toward the
// lockout like failed sign-ins, and a lockout reached here ends the session.
func (st *Store) StepUp(ctx context.Context, token, code string) error {
	s, sum, err := st.session(ctx, token)
	if err != nil {
		return err
	}
	id := s.Operator
	r, err := st.read(ctx, id)
	if err != nil {
		return err
	}
	now := st.opts.Now()
	step, ok := matchCode(r.totp, code, now)
	right := "0"
	if ok {
		right = "1"
	}
	lockEnd := now.Add(st.opts.LockoutFor)
	failed := func(reason string) string {
		return st.entry("stepup.failed", actorOf(id), id, map[string]string{"reason": reason})
	}
	res, err := stepUpScript.Run(ctx, st.rdb,
		[]string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.fail(id), st.k.lock(id), st.k.session(sum)},
		sum, right, step, ms(now), st.opts.LockoutFailures, msDur(st.opts.LockoutFor), ms(lockEnd),
		st.entry("stepup", actorOf(id), id, nil), failed("bad_code"), failed("locked"), failed("replayed_code"),
		st.lockedEntry(id, lockEnd, true),
	).Text()
	return steppedUp(res, err)
}
