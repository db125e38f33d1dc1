package operator

// WebAuthn: security keys as the preferred second factor, TOTP staying the
// fallback. An enrolled person, signed in, registers keys (BeginRegistration,
// FinishRegistration); then signs in with id, password and a key
// (BeginSignIn, SignIn) and steps up with it (BeginStepUp, StepUp).
//
// Decisions worth knowing:
//   - Each ceremony's challenge is stored under the hash of the challenge
//     for ceremonyTTL, bound to its purpose, operator and (registration,
//     step-up) session, and is used up by the first response that names it,
//     whatever the outcome: a replayed response finds no challenge. Keying by
//     challenge, not by operator, lets no stranger void a person's pending
//     sign-in by beginning another.
//   - Begin* only stores a challenge and is not audited (like a session's
//     last-seen time); every Finish that changes state or fails a sign-in or
//     step-up is, in the same script as the change.
//   - BeginSignIn answers every id alike: an unknown id, or one with no key,
//     gets a credential id derived from a secret salt (stable across calls and
//     restarts), and transports are never listed, so the answer does not tell
//     who exists or who has a key.
//   - The signature counter is compared and advanced in the script that
//     starts the session or marks the step-up (go-webauthn's UpdateCounter
//     rule): a counter that does not increase is refused as a cloned key,
//     audited webauthn.clone_suspected, and counts as a failure.
//   - Registering a key is sensitive: it needs a fresh session (Store.Fresh,
//     which a sign-in is for StepUpWindow), else ErrNotFresh.
//   - Keys live in their own hash next to the record (keys.webauthn); the
//     audit only ever sees a hash of a credential id, never a key, a
//     challenge or a signature.

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-webauthn/webauthn/protocol"
	"github.com/go-webauthn/webauthn/webauthn"
	"github.com/redis/go-redis/v9"
)

// WebAuthn errors.
var (
	// ErrWebAuthn is a failed registration: unknown, expired or used
	// challenge, or a response that does not verify.
	ErrWebAuthn = errors.New("security key: unknown, expired or used challenge, or a response that does not verify")
	// ErrNotFresh means registering a key needs a fresh step-up first.
	ErrNotFresh = errors.New("step up first: registering a security key needs a fresh second factor")
	// ErrNoKeys means the signed-in person has no security key to step up with.
	ErrNoKeys = errors.New("no security key registered")
	// ErrTooManyKeys means the person already has MaxKeys keys.
	ErrTooManyKeys = fmt.Errorf("security key: at most %d per operator", MaxKeys)
)

// MaxKeys is how many security keys one operator may register.
const MaxKeys = 10

// ceremonyTTL is how long a ceremony's challenge stays usable.
const ceremonyTTL = 5 * time.Minute

// WebAuthn signs operators in with security keys; it works on a Store's
// records and sessions. Make it with Store.WebAuthn.
type WebAuthn struct {
	st *Store
	wa *webauthn.WebAuthn

	saltMu sync.Mutex
	salt   []byte
}

// WebAuthn enables security keys for relying party rpID (the host of the
// gateway's public URL, "tocsin.example") used from origins (its origin,
// "https://tocsin.example"). The relying party's name is Options.Issuer.
func (st *Store) WebAuthn(rpID string, origins ...string) (*WebAuthn, error) {
	wa, err := webauthn.New(&webauthn.Config{
		RPID:                  rpID,
		RPDisplayName:         st.opts.Issuer,
		RPOrigins:             origins,
		AttestationPreference: protocol.PreferNoAttestation,
		AuthenticatorSelection: protocol.AuthenticatorSelection{
			ResidentKey:      protocol.ResidentKeyRequirementDiscouraged,
			UserVerification: protocol.VerificationPreferred,
		},
		Timeouts: webauthn.TimeoutsConfig{
			Login:        webauthn.TimeoutConfig{Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
			Registration: webauthn.TimeoutConfig{Timeout: ceremonyTTL, TimeoutUVD: ceremonyTTL},
		},
	})
	if err != nil {
		return nil, fmt.Errorf("operator: webauthn: %w", err)
	}
	return &WebAuthn{st: st, wa: wa}, nil
}

// webauthn is a hash of operator id's security keys: handle (the WebAuthn
// user handle, random), and per key "cred:<b64url id>" (the credential as
// JSON, without its counter) and "count:<b64url id>" (its signature counter).
func (k keys) webauthn(id string) string { return k.p + ":wa:" + id }

// ceremony is a pending ceremony (JSON), under the hex SHA-256 of its challenge.
func (k keys) ceremony(sum string) string { return k.p + ":wacer:" + sum }

// waSalt keys the made-up credential ids of BeginSignIn.
func (k keys) waSalt() string { return k.p + ":wasalt" }

func credField(id []byte) string  { return "cred:" + base64.RawURLEncoding.EncodeToString(id) }
func countField(id []byte) string { return "count:" + base64.RawURLEncoding.EncodeToString(id) }

// credSum is what the audit says of a credential id: a hash, never the id.
func credSum(id []byte) string {
	h := sha256.Sum256(id)
	return hex.EncodeToString(h[:16])
}

// user is an operator as go-webauthn sees them.
type user struct {
	handle   []byte
	id, name string
	creds    []webauthn.Credential
}

func (u *user) WebAuthnID() []byte                         { return u.handle }
func (u *user) WebAuthnName() string                       { return u.id }
func (u *user) WebAuthnDisplayName() string                { return u.name }
func (u *user) WebAuthnCredentials() []webauthn.Credential { return u.creds }

func (u *user) has(id []byte) bool {
	for _, c := range u.creds {
		if bytes.Equal(c.ID, id) {
			return true
		}
	}
	return false
}

// user reads operator id's handle and keys.
func (w *WebAuthn) user(ctx context.Context, id string) (*user, error) {
	h, err := w.st.rdb.HGetAll(ctx, w.st.k.webauthn(id)).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	name, _ := w.st.opts.Known(id)
	u := &user{id: id, name: orDefault(name, id)}
	u.handle, _ = base64.RawURLEncoding.DecodeString(h["handle"])
	for f, v := range h {
		b64id, ok := strings.CutPrefix(f, "cred:")
		if !ok {
			continue
		}
		var c webauthn.Credential
		if err := json.Unmarshal([]byte(v), &c); err != nil {
			continue // a damaged key is no key
		}
		n, _ := strconv.ParseUint(h["count:"+b64id], 10, 32)
		c.Authenticator.SignCount = uint32(n)
		u.creds = append(u.creds, c)
	}
	return u, nil
}

// ceremony is a pending ceremony as stored.
type ceremony struct {
	// Purpose is register, signin or stepup.
	Purpose string `json:"purpose"`
	// Op is the operator id (as given, for a sign-in).
	Op string `json:"op"`
	// Session is the session sum a registration or step-up is bound to.
	Session string `json:"session,omitempty"`
	// Expires is in Unix ms by the Store's clock.
	Expires int64 `json:"exp"`
	// Data is go-webauthn's, as BeginRegistration or BeginLogin made it.
	Data webauthn.SessionData `json:"data"`
}

func challengeSum(challenge string) string {
	h := sha256.Sum256([]byte(challenge))
	return hex.EncodeToString(h[:])
}

func (w *WebAuthn) putCeremony(ctx context.Context, c *ceremony) error {
	c.Expires = w.st.opts.Now().Add(ceremonyTTL).UnixMilli()
	b, err := json.Marshal(c)
	if err != nil {
		return err
	}
	return w.st.rdb.Set(ctx, w.st.k.ceremony(challengeSum(c.Data.Challenge)), b, ceremonyTTL).Err()
}

// KEYS: ceremony. Gets and deletes it (GETDEL, before Redis 6.2 too).
var takeScript = redis.NewScript(`
local v = redis.call('GET', KEYS[1])
if v then redis.call('DEL', KEYS[1]) end
return v
`)

// takeCeremony uses up the ceremony of challenge and returns it if it is
// for purpose, operator id and session sum, and not expired; nil otherwise.
func (w *WebAuthn) takeCeremony(ctx context.Context, challenge, purpose, id, sum string) (*ceremony, error) {
	if challenge == "" {
		return nil, nil
	}
	v, err := takeScript.Run(ctx, w.st.rdb, []string{w.st.k.ceremony(challengeSum(challenge))}).Text()
	if errors.Is(err, redis.Nil) {
		return nil, nil
	} else if err != nil {
		return nil, err
	}
	var c ceremony
	if json.Unmarshal([]byte(v), &c) != nil || c.Purpose != purpose || c.Op != id || c.Session != sum ||
		c.Data.Challenge != challenge || w.st.opts.Now().UnixMilli() > c.Expires {
		return nil, nil
	}
	return &c, nil
}

// saltFor returns the secret that made-up credential ids are derived from,
// made once per Redis.
func (w *WebAuthn) saltFor(ctx context.Context) ([]byte, error) {
	w.saltMu.Lock()
	defer w.saltMu.Unlock()
	if w.salt != nil {
		return w.salt, nil
	}
	fresh := make([]byte, 32)
	rand.Read(fresh) // never fails (crypto/rand)
	if err := w.st.rdb.SetNX(ctx, w.st.k.waSalt(), hex.EncodeToString(fresh), 0).Err(); err != nil {
		return nil, err
	}
	v, err := w.st.rdb.Get(ctx, w.st.k.waSalt()).Result()
	if err != nil {
		return nil, err
	}
	if w.salt, err = hex.DecodeString(v); err != nil || len(w.salt) < 16 {
		w.salt = nil
		return nil, errors.New("operator: damaged webauthn salt")
	}
	return w.salt, nil
}

// allowList is what a sign-in or step-up offers the browser: the ids of the
// person's keys, without transports (see the decisions above).
func allowList(u *user) []protocol.CredentialDescriptor {
	out := make([]protocol.CredentialDescriptor, 0, len(u.creds))
	for _, c := range u.creds {
		out = append(out, protocol.CredentialDescriptor{Type: protocol.PublicKeyCredentialType, CredentialID: c.ID})
	}
	return out
}

// beginAssertion makes the options of an assertion by one of u's keys (or,
// if u has none, by a made-up one) and stores its ceremony.
func (w *WebAuthn) beginAssertion(ctx context.Context, u *user, c *ceremony) (*protocol.CredentialAssertion, error) {
	allow := allowList(u)
	if len(allow) == 0 {
		salt, err := w.saltFor(ctx)
		if err != nil {
			return nil, err
		}
		m := hmac.New(sha256.New, salt)
		m.Write([]byte("tocsin webauthn made-up credential\x00" + u.id))
		allow = []protocol.CredentialDescriptor{{Type: protocol.PublicKeyCredentialType, CredentialID: m.Sum(nil)}}
	}
	// One path for every id, so that the answer has one shape.
	opts, sd, err := w.wa.BeginDiscoverableLogin(webauthn.WithAllowedCredentials(allow),
		webauthn.WithUserVerification(protocol.VerificationPreferred))
	if err != nil {
		return nil, err
	}
	sd.UserID = u.handle
	c.Data = *sd
	if err := w.putCeremony(ctx, c); err != nil {
		return nil, err
	}
	return opts, nil
}

// assertion is a response to an assertion, checked: cred is the key with its
// new counter, or reason says why not.
type assertion struct {
	cred   *webauthn.Credential
	reason string
}

// check parses response, uses up its ceremony and verifies it against u's
// keys. It returns reason "" only for a valid assertion.
func (w *WebAuthn) check(ctx context.Context, response []byte, purpose, id, sum string, u func() (*user, error)) (assertion, error) {
	p, err := protocol.ParseCredentialRequestResponseBytes(response)
	if err != nil {
		return assertion{reason: "bad_assertion"}, nil
	}
	c, err := w.takeCeremony(ctx, p.Response.CollectedClientData.Challenge, purpose, id, sum)
	if err != nil {
		return assertion{}, err
	}
	if c == nil {
		return assertion{reason: "no_challenge"}, nil
	}
	us, err := u()
	if err != nil {
		return assertion{}, err
	}
	if !us.has(p.RawID) {
		return assertion{reason: "unknown_key"}, nil
	}
	cred, err := w.wa.ValidateLogin(us, c.Data, p)
	if err != nil {
		if !w.originOK(p.Response.CollectedClientData.Origin) {
			return assertion{reason: "bad_origin"}, nil
		}
		return assertion{reason: "bad_assertion"}, nil
	}
	return assertion{cred: cred}, nil
}

// originOK says whether origin is one of the configured ones (only to name
// a failure's reason; go-webauthn decides).
func (w *WebAuthn) originOK(origin string) bool {
	o, err := url.Parse(origin)
	for _, want := range w.wa.Config.RPOrigins {
		if strings.EqualFold(origin, want) {
			return true
		}
		if u, err2 := url.Parse(want); err == nil && err2 == nil && strings.EqualFold(o.Scheme, u.Scheme) && strings.EqualFold(o.Host, u.Host) {
			return true
		}
	}
	return false
}

// BeginRegistration starts adding a security key for the person signed in
// with session token: it returns the options for
// navigator.credentials.create (send them as JSON), good for ceremonyTTL.
// The session must be fresh (ErrNotFresh: StepUp first).
func (w *WebAuthn) BeginRegistration(ctx context.Context, token string) (*protocol.CredentialCreation, error) {
	s, sum, err := w.st.session(ctx, token)
	if err != nil {
		return nil, err
	}
	if !w.st.Fresh(s) {
		return nil, ErrNotFresh
	}
	id := s.Operator
	handle := make([]byte, 32)
	rand.Read(handle) // never fails (crypto/rand)
	if err := w.st.rdb.HSetNX(ctx, w.st.k.webauthn(id), "handle", base64.RawURLEncoding.EncodeToString(handle)).Err(); err != nil {
		return nil, err
	}
	u, err := w.user(ctx, id)
	if err != nil {
		return nil, err
	}
	if len(u.creds) >= MaxKeys {
		return nil, ErrTooManyKeys
	}
	exclude := make([]protocol.CredentialDescriptor, 0, len(u.creds))
	for _, c := range u.creds {
		exclude = append(exclude, c.Descriptor())
	}
	opts, sd, err := w.wa.BeginRegistration(u, webauthn.WithExclusions(exclude))
	if err != nil {
		return nil, err
	}
	if err := w.putCeremony(ctx, &ceremony{Purpose: "register", Op: id, Session: sum, Data: *sd}); err != nil {
		return nil, err
	}
	return opts, nil
}

// KEYS: seq, log, rec, session, webauthn.
// ARGV: 1 session sum, 2 cred field, 3 credential JSON, 4 count field, 5
// count, 6 MaxKeys, 7 body.
var registerScript = script(`
if (redis.call('HGET', KEYS[3], 'session') or '') ~= ARGV[1] or redis.call('EXISTS', KEYS[4]) == 0 then return 'nosession' end
if redis.call('HGET', KEYS[3], 'disabled') == '1' then return 'nosession' end
if redis.call('HEXISTS', KEYS[5], ARGV[2]) == 1 then return 'exists' end
local n = 0
for _, f in ipairs(redis.call('HKEYS', KEYS[5])) do
  if string.sub(f, 1, 5) == 'cred:' then n = n + 1 end
end
if n >= tonumber(ARGV[6]) then return 'full' end
redis.call('HSET', KEYS[5], ARGV[2], ARGV[3], ARGV[4], ARGV[5])
tocsin_audit(KEYS[1], KEYS[2], ARGV[7])
return 'ok'
`)

// FinishRegistration checks response (the JSON of the PublicKeyCredential
// that navigator.credentials.create gave) against the ceremony
// BeginRegistration began within the same session, and adds the key to the
// person's keys (audit webauthn.registered). ErrNoSession if the session is
// over, ErrWebAuthn (wrapped, with go-webauthn's reason) if the response
// does not verify, ErrTooManyKeys.
func (w *WebAuthn) FinishRegistration(ctx context.Context, token string, response []byte) error {
	s, sum, err := w.st.session(ctx, token)
	if err != nil {
		return err
	}
	id := s.Operator
	p, err := protocol.ParseCredentialCreationResponseBytes(response)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrWebAuthn, details(err))
	}
	c, err := w.takeCeremony(ctx, p.Response.CollectedClientData.Challenge, "register", id, sum)
	if err != nil {
		return err
	}
	if c == nil {
		return fmt.Errorf("%w: unknown, expired or used challenge", ErrWebAuthn)
	}
	u, err := w.user(ctx, id)
	if err != nil {
		return err
	}
	cred, err := w.wa.CreateCredential(u, c.Data, p)
	if err != nil {
		return fmt.Errorf("%w: %s", ErrWebAuthn, details(err))
	}
	count := cred.Authenticator.SignCount
	stored := *cred
	stored.Attestation = webauthn.CredentialAttestation{} // not needed without an attestation policy
	stored.Authenticator.SignCount = 0                    // kept in its own field
	b, err := json.Marshal(&stored)
	if err != nil {
		return err
	}
	res, err := registerScript.Run(ctx, w.st.rdb,
		[]string{w.st.audit.Seq, w.st.audit.Log, w.st.k.rec(id), w.st.k.session(sum), w.st.k.webauthn(id)},
		sum, credField(cred.ID), b, countField(cred.ID), count, MaxKeys,
		w.st.entry("webauthn.registered", actorOf(id), id, map[string]string{"credential": credSum(cred.ID)}),
	).Text()
	switch {
	case err != nil:
		return err
	case res == "ok":
		return nil
	case res == "nosession":
		return ErrNoSession
	case res == "exists":
		return fmt.Errorf("%w: key already registered", ErrWebAuthn)
	case res == "full":
		return ErrTooManyKeys
	}
	return errors.New("operator: unexpected script answer " + res)
}

// details is go-webauthn's reason for an error, without its developer
// information (which may quote challenges).
func details(err error) string {
	var pe *protocol.Error
	if errors.As(err, &pe) && pe.Details != "" {
		return pe.Details
	}
	return "malformed response"
}

// BeginSignIn starts signing id in with a security key: it returns the
// options for navigator.credentials.get (send them as JSON), good for
// ceremonyTTL. It answers every id alike, known or not, with keys or not;
// only a Redis error fails it.
func (w *WebAuthn) BeginSignIn(ctx context.Context, id string) (*protocol.CredentialAssertion, error) {
	u, err := w.user(ctx, id)
	if err != nil {
		return nil, err
	}
	return w.beginAssertion(ctx, u, &ceremony{Purpose: "signin", Op: id})
}

// KEYS: seq, log, rec, fail, lock, old session, new session, webauthn.
// ARGV: 1 old session sum, 2 new session sum, 3 "1" if password and key
// are right, 4 the key's count field, 5 its new count, 6 now ms, 7 session
// ttl ms, 8 lockout failures, 9 lockout ms, 10 lockout end ms, 11 id, then
// bodies: 12 signin, 13 failure for Go's reason, 14 locked, 15 disabled, 16
// clone_suspected failure, 17 signin.locked, 18 webauthn.clone_suspected,
// 19 unknown_key failure.
var signInWebAuthnScript = script(`
local function fail(body)
  return tocsin_fail(KEYS[1], KEYS[2], KEYS[4], KEYS[5], body, ARGV[8], ARGV[9], ARGV[10], ARGV[17])
end
local closed = tocsin_signin_open(ARGV[1], ARGV[6], ARGV[14], fail, ARGV[15])
if closed then return closed end
if ARGV[3] ~= '1' then return fail(ARGV[13]) end
local bad = tocsin_key_counter(KEYS[8], ARGV[4], ARGV[5], ARGV[18], fail, ARGV[19], ARGV[16])
if bad then return bad end
tocsin_signin_start(ARGV[11], ARGV[6], ARGV[7], ARGV[2], ARGV[12])
return 'ok'
`)

// SignIn checks id, password and response (the JSON of the
// PublicKeyCredential that navigator.credentials.get gave for BeginSignIn's
// options) and starts a session, ending the person's previous one, exactly
// as Store.SignIn does with a TOTP code: every failure is ErrSignIn (or a
// Redis error), counts toward the lockout and is audited signin.failed with
// detail factor=webauthn and reason: unknown, not_enrolled, disabled,
// locked, bad_password, no_challenge (unknown, expired or used: a replay),
// unknown_key, bad_origin, bad_assertion, clone_suspected (the key's
// counter did not increase; also audited webauthn.clone_suspected).
func (w *WebAuthn) SignIn(ctx context.Context, id, password string, response []byte) (token string, s *Session, err error) {
	st := w.st
	failed := func(reason string) string {
		return st.entry("signin.failed", "system", subject(id), map[string]string{"reason": reason, "factor": "webauthn"})
	}
	tooLong := len(password) > MaxPassword
	password = password[:min(len(password), MaxPassword)]
	if !st.known(id) {
		dummyVerify(ctx, password)
		if err := st.appendAudit(ctx, failed("unknown")); err != nil {
			return "", nil, err
		}
		return "", nil, ErrSignIn
	}
	// The ceremony is used up here, once, whatever follows.
	a, err := w.check(ctx, response, "signin", id, "", func() (*user, error) { return w.user(ctx, id) })
	if err != nil {
		return "", nil, err
	}
	token = newToken(sessionPrefix)
	sum, _ := tokenSum(sessionPrefix, token)
	err = retry(func() error {
		r, err := st.read(ctx, id)
		if err != nil {
			return err
		}
		reason := ""
		if !r.enrolled || r.pw == "" {
			dummyVerify(ctx, password)
			reason = "not_enrolled"
		} else if ok, err := verifyPassword(ctx, r.pw, password); err != nil {
			return err
		} else if !ok || tooLong {
			reason = "bad_password"
		}
		if reason == "" {
			reason = a.reason
		}
		right, field, count, detail := "0", "", uint32(0), map[string]string{"factor": "webauthn"}
		if reason == "" {
			right, field, count = "1", countField(a.cred.ID), a.cred.Authenticator.SignCount
			detail["credential"] = credSum(a.cred.ID)
		}
		now := st.opts.Now()
		ttl := min(st.opts.IdleTimeout, st.opts.AbsoluteTimeout)
		lockEnd := now.Add(st.opts.LockoutFor)
		res, err := signInWebAuthnScript.Run(ctx, st.rdb,
			[]string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.fail(id), st.k.lock(id), st.k.session(r.sessionSum), st.k.session(sum), st.k.webauthn(id)},
			r.sessionSum, sum, right, field, count, ms(now), msDur(ttl), st.opts.LockoutFailures, msDur(st.opts.LockoutFor), ms(lockEnd), id,
			st.entry("signin", actorOf(id), id, detail),
			failed(orDefault(reason, "bad_assertion")), failed("locked"), failed("disabled"), failed("clone_suspected"),
			st.lockedEntry(id, lockEnd, false),
			w.cloneEntry(id, a.cred), failed("unknown_key"),
		).Text()
		s, err = signedIn(res, err, id, now)
		return err
	})
	if err != nil {
		return "", nil, err
	}
	return token, s, nil
}

// cloneEntry is the audit of a key whose counter did not increase.
func (w *WebAuthn) cloneEntry(id string, cred *webauthn.Credential) string {
	if cred == nil {
		return ""
	}
	return w.st.entry("webauthn.clone_suspected", "system", id, map[string]string{
		"credential": credSum(cred.ID), "count": strconv.FormatUint(uint64(cred.Authenticator.SignCount), 10)})
}

// BeginStepUp starts a step-up with a security key within the session of
// token: it returns the options for navigator.credentials.get, good for
// ceremonyTTL. ErrNoSession if the session is over, ErrNoKeys if the person
// has no key (step up with a TOTP code instead).
func (w *WebAuthn) BeginStepUp(ctx context.Context, token string) (*protocol.CredentialAssertion, error) {
	s, sum, err := w.st.session(ctx, token)
	if err != nil {
		return nil, err
	}
	u, err := w.user(ctx, s.Operator)
	if err != nil {
		return nil, err
	}
	if len(u.creds) == 0 {
		return nil, ErrNoKeys
	}
	return w.beginAssertion(ctx, u, &ceremony{Purpose: "stepup", Op: s.Operator, Session: sum})
}

// KEYS: seq, log, rec, fail, lock, session, webauthn.
// ARGV: 1 session sum, 2 "1" if the key is right, 3 its count field, 4 its
// new count, 5 now ms, 6 lockout failures, 7 lockout ms, 8 lockout end ms,
// then bodies: 9 stepup, 10 failure for Go's reason, 11 locked, 12
// clone_suspected failure, 13 signin.locked, 14 webauthn.clone_suspected,
// 15 unknown_key failure.
var stepUpWebAuthnScript = script(`
local closed = tocsin_stepup_open(ARGV[1], ARGV[5], ARGV[11])
if closed then return closed end
local function fail(body) return tocsin_stepup_fail(body, ARGV[6], ARGV[7], ARGV[8], ARGV[13]) end
if ARGV[2] ~= '1' then return fail(ARGV[10]) end
local bad = tocsin_key_counter(KEYS[7], ARGV[3], ARGV[4], ARGV[14], fail, ARGV[15], ARGV[12])
if bad then return bad end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[6], 'stepped', ARGV[5])
tocsin_audit(KEYS[1], KEYS[2], ARGV[9])
return 'ok'
`)

// StepUp checks response (from navigator.credentials.get for BeginStepUp's
// options) within the session of token and marks the session stepped up
// now, like Store.StepUp with a code (audit stepup, detail factor=webauthn).
// ErrNoSession if the session is over, ErrStepUp for every failure (audited
// stepup.failed with a reason as for SignIn); failures count toward the
// lockout, and a lockout reached here ends the session.
func (w *WebAuthn) StepUp(ctx context.Context, token string, response []byte) error {
	st := w.st
	s, sum, err := st.session(ctx, token)
	if err != nil {
		return err
	}
	id := s.Operator
	a, err := w.check(ctx, response, "stepup", id, sum, func() (*user, error) { return w.user(ctx, id) })
	if err != nil {
		return err
	}
	right, field, count, detail := "0", "", uint32(0), map[string]string{"factor": "webauthn"}
	if a.reason == "" {
		right, field, count = "1", countField(a.cred.ID), a.cred.Authenticator.SignCount
		detail["credential"] = credSum(a.cred.ID)
	}
	failed := func(reason string) string {
		return st.entry("stepup.failed", actorOf(id), id, map[string]string{"reason": reason, "factor": "webauthn"})
	}
	now := st.opts.Now()
	lockEnd := now.Add(st.opts.LockoutFor)
	res, err := stepUpWebAuthnScript.Run(ctx, st.rdb,
		[]string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.fail(id), st.k.lock(id), st.k.session(sum), st.k.webauthn(id)},
		sum, right, field, count, ms(now), st.opts.LockoutFailures, msDur(st.opts.LockoutFor), ms(lockEnd),
		st.entry("stepup", actorOf(id), id, detail), failed(orDefault(a.reason, "bad_assertion")), failed("locked"),
		failed("clone_suspected"),
		st.lockedEntry(id, lockEnd, true),
		w.cloneEntry(id, a.cred), failed("unknown_key"),
	).Text()
	return steppedUp(res, err)
}
