package operator

import (
	"context"
	"errors"
	"strconv"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"
	"github.com/redis/go-redis/v9"
)

// invitation is an invite as read.
type invitation struct {
	sum, id  string
	totp, pw string // pending, set by BeginEnrol
	r        *record
}

// invitation reads the invite of token and its operator's record.
func (st *Store) invitation(ctx context.Context, token string) (*invitation, error) {
	sum, ok := tokenSum(invitePrefix, token)
	if !ok {
		return nil, ErrInvite
	}
	v, err := st.rdb.HMGet(ctx, st.k.invite(sum), "id", "totp", "pw").Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	str := func(i int) string { s, _ := v[i].(string); return s }
	inv := &invitation{sum: sum, id: str(0), totp: str(1), pw: str(2)}
	if inv.id == "" || !st.known(inv.id) {
		return nil, ErrInvite
	}
	if inv.r, err = st.read(ctx, inv.id); err != nil {
		return nil, err
	}
	if inv.r.invSum != sum {
		return nil, ErrInvite // replaced by a newer invite
	}
	if inv.r.disabled {
		return nil, ErrDisabled
	}
	return inv, nil
}

// KEYS: seq, log, rec, invite. ARGV: invite sum, totp secret, password hash, body.
var beginScript = script(`
if redis.call('EXISTS', KEYS[4]) == 0 or (redis.call('HGET', KEYS[3], 'invite') or '') ~= ARGV[1] then return 'gone' end
if redis.call('HGET', KEYS[3], 'disabled') == '1' then return 'disabled' end
redis.call('HSET', KEYS[4], 'totp', ARGV[2], 'pw', ARGV[3])
tocsin_audit(KEYS[1], KEYS[2], ARGV[4])
return 'ok'
`)

// BeginEnrol is enrolment's first step: it checks the invite and the
// password rules, and makes a new TOTP secret for the person to put into
// their authenticator app (key.URL() as a QR code, or key.Secret()). Nothing
// changes for sign-in until FinishEnrol; calling BeginEnrol again starts over
// with a new secret.
func (st *Store) BeginEnrol(ctx context.Context, token, password string) (*otp.Key, error) {
	inv, err := st.invitation(ctx, token)
	if err != nil {
		return nil, err
	}
	if err := checkPassword(password); err != nil {
		return nil, err
	}
	key, err := totp.Generate(totp.GenerateOpts{Issuer: st.opts.Issuer, AccountName: inv.id,
		Period: totpPeriod, SecretSize: 20, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, err
	}
	phc, err := hashPassword(ctx, password)
	if err != nil {
		return nil, err
	}
	res, err := beginScript.Run(ctx, st.rdb, []string{st.audit.Seq, st.audit.Log, st.k.rec(inv.id), st.k.invite(inv.sum)},
		inv.sum, key.Secret(), phc, st.entry("operator.enrolment_begun", actorOf(inv.id), inv.id, nil)).Text()
	if err := outcome(res, err); err != nil {
		return nil, err
	}
	return key, nil
}

// KEYS: seq, log, rec, invite, old session, fail, lock.
// ARGV: invite sum, old session sum, password hash, totp secret, step, now ms, body.
var finishScript = script(`
if redis.call('HGET', KEYS[4], 'totp') ~= ARGV[4] or (redis.call('HGET', KEYS[3], 'invite') or '') ~= ARGV[1] then return 'gone' end
if (redis.call('HGET', KEYS[3], 'session') or '') ~= ARGV[2] then return 'stale' end
if redis.call('HGET', KEYS[3], 'disabled') == '1' then return 'disabled' end
redis.call('DEL', KEYS[4], KEYS[5], KEYS[6], KEYS[7], KEYS[8])
redis.call('HDEL', KEYS[3], 'invite', 'session')
redis.call('HSET', KEYS[3], 'pw', ARGV[3], 'totp', ARGV[4], 'step', ARGV[5], 'enrolled', ARGV[6])
tocsin_audit(KEYS[1], KEYS[2], ARGV[7])
return 'ok'
`)

// FinishEnrol is enrolment's second step: code, from the authenticator app,
// proves the person holds the secret BeginEnrol made. Their password and
// secret then replace any earlier ones, their security keys are dropped
// (re-enrolment is how a lost key is revoked), their session (if any) ends, a
// lockout is lifted, and the invite is used up. The code cannot be used
// again to sign in.
func (st *Store) FinishEnrol(ctx context.Context, token, code string) error {
	return retry(func() error {
		inv, err := st.invitation(ctx, token)
		if err != nil {
			return err
		}
		if inv.totp == "" || inv.pw == "" {
			return ErrNotBegun
		}
		step, ok := matchCode(inv.totp, code, st.opts.Now())
		if !ok {
			return ErrCode
		}
		body := st.entry("operator.enrolled", actorOf(inv.id), inv.id, map[string]string{"reenrolment": strconv.FormatBool(inv.r.enrolled)})
		res, err := finishScript.Run(ctx, st.rdb,
			[]string{st.audit.Seq, st.audit.Log, st.k.rec(inv.id), st.k.invite(inv.sum), st.k.session(inv.r.sessionSum), st.k.fail(inv.id), st.k.lock(inv.id),
				st.k.webauthn(inv.id)},
			inv.sum, inv.r.sessionSum, inv.pw, inv.totp, step, ms(st.opts.Now()), body).Text()
		return outcome(res, err)
	})
}
