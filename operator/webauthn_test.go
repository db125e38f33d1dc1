package operator_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/go-webauthn/webauthn/protocol"

	"github.com/tocsin-alert/tocsin/internal/softkey"
	"github.com/tocsin-alert/tocsin/operator"
)

const (
	rpID     = "tocsin.example"
	rpOrigin = "https://tocsin.example"
)

func (e *env) webAuthn() *operator.WebAuthn {
	e.t.Helper()
	wa, err := e.st.WebAuthn(rpID, rpOrigin)
	if err != nil {
		e.t.Fatal(err)
	}
	return wa
}

// opts is options as the gateway would send them; their challenge is a
// secret the audit must not hold.
func (e *env) opts(v any, challenge protocol.URLEncodedBase64) []byte {
	e.t.Helper()
	e.secret(challenge.String())
	b, err := json.Marshal(v)
	if err != nil {
		e.t.Fatal(err)
	}
	return b
}

// register adds a new software key for the person signed in with tok.
func (e *env) register(wa *operator.WebAuthn, tok string) *softkey.Authenticator {
	e.t.Helper()
	ctx := context.Background()
	o, err := wa.BeginRegistration(ctx, tok)
	if err != nil {
		e.t.Fatalf("BeginRegistration: %v", err)
	}
	key := softkey.New(rpOrigin)
	resp, err := key.Create(e.opts(o, o.Response.Challenge))
	if err != nil {
		e.t.Fatal(err)
	}
	if err := wa.FinishRegistration(ctx, tok, resp); err != nil {
		e.t.Fatalf("FinishRegistration: %v", err)
	}
	e.secret(base64.RawURLEncoding.EncodeToString(key.ID), base64.StdEncoding.EncodeToString(key.ID))
	return key
}

// assert begins a sign-in for id and has key answer it.
func (e *env) assert(wa *operator.WebAuthn, id string, key *softkey.Authenticator) []byte {
	return e.assertWith(wa, id, key, func(*protocol.CredentialAssertion) {})
}

// assertAny is assert with a key that the options do not allow.
func (e *env) assertAny(wa *operator.WebAuthn, id string, key *softkey.Authenticator) []byte {
	return e.assertWith(wa, id, key, func(o *protocol.CredentialAssertion) { o.Response.AllowedCredentials = nil })
}

func (e *env) assertWith(wa *operator.WebAuthn, id string, key *softkey.Authenticator, change func(*protocol.CredentialAssertion)) []byte {
	e.t.Helper()
	o, err := wa.BeginSignIn(context.Background(), id)
	if err != nil {
		e.t.Fatalf("BeginSignIn(%s): %v", id, err)
	}
	change(o)
	resp, err := key.Get(e.opts(o, o.Response.Challenge))
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// factors checks that every signin and stepup entry from entry from on says
// which factor it took.
func (e *env) factors(from int, want string) {
	e.t.Helper()
	for _, en := range e.entries()[from:] {
		switch en.Kind {
		case "signin", "stepup", "signin.failed", "stepup.failed":
			if en.Detail["factor"] != want {
				e.t.Errorf("%s entry with factor %q; want %q: %+v", en.Kind, en.Detail["factor"], want, en)
			}
		}
	}
}

func TestWebAuthnRegisterSignInStepUp(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	wa := e.webAuthn()
	secret := e.enrol("alice", pwA)
	secretB := e.enrol("bob", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	from := len(e.entries())

	key := e.register(wa, tok)

	// A registration response works once.
	o, err := wa.BeginRegistration(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	key2 := softkey.New(rpOrigin)
	resp, _ := key2.Create(e.opts(o, o.Response.Challenge))
	if err := wa.FinishRegistration(ctx, tok, resp); err != nil {
		t.Fatalf("FinishRegistration(second key): %v", err)
	}
	e.secret(base64.RawURLEncoding.EncodeToString(key2.ID))
	if err := wa.FinishRegistration(ctx, tok, resp); !errors.Is(err, operator.ErrWebAuthn) {
		t.Errorf("FinishRegistration(again) = %v; want ErrWebAuthn", err)
	}
	// The first key is excluded from a new registration.
	o, _ = wa.BeginRegistration(ctx, tok)
	if n := len(o.Response.CredentialExcludeList); n != 2 {
		t.Errorf("%d keys excluded; want 2", n)
	}
	if _, err := key.Create(e.opts(o, o.Response.Challenge)); err == nil {
		t.Errorf("the softkey registered an excluded credential")
	}
	// A registration from another origin does not verify.
	o, _ = wa.BeginRegistration(ctx, tok)
	evil := softkey.New("https://evil.example")
	resp, _ = evil.Create(e.opts(o, o.Response.Challenge))
	if err := wa.FinishRegistration(ctx, tok, resp); !errors.Is(err, operator.ErrWebAuthn) {
		t.Errorf("FinishRegistration(wrong origin) = %v; want ErrWebAuthn", err)
	}

	// Sign in with the key: a new session, the old one ended.
	tok2, s, err := wa.SignIn(ctx, "alice", pwA, e.assert(wa, "alice", key))
	if err != nil {
		t.Fatalf("SignIn(webauthn): %v", err)
	}
	e.secret(tok2)
	if s.Operator != "alice" || !e.st.Fresh(s) {
		t.Errorf("session %+v", s)
	}
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("old session after a new sign-in: %v", err)
	}
	if _, err := e.st.Session(ctx, tok2); err != nil {
		t.Fatal(err)
	}
	// The second key signs in too; TOTP still does.
	e.clk.Add(time.Second)
	if _, _, err := wa.SignIn(ctx, "alice", pwA, e.assert(wa, "alice", key2)); err != nil {
		t.Fatalf("SignIn(second key): %v", err)
	}
	e.clk.Add(30 * time.Second) // the next TOTP code
	tok, _ = e.signIn("alice", pwA, secret)

	// Registering needs a fresh session; step-up with the key makes it fresh.
	e.clk.Add(3 * time.Minute)
	if _, err := wa.BeginRegistration(ctx, tok); !errors.Is(err, operator.ErrNotFresh) {
		t.Errorf("BeginRegistration(stale session) = %v; want ErrNotFresh", err)
	}
	o2, err := wa.BeginStepUp(ctx, tok)
	if err != nil {
		t.Fatal(err)
	}
	resp, _ = key.Get(e.opts(o2, o2.Response.Challenge))
	if err := wa.StepUp(ctx, tok, resp); err != nil {
		t.Fatalf("StepUp(webauthn): %v", err)
	}
	if s, _ := e.st.Session(ctx, tok); !e.st.Fresh(s) || !s.SteppedUp.Equal(e.clk.Now()) {
		t.Errorf("after StepUp: %+v", s)
	}
	if _, err := wa.BeginRegistration(ctx, tok); err != nil {
		t.Errorf("BeginRegistration after step-up: %v", err)
	}
	// Someone without a key steps up with TOTP only; no session, no step-up.
	tokB, _ := e.signIn("bob", pwA, secretB)
	if _, err := wa.BeginStepUp(ctx, tokB); !errors.Is(err, operator.ErrNoKeys) {
		t.Errorf("BeginStepUp(no key) = %v; want ErrNoKeys", err)
	}
	if _, err := wa.BeginStepUp(ctx, "tsn_nonsense"); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("BeginStepUp(no session) = %v", err)
	}
	if _, err := wa.BeginRegistration(ctx, "tsn_nonsense"); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("BeginRegistration(no session) = %v", err)
	}

	e.wantAudit(from,
		"webauthn.registered operator:alice alice",
		"webauthn.registered operator:alice alice",
		"signin operator:alice alice",
		"signin operator:alice alice",
		"signin operator:alice alice",
		"stepup operator:alice alice",
		"signin operator:bob bob",
	)
	en := e.entries()[from:]
	if en[0].Detail["credential"] == "" || en[0].Detail["credential"] == en[1].Detail["credential"] {
		t.Errorf("registered entries do not tell the keys apart: %+v %+v", en[0], en[1])
	}
	for i, want := range []string{"webauthn", "webauthn", "", "webauthn"} {
		if got := en[2+i].Detail["factor"]; got != want {
			t.Errorf("entry %+v: factor %q; want %q", en[2+i], got, want)
		}
	}
}

func TestWebAuthnFailedSignIns(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{LockoutFailures: 3})
	wa := e.webAuthn()
	secret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	key := e.register(wa, tok)
	e.enrol("bob", pwA)
	from := len(e.entries())
	refused := func(what string, resp []byte, password string) {
		t.Helper()
		if tok, s, err := wa.SignIn(ctx, "alice", password, resp); err != operator.ErrSignIn || tok != "" || s != nil {
			t.Errorf("SignIn(%s) = %q, %v, %v; want ErrSignIn", what, tok, s, err)
		}
	}

	// Wrong password with the right key.
	refused("wrong password", e.assert(wa, "alice", key), "wrong password!")
	// An assertion for a challenge the gateway never gave.
	o, _ := wa.BeginSignIn(ctx, "alice")
	o.Response.Challenge = protocol.URLEncodedBase64(strings.Repeat("x", 32))
	resp, _ := key.Get(e.opts(o, o.Response.Challenge))
	refused("another challenge", resp, pwA)
	// From another origin: locked out now (3 in a row).
	key.Origin = "https://evil.example"
	refused("wrong origin", e.assert(wa, "alice", key), pwA)
	key.Origin = rpOrigin
	if st, _ := e.st.List(ctx, []string{"alice"}); !st[0].Locked {
		t.Fatalf("not locked after 3 failures: %+v", st[0])
	}
	refused("locked", e.assert(wa, "alice", key), pwA)
	if err := e.st.Enable(ctx, "alice", "admin-cli"); err != nil {
		t.Fatal(err)
	}

	// A replayed assertion: it worked once.
	resp = e.assert(wa, "alice", key)
	if _, _, err := wa.SignIn(ctx, "alice", pwA, resp); err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	refused("replayed", resp, pwA)
	// An assertion made for bob's sign-in, or for a step-up, is not alice's.
	refused("bob's challenge", e.assertAny(wa, "bob", key), pwA)
	// A cloned key: the copy's counter does not increase past the original's.
	clone := key.Clone()
	if _, _, err := wa.SignIn(ctx, "alice", pwA, e.assert(wa, "alice", key)); err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	refused("cloned key", e.assert(wa, "alice", clone), pwA)
	// Garbage, and an unknown key.
	refused("garbage", []byte(`{"id":"x"}`), pwA)
	other := softkey.New(rpOrigin)
	otherOpts, _ := json.Marshal(map[string]any{"challenge": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", "rp": map[string]string{"id": rpID}, "user": map[string]string{"id": "dQ"}})
	if _, err := other.Create(otherOpts); err != nil {
		t.Fatal(err)
	}
	refused("unknown key", e.assertAny(wa, "alice", other), pwA)
	// Unknown operator.
	if _, _, err := wa.SignIn(ctx, "mallory", pwA, e.assertAny(wa, "mallory", key)); err != operator.ErrSignIn {
		t.Errorf("SignIn(unknown) = %v", err)
	}

	e.wantAudit(from,
		"signin.failed system alice bad_password",
		"signin.failed system alice no_challenge",
		"signin.failed system alice bad_origin",
		"signin.locked system alice",
		"signin.failed system alice locked",
		"operator.enabled admin-cli alice",
		"signin operator:alice alice",
		"signin.failed system alice no_challenge",
		"signin.failed system alice no_challenge",
		"signin operator:alice alice",
		"webauthn.clone_suspected system alice",
		"signin.failed system alice clone_suspected",
		"signin.failed system alice bad_assertion",
		"signin.failed system alice unknown_key",
		"signin.locked system alice",
		"signin.failed system mallory unknown",
	)
	e.factors(from, "webauthn")
}

func TestWebAuthnFailedStepUps(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{LockoutFailures: 3})
	wa := e.webAuthn()
	secret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	key := e.register(wa, tok)
	from := len(e.entries())

	// A sign-in's assertion is no step-up's; nor is another session's.
	if err := wa.StepUp(ctx, tok, e.assert(wa, "alice", key)); err != operator.ErrStepUp {
		t.Errorf("StepUp(sign-in assertion) = %v; want ErrStepUp", err)
	}
	o, _ := wa.BeginStepUp(ctx, tok)
	key.Origin = "https://evil.example"
	resp, _ := key.Get(e.opts(o, o.Response.Challenge))
	key.Origin = rpOrigin
	if err := wa.StepUp(ctx, tok, resp); err != operator.ErrStepUp {
		t.Errorf("StepUp(wrong origin) = %v; want ErrStepUp", err)
	}
	o, _ = wa.BeginStepUp(ctx, tok)
	resp, _ = key.Get(e.opts(o, o.Response.Challenge))
	if err := wa.StepUp(ctx, tok, resp); err != nil {
		t.Fatalf("StepUp: %v", err)
	}
	if err := wa.StepUp(ctx, tok, resp); err != operator.ErrStepUp {
		t.Errorf("StepUp(replayed) = %v; want ErrStepUp", err)
	}
	// The lockout, reached by step-ups, ends the session.
	for range 2 {
		if err := wa.StepUp(ctx, tok, []byte("{}")); err != operator.ErrStepUp {
			t.Errorf("StepUp(garbage) = %v; want ErrStepUp", err)
		}
	}
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("Session after a step-up lockout = %v; want ErrNoSession", err)
	}
	if err := wa.StepUp(ctx, tok, resp); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("StepUp(ended session) = %v; want ErrNoSession", err)
	}
	e.wantAudit(from,
		"stepup.failed operator:alice alice no_challenge",
		"stepup.failed operator:alice alice bad_origin",
		"stepup operator:alice alice",
		"stepup.failed operator:alice alice no_challenge",
		"stepup.failed operator:alice alice bad_assertion",
		"stepup.failed operator:alice alice bad_assertion",
		"signin.locked system alice",
	)
	e.factors(from, "webauthn")
}

// BeginSignIn's answer has one shape whoever asks: unknown, without a key,
// with one.
func TestWebAuthnBeginSignInTellsNothing(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	wa := e.webAuthn()
	secret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	e.register(wa, tok)
	e.enrol("bob", pwA)
	shape := func(id string) (string, string) {
		t.Helper()
		o, err := wa.BeginSignIn(ctx, id)
		if err != nil {
			t.Fatalf("BeginSignIn(%s): %v", id, err)
		}
		e.secret(o.Response.Challenge.String())
		allow := o.Response.AllowedCredentials
		if len(allow) != 1 {
			t.Fatalf("BeginSignIn(%s): %d allowed credentials", id, len(allow))
		}
		credID := allow[0].CredentialID.String()
		o.Response.Challenge, allow[0].CredentialID = nil, nil
		b, _ := json.Marshal(o)
		return string(b), credID
	}
	a, aID := shape("alice")
	b, bID := shape("bob")
	m, mID := shape("mallory")
	if a != b || a != m {
		t.Errorf("answers differ:\nalice   %s\nbob     %s\nmallory %s", a, b, m)
	}
	if len(aID) != len(bID) || len(aID) != len(mID) || bID == mID {
		t.Errorf("credential ids alice %q bob %q mallory %q", aID, bID, mID)
	}
	// A made-up id is stable, also for a new WebAuthn on the same Redis.
	if _, again := shape("mallory"); again != mID {
		t.Errorf("mallory's made-up id changed: %q, %q", mID, again)
	}
	wa = e.webAuthn()
	if _, again := shape("bob"); again != bID {
		t.Errorf("bob's made-up id changed after a restart: %q, %q", bID, again)
	}
}

// Re-enrolment (an admin's new invite, e.g. after a lost key) revokes every
// security key: the old key no longer signs in.
func TestReEnrolmentRevokesKeys(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	wa := e.webAuthn()
	secret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	key := e.register(wa, tok)
	e.clk.Add(time.Second)
	if _, _, err := wa.SignIn(ctx, "alice", pwA, e.assert(wa, "alice", key)); err != nil {
		t.Fatalf("SignIn with the key before re-enrolment: %v", err)
	}
	e.clk.Add(time.Minute)
	e.enrol("alice", pwA)
	e.clk.Add(time.Second)
	// The key is no longer offered; signed anyway, it is refused.
	if _, _, err := wa.SignIn(ctx, "alice", pwA, e.assertAny(wa, "alice", key)); !errors.Is(err, operator.ErrSignIn) {
		t.Fatalf("SignIn with a key from before re-enrolment = %v; want ErrSignIn", err)
	}
}
