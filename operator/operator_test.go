package operator_test

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"
	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/operator"
)

const prefix = "t"

// clock is the tests' Now: it moves only when told.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

// env is one test's store, Redis and clock, and every secret it handed out,
// none of which may appear in the audit.
type env struct {
	t       *testing.T
	st      *operator.Store
	rdb     *redis.Client
	clk     *clock
	mu      sync.Mutex
	secrets []string
}

var people = map[string]string{"alice": "Alice A.", "bob": "Bob B.", "carol": "Carol C."}

func newEnv(t *testing.T, o operator.Options) *env {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: testenv.Redis(t, true).Addr()})
	t.Cleanup(func() { rdb.Close() })
	clk := &clock{t: time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)}
	o.Now = clk.Now
	o.Known = func(id string) (string, bool) { n, ok := people[id]; return n, ok }
	e := &env{t: t, st: operator.New(rdb, prefix, o), rdb: rdb, clk: clk}
	t.Cleanup(e.noSecretsInAudit)
	return e
}

func (e *env) secret(s ...string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.secrets = append(e.secrets, s...)
}

func (e *env) code(secret string) string {
	e.t.Helper()
	c, err := totp.GenerateCode(secret, e.clk.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	e.secret(c)
	return c
}

// enrol invites id and enrols them with password; it returns their TOTP
// secret and moves the clock on to the next code.
func (e *env) enrol(id, password string) string {
	e.t.Helper()
	ctx := context.Background()
	tok, err := e.st.Invite(ctx, id, "admin-cli")
	if err != nil {
		e.t.Fatalf("Invite(%s): %v", id, err)
	}
	key, err := e.st.BeginEnrol(ctx, tok, password)
	if err != nil {
		e.t.Fatalf("BeginEnrol(%s): %v", id, err)
	}
	e.secret(tok, password, key.Secret())
	if err := e.st.FinishEnrol(ctx, tok, e.code(key.Secret())); err != nil {
		e.t.Fatalf("FinishEnrol(%s): %v", id, err)
	}
	e.clk.Add(30 * time.Second)
	return key.Secret()
}

func (e *env) signIn(id, password, secret string) (string, *operator.Session) {
	e.t.Helper()
	tok, s, err := e.st.SignIn(context.Background(), id, password, e.code(secret))
	if err != nil {
		e.t.Fatalf("SignIn(%s): %v", id, err)
	}
	e.secret(tok)
	return tok, s
}

// entries reads the audit log, checking that it is numbered 1, 2, … without gaps.
func (e *env) entries() []audit.Entry {
	e.t.Helper()
	lines, err := e.rdb.LRange(context.Background(), prefix+":{audit}:log", 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	var out []audit.Entry
	for i, l := range lines {
		n, body, _ := strings.Cut(l, " ")
		if n != strconv.Itoa(i+1) {
			e.t.Fatalf("audit line %d is numbered %q: %s", i+1, n, l)
		}
		var en audit.Entry
		if err := json.Unmarshal([]byte(body), &en); err != nil {
			e.t.Fatalf("audit line %q: %v", l, err)
		}
		if en.Body() != body {
			e.t.Errorf("audit line %q is not canonical", l)
		}
		out = append(out, en)
	}
	return out
}

// kinds is the audit as "kind actor subject [reason]" lines, from entry from on.
func (e *env) kinds(from int) []string {
	var out []string
	for _, en := range e.entries()[from:] {
		s := en.Kind + " " + en.Actor + " " + en.Subject
		if r := en.Detail["reason"]; r != "" {
			s += " " + r
		}
		out = append(out, s)
	}
	return out
}

func (e *env) wantAudit(from int, want ...string) {
	e.t.Helper()
	got := e.kinds(from)
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		e.t.Errorf("audit from entry %d:\n%s\nwant:\n%s", from+1, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// noSecretsInAudit also checks that every key carries the {audit} hash tag.
func (e *env) noSecretsInAudit() {
	lines, err := e.rdb.LRange(context.Background(), prefix+":{audit}:log", 0, -1).Result()
	if err != nil {
		return // Redis already gone: the test failed elsewhere
	}
	all := strings.Join(lines, "\n")
	// Each script's keys and the audit's share a Redis Cluster slot.
	for _, k := range e.rdb.Keys(context.Background(), "*").Val() {
		if !strings.HasPrefix(k, prefix+":{audit}:") {
			e.t.Errorf("key %q lacks the {audit} hash tag", k)
		}
	}
	for _, bad := range []string{"$argon2id", "tsn_", "tsi_"} {
		if strings.Contains(all, bad) {
			e.t.Errorf("audit contains %q:\n%s", bad, all)
		}
	}
	for _, s := range e.secrets {
		if s != "" && strings.Contains(all, s) {
			e.t.Errorf("audit contains the secret %q:\n%s", s, all)
		}
	}
}

const pwA = "correct horse battery"

func TestEnrolSignInSession(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	tok, err := e.st.Invite(ctx, "alice", "admin-cli")
	if err != nil || !strings.HasPrefix(tok, "tsi_") || len(tok) != 4+43 {
		t.Fatalf("Invite = %q, %v", tok, err)
	}
	e.secret(tok)
	if _, err := e.st.Invite(ctx, "mallory", "admin-cli"); !errors.Is(err, operator.ErrUnknown) {
		t.Errorf("Invite(unknown) = %v; want ErrUnknown", err)
	}
	if err := e.st.FinishEnrol(ctx, tok, "123456"); !errors.Is(err, operator.ErrNotBegun) {
		t.Errorf("FinishEnrol before BeginEnrol = %v; want ErrNotBegun", err)
	}
	if _, err := e.st.BeginEnrol(ctx, tok, "short pw"); !errors.Is(err, operator.ErrPasswordTooShort) {
		t.Errorf("BeginEnrol(8 characters) = %v; want ErrPasswordTooShort", err)
	}
	if _, err := e.st.BeginEnrol(ctx, tok, "äöüäöüäöüäö"); !errors.Is(err, operator.ErrPasswordTooShort) {
		t.Errorf("BeginEnrol(11 characters, 22 bytes) = %v; want ErrPasswordTooShort", err)
	}
	if _, err := e.st.BeginEnrol(ctx, tok, strings.Repeat("x", 1025)); !errors.Is(err, operator.ErrPasswordTooLong) {
		t.Errorf("BeginEnrol(1025 bytes) = %v; want ErrPasswordTooLong", err)
	}
	key, err := e.st.BeginEnrol(ctx, tok, pwA)
	if err != nil {
		t.Fatalf("BeginEnrol: %v", err)
	}
	e.secret(key.Secret())
	if key.Issuer() != "Tocsin" || key.AccountName() != "alice" || !strings.HasPrefix(key.URL(), "otpauth://totp/") {
		t.Errorf("key = %s", key.URL())
	}
	if err := e.st.FinishEnrol(ctx, tok, "000000"); !errors.Is(err, operator.ErrCode) && err != nil {
		t.Errorf("FinishEnrol(wrong code) = %v; want ErrCode", err)
	}
	enrolCode := e.code(key.Secret())
	if err := e.st.FinishEnrol(ctx, tok, enrolCode); err != nil {
		t.Fatalf("FinishEnrol: %v", err)
	}
	// The invite is used up.
	if _, err := e.st.BeginEnrol(ctx, tok, pwA); !errors.Is(err, operator.ErrInvite) {
		t.Errorf("BeginEnrol(used invite) = %v; want ErrInvite", err)
	}
	if err := e.st.FinishEnrol(ctx, tok, enrolCode); !errors.Is(err, operator.ErrInvite) {
		t.Errorf("FinishEnrol(used invite) = %v; want ErrInvite", err)
	}
	// The code that confirmed enrolment does not sign in.
	if _, _, err := e.st.SignIn(ctx, "alice", pwA, enrolCode); !errors.Is(err, operator.ErrSignIn) {
		t.Errorf("SignIn(enrolment's code) = %v; want ErrSignIn", err)
	}
	e.clk.Add(30 * time.Second)
	signedIn := e.clk.Now()
	sess, s := e.signIn("alice", pwA, key.Secret())
	if !strings.HasPrefix(sess, "tsn_") || len(sess) != 4+43 {
		t.Errorf("session token %q", sess)
	}
	if s.Operator != "alice" || !s.Created.Equal(signedIn) || !s.SteppedUp.Equal(signedIn) {
		t.Errorf("SignIn session = %+v", s)
	}
	e.clk.Add(time.Minute)
	got, err := e.st.Session(ctx, sess)
	if err != nil || got.Operator != "alice" || !got.Created.Equal(signedIn) || !got.LastSeen.Equal(e.clk.Now()) {
		t.Fatalf("Session = %+v, %v", got, err)
	}
	if !e.st.Fresh(got) || !got.Fresh(e.clk.Now(), 2*time.Minute) {
		t.Errorf("a session a minute old is not fresh: %+v", got)
	}
	for _, bad := range []string{"", "tsn_x", "tsi_" + sess[4:], sess[:len(sess)-1] + "A"} {
		if _, err := e.st.Session(ctx, bad); !errors.Is(err, operator.ErrNoSession) {
			t.Errorf("Session(%q) = %v; want ErrNoSession", bad, err)
		}
	}
	st, err := e.st.List(ctx, []string{"alice", "bob"})
	if err != nil || len(st) != 2 {
		t.Fatalf("List = %v, %v", st, err)
	}
	if a := st[0]; a.ID != "alice" || !a.Enrolled || a.Disabled || a.Locked || !a.SessionActive || !a.LastSignIn.Equal(signedIn) {
		t.Errorf("List alice = %+v", a)
	}
	if b := st[1]; b != (operator.Status{ID: "bob"}) {
		t.Errorf("List bob = %+v", b)
	}
	if err := e.st.SignOut(ctx, sess); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Session(ctx, sess); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("Session after SignOut = %v; want ErrNoSession", err)
	}
	if err := e.st.SignOut(ctx, sess); err != nil {
		t.Errorf("second SignOut = %v; want nil", err)
	}
	if st, _ := e.st.List(ctx, []string{"alice"}); st[0].SessionActive {
		t.Errorf("List after SignOut = %+v", st[0])
	}
	e.wantAudit(0,
		"operator.invited admin-cli alice",
		"operator.enrolment_begun operator:alice alice",
		"operator.enrolled operator:alice alice",
		"signin.failed system alice replayed_code",
		"signin operator:alice alice",
		"signout operator:alice alice",
	)
	for _, en := range e.entries() {
		if !en.Time.Equal(en.Time.Truncate(time.Millisecond)) || en.Time.Before(time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)) {
			t.Errorf("entry time %v", en.Time)
		}
	}
}

func TestEveryFailedSignInIsAlike(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{LockoutFailures: 100})
	secret := e.enrol("alice", pwA)
	good := e.code(secret)
	if _, _, err := e.st.SignIn(ctx, "alice", pwA, good); err != nil {
		t.Fatalf("SignIn: %v", err)
	}
	from := len(e.entries())
	e.clk.Add(30 * time.Second)
	wrong := "000000"
	if wrong == e.code(secret) {
		wrong = "111111"
	}
	cases := []struct{ name, id, pw, code string }{
		{"wrong password", "alice", "not the password", e.code(secret)},
		{"wrong code", "alice", pwA, wrong},
		{"replayed code", "alice", pwA, good},
		{"unknown id", "mallory", pwA, e.code(secret)},
		{"not enrolled", "bob", pwA, e.code(secret)},
		{"no code", "alice", pwA, ""},
		{"too long password", "alice", strings.Repeat("p", 2000), e.code(secret)},
	}
	for _, c := range cases {
		tok, s, err := e.st.SignIn(ctx, c.id, c.pw, c.code)
		if err != operator.ErrSignIn || tok != "" || s != nil {
			t.Errorf("SignIn(%s) = %q, %v, %v; want ErrSignIn", c.name, tok, s, err)
		}
	}
	e.wantAudit(from,
		"signin.failed system alice bad_password",
		"signin.failed system alice bad_code",
		"signin.failed system alice replayed_code",
		"signin.failed system mallory unknown",
		"signin.failed system bob not_enrolled",
		"signin.failed system alice bad_code",
		"signin.failed system alice bad_password",
	)
	// Right now, the right code still works: failures left the step alone.
	e.signIn("alice", pwA, secret)
}

// Two sign-ins racing with the same code: exactly one wins.
func TestReplayGuardHoldsUnderRace(t *testing.T) {
	e := newEnv(t, operator.Options{})
	secret := e.enrol("alice", pwA)
	code := e.code(secret)
	var wg sync.WaitGroup
	errs := make([]error, 4)
	for i := range errs {
		wg.Go(func() { _, _, errs[i] = e.st.SignIn(context.Background(), "alice", pwA, code) })
	}
	wg.Wait()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		} else if err != operator.ErrSignIn {
			t.Errorf("SignIn = %v", err)
		}
	}
	if ok != 1 {
		t.Errorf("%d of 4 sign-ins with one code succeeded; want 1", ok)
	}
}

func TestLockout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{LockoutFailures: 3, LockoutFor: 15 * time.Minute})
	secret := e.enrol("alice", pwA)
	from := len(e.entries())
	fail := func() {
		t.Helper()
		if _, _, err := e.st.SignIn(ctx, "alice", "wrong password!", e.code(secret)); err != operator.ErrSignIn {
			t.Fatalf("SignIn(wrong) = %v", err)
		}
	}
	// Success resets the count.
	fail()
	fail()
	e.signIn("alice", pwA, secret)
	e.clk.Add(30 * time.Second)
	fail()
	fail()
	if st, _ := e.st.List(ctx, []string{"alice"}); st[0].Locked {
		t.Fatalf("locked after 2 failures since a success: %+v", st[0])
	}
	fail()
	if st, _ := e.st.List(ctx, []string{"alice"}); !st[0].Locked {
		t.Fatalf("not locked after 3 failures: %+v", st[0])
	}
	// The right credentials are refused while locked, and do not count.
	for range 2 {
		if _, _, err := e.st.SignIn(ctx, "alice", pwA, e.code(secret)); err != operator.ErrSignIn {
			t.Fatalf("SignIn while locked = %v; want ErrSignIn", err)
		}
		e.clk.Add(30 * time.Second)
	}
	e.clk.Add(14 * time.Minute)
	e.signIn("alice", pwA, secret)
	e.wantAudit(from,
		"signin.failed system alice bad_password",
		"signin.failed system alice bad_password",
		"signin operator:alice alice",
		"signin.failed system alice bad_password",
		"signin.failed system alice bad_password",
		"signin.failed system alice bad_password",
		"signin.locked system alice",
		"signin.failed system alice locked",
		"signin.failed system alice locked",
		"signin operator:alice alice",
	)
	// An admin lifts a lockout early.
	e.clk.Add(30 * time.Second)
	fail()
	fail()
	fail()
	if err := e.st.Enable(ctx, "alice", "admin-cli"); err != nil {
		t.Fatal(err)
	}
	e.signIn("alice", pwA, secret)
}

func TestIdleAndAbsoluteTimeout(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{IdleTimeout: 10 * time.Minute, AbsoluteTimeout: time.Hour})
	secret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	if ttl := e.rdb.PTTL(ctx, prefix+":{audit}:op:sess:"+sum(tok)).Val(); ttl <= 9*time.Minute || ttl > 10*time.Minute {
		t.Errorf("session key TTL = %v; want the idle timeout", ttl)
	}
	for range 2 {
		e.clk.Add(9 * time.Minute)
		if _, err := e.st.Session(ctx, tok); err != nil {
			t.Fatalf("Session used every 9m: %v", err)
		}
	}
	from := len(e.entries())
	e.clk.Add(10 * time.Minute)
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Fatalf("Session idle 10m = %v; want ErrNoSession", err)
	}
	e.wantAudit(from, "session.expired system alice idle")

	e.clk.Add(30 * time.Second)
	tok, _ = e.signIn("alice", pwA, secret)
	for range 6 {
		e.clk.Add(9*time.Minute + 59*time.Second)
		if _, err := e.st.Session(ctx, tok); err != nil {
			t.Fatalf("Session within the hour: %v", err)
		}
	}
	// Redis would drop the key at the absolute limit, too.
	if ttl := e.rdb.PTTL(ctx, prefix+":{audit}:op:sess:"+sum(tok)).Val(); ttl > 7*time.Second {
		t.Errorf("session key TTL = %v; want at most the hour's rest (6s)", ttl)
	}
	from = len(e.entries())
	e.clk.Add(6 * time.Second)
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Fatalf("Session after 1h = %v; want ErrNoSession", err)
	}
	e.wantAudit(from, "session.expired system alice absolute")
}

func TestOneSessionPerPerson(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	secret := e.enrol("alice", pwA)
	bobSecret := e.enrol("bob", pwA+"!")
	first, _ := e.signIn("alice", pwA, secret)
	bobs, _ := e.signIn("bob", pwA+"!", bobSecret)
	e.clk.Add(30 * time.Second)
	second, _ := e.signIn("alice", pwA, secret)
	if _, err := e.st.Session(ctx, first); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("first session after a second sign-in = %v; want ErrNoSession", err)
	}
	if s, err := e.st.Session(ctx, second); err != nil || s.Operator != "alice" {
		t.Errorf("second session = %+v, %v", s, err)
	}
	if s, err := e.st.Session(ctx, bobs); err != nil || s.Operator != "bob" {
		t.Errorf("bob's session = %+v, %v", s, err)
	}
}

func TestStepUp(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{LockoutFailures: 3})
	secret := e.enrol("alice", pwA)
	tok, s := e.signIn("alice", pwA, secret)
	if !s.Fresh(e.clk.Now(), 2*time.Minute) {
		t.Errorf("a new session is not fresh: %+v", s)
	}
	e.clk.Add(3 * time.Minute)
	if s, _ := e.st.Session(ctx, tok); e.st.Fresh(s) || s.Fresh(e.clk.Now(), 2*time.Minute) {
		t.Errorf("3 minutes after sign-in the session is fresh: %+v", s)
	}
	from := len(e.entries())
	code := e.code(secret)
	if err := e.st.StepUp(ctx, tok, code); err != nil {
		t.Fatalf("StepUp: %v", err)
	}
	s, _ = e.st.Session(ctx, tok)
	if !e.st.Fresh(s) || !s.SteppedUp.Equal(e.clk.Now()) {
		t.Errorf("after StepUp: %+v", s)
	}
	e.clk.Add(2*time.Minute + time.Second)
	if s, _ := e.st.Session(ctx, tok); e.st.Fresh(s) {
		t.Errorf("2m1s after StepUp the session is fresh: %+v", s)
	}
	// The same code again (still within its skew), a wrong one: refused,
	// and with a third failure the lockout ends the session.
	e.clk.Add(-90 * time.Second)
	if err := e.st.StepUp(ctx, tok, code); err != operator.ErrStepUp {
		t.Errorf("StepUp(same code) = %v; want ErrStepUp", err)
	}
	if err := e.st.StepUp(ctx, "tsn_nonsense", code); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("StepUp(no session) = %v; want ErrNoSession", err)
	}
	e.clk.Add(90 * time.Second)
	for range 2 {
		if err := e.st.StepUp(ctx, tok, "12345x"); err != operator.ErrStepUp {
			t.Errorf("StepUp(wrong code) = %v; want ErrStepUp", err)
		}
	}
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("Session after a step-up lockout = %v; want ErrNoSession", err)
	}
	if _, _, err := e.st.SignIn(ctx, "alice", pwA, e.code(secret)); err != operator.ErrSignIn {
		t.Errorf("SignIn after a step-up lockout = %v; want ErrSignIn", err)
	}
	e.wantAudit(from,
		"stepup operator:alice alice",
		"stepup.failed operator:alice alice replayed_code",
		"stepup.failed operator:alice alice bad_code",
		"stepup.failed operator:alice alice bad_code",
		"signin.locked system alice",
		"signin.failed system alice locked",
	)
}

func TestDisable(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	secret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, secret)
	e.clk.Add(30 * time.Second)
	pending, err := e.st.Invite(ctx, "alice", "operator:carol")
	if err != nil {
		t.Fatal(err)
	}
	e.secret(pending)
	from := len(e.entries())
	if err := e.st.Disable(ctx, "alice", "admin-cli"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("Session after Disable = %v; want ErrNoSession", err)
	}
	if _, _, err := e.st.SignIn(ctx, "alice", pwA, e.code(secret)); err != operator.ErrSignIn {
		t.Errorf("SignIn disabled = %v; want ErrSignIn", err)
	}
	if _, err := e.st.BeginEnrol(ctx, pending, pwA); !errors.Is(err, operator.ErrInvite) {
		t.Errorf("BeginEnrol(invite from before Disable) = %v; want ErrInvite", err)
	}
	if _, err := e.st.Invite(ctx, "alice", "admin-cli"); !errors.Is(err, operator.ErrDisabled) {
		t.Errorf("Invite(disabled) = %v; want ErrDisabled", err)
	}
	if st, _ := e.st.List(ctx, []string{"alice"}); !st[0].Disabled || st[0].SessionActive || !st[0].Enrolled {
		t.Errorf("List = %+v", st[0])
	}
	if err := e.st.Disable(ctx, "mallory", "admin-cli"); !errors.Is(err, operator.ErrUnknown) {
		t.Errorf("Disable(unknown) = %v; want ErrUnknown", err)
	}
	if err := e.st.Enable(ctx, "alice", "operator:carol"); err != nil {
		t.Fatal(err)
	}
	e.clk.Add(30 * time.Second)
	e.signIn("alice", pwA, secret)
	e.wantAudit(from,
		"operator.disabled admin-cli alice",
		"signin.failed system alice disabled",
		"operator.enabled operator:carol alice",
		"signin operator:alice alice",
	)
	if en := e.entries()[from]; en.Detail["session_ended"] != "true" {
		t.Errorf("operator.disabled entry = %+v; want session_ended", en)
	}
}

func TestInvites(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{InviteTTL: 300 * time.Millisecond})
	old, _ := e.st.Invite(ctx, "bob", "admin-cli")
	time.Sleep(400 * time.Millisecond)
	if _, err := e.st.BeginEnrol(ctx, old, pwA); !errors.Is(err, operator.ErrInvite) {
		t.Errorf("BeginEnrol(expired invite) = %v; want ErrInvite", err)
	}
	first, _ := e.st.Invite(ctx, "bob", "admin-cli")
	second, _ := e.st.Invite(ctx, "bob", "admin-cli")
	e.secret(old, first, second)
	if _, err := e.st.BeginEnrol(ctx, first, pwA); !errors.Is(err, operator.ErrInvite) {
		t.Errorf("BeginEnrol(replaced invite) = %v; want ErrInvite", err)
	}
	if n := e.rdb.Exists(ctx, prefix+":{audit}:op:invite:"+sum(first)).Val(); n != 0 {
		t.Errorf("the replaced invite is still stored")
	}
	if _, err := e.st.BeginEnrol(ctx, second, pwA); err != nil {
		t.Errorf("BeginEnrol(newest invite) = %v", err)
	}
	// Only hashes of tokens are stored.
	keys := e.rdb.Keys(ctx, "*").Val()
	for _, tok := range []string{old, first, second} {
		for _, k := range keys {
			if strings.Contains(k, tok) {
				t.Errorf("key %q holds a token", k)
			}
		}
	}
	e.wantAudit(0,
		"operator.invited admin-cli bob",
		"operator.invited admin-cli bob",
		"operator.invited admin-cli bob",
		"operator.enrolment_begun operator:bob bob",
	)
	if en := e.entries()[0]; en.Detail["expires"] != e.clk.Now().Add(300*time.Millisecond).Format(time.RFC3339) {
		t.Errorf("invited entry = %+v", en)
	}
}

// Re-enrolment replaces the credentials and ends the session; until it is
// finished the old credentials keep working.
func TestReenrolment(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{})
	oldSecret := e.enrol("alice", pwA)
	tok, _ := e.signIn("alice", pwA, oldSecret)
	inv, _ := e.st.Invite(ctx, "alice", "admin-cli")
	const pwB = "a brand new passphrase"
	key, err := e.st.BeginEnrol(ctx, inv, pwB)
	if err != nil {
		t.Fatal(err)
	}
	e.secret(inv, pwB, key.Secret())
	if _, err := e.st.Session(ctx, tok); err != nil {
		t.Errorf("Session while re-enrolling: %v", err)
	}
	if err := e.st.FinishEnrol(ctx, inv, e.code(key.Secret())); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.Session(ctx, tok); !errors.Is(err, operator.ErrNoSession) {
		t.Errorf("Session after re-enrolment = %v; want ErrNoSession", err)
	}
	e.clk.Add(30 * time.Second)
	if _, _, err := e.st.SignIn(ctx, "alice", pwA, e.code(oldSecret)); err != operator.ErrSignIn {
		t.Errorf("SignIn with the old credentials = %v; want ErrSignIn", err)
	}
	e.signIn("alice", pwB, key.Secret())
	if en := e.entries(); en[len(en)-3].Kind != "operator.enrolled" || en[len(en)-3].Detail["reenrolment"] != "true" {
		t.Errorf("enrolled entry = %+v", en[len(en)-3])
	}
}

// An unknown id costs a password hash like a known one, so that timing does
// not tell who exists (the bound is loose: the machine is shared).
func TestUnknownIDCostsAHash(t *testing.T) {
	ctx := context.Background()
	e := newEnv(t, operator.Options{LockoutFailures: 100})
	secret := e.enrol("alice", pwA)
	fastest := func(id string) time.Duration {
		best := time.Hour
		for range 3 {
			start := time.Now()
			e.st.SignIn(ctx, id, "not the password", e.code(secret))
			best = min(best, time.Since(start))
		}
		return best
	}
	known, unknown := fastest("alice"), fastest("mallory")
	if unknown < known/2 {
		t.Errorf("sign-in as an unknown id took %v, as a known one %v", unknown, known)
	}
}
