package operator

import (
	"context"
	"errors"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// KEYS: seq, log, rec, old invite, new invite.
// ARGV: old invite sum, new invite sum, id, ttl ms, body.
var inviteScript = script(`
if (redis.call('HGET', KEYS[3], 'invite') or '') ~= ARGV[1] then return 'stale' end
if redis.call('HGET', KEYS[3], 'disabled') == '1' then return 'disabled' end
redis.call('DEL', KEYS[4])
redis.call('HSET', KEYS[5], 'id', ARGV[3])
redis.call('PEXPIRE', KEYS[5], ARGV[4])
redis.call('HSET', KEYS[3], 'invite', ARGV[2])
tocsin_audit(KEYS[1], KEYS[2], ARGV[5])
return 'ok'
`)

// Invite makes an enrolment token for operator id, valid for InviteTTL; it
// voids the operator's previous invite. The operator keeps any credentials
// they have until they finish enrolling with the new one. It refuses ids the
// configuration does not know (ErrUnknown) and disabled operators
// (ErrDisabled: Enable them first). actor is who invites ("operator:ID",
// "admin-cli").
func (st *Store) Invite(ctx context.Context, id, actor string) (token string, err error) {
	if !st.known(id) {
		return "", ErrUnknown
	}
	token = newToken(invitePrefix)
	sum, _ := tokenSum(invitePrefix, token)
	ttl := st.opts.InviteTTL
	err = retry(func() error {
		r, err := st.read(ctx, id)
		if err != nil {
			return err
		}
		if r.disabled {
			return ErrDisabled
		}
		body := st.entry("operator.invited", actor, id, map[string]string{
			"expires": st.opts.Now().Add(ttl).UTC().Format(time.RFC3339), "reenrolment": strconv.FormatBool(r.enrolled)})
		res, err := inviteScript.Run(ctx, st.rdb,
			[]string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.invite(r.invSum), st.k.invite(sum)},
			r.invSum, sum, id, msDur(ttl), body).Text()
		return outcome(res, err)
	})
	if err != nil {
		return "", err
	}
	return token, nil
}

// outcome turns a script's answer into an error.
func outcome(res string, err error) error {
	if err != nil {
		return err
	}
	switch res {
	case "ok":
		return nil
	case "stale":
		return errStale
	case "disabled":
		return ErrDisabled
	case "gone":
		return ErrInvite
	}
	return errors.New("operator: unexpected script answer " + res)
}

// KEYS: seq, log, rec, session, invite.
// ARGV: session sum, invite sum, body if a session ended, body if not.
var disableScript = script(`
if (redis.call('HGET', KEYS[3], 'session') or '') ~= ARGV[1] or (redis.call('HGET', KEYS[3], 'invite') or '') ~= ARGV[2] then return 'stale' end
redis.call('HSET', KEYS[3], 'disabled', '1')
local ended = redis.call('DEL', KEYS[4])
redis.call('DEL', KEYS[5])
redis.call('HDEL', KEYS[3], 'session', 'invite')
tocsin_audit(KEYS[1], KEYS[2], ended == 1 and ARGV[3] or ARGV[4])
return 'ok'
`)

// Disable refuses operator id every sign-in from now on, ends their session
// and voids their invite; their credentials stay for when they are enabled
// again. actor is who disables.
func (st *Store) Disable(ctx context.Context, id, actor string) error {
	if !st.known(id) {
		return ErrUnknown
	}
	return retry(func() error {
		r, err := st.read(ctx, id)
		if err != nil {
			return err
		}
		with := st.entry("operator.disabled", actor, id, map[string]string{"session_ended": "true"})
		without := st.entry("operator.disabled", actor, id, nil)
		res, err := disableScript.Run(ctx, st.rdb,
			[]string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.session(r.sessionSum), st.k.invite(r.invSum)},
			r.sessionSum, r.invSum, with, without).Text()
		return outcome(res, err)
	})
}

// KEYS: seq, log, rec, fail, lock. ARGV: body.
var enableScript = script(`
redis.call('HDEL', KEYS[3], 'disabled')
redis.call('DEL', KEYS[4], KEYS[5])
tocsin_audit(KEYS[1], KEYS[2], ARGV[1])
return 'ok'
`)

// Enable lets a disabled operator sign in again, and lifts a lockout early.
func (st *Store) Enable(ctx context.Context, id, actor string) error {
	if !st.known(id) {
		return ErrUnknown
	}
	res, err := enableScript.Run(ctx, st.rdb, []string{st.audit.Seq, st.audit.Log, st.k.rec(id), st.k.fail(id), st.k.lock(id)},
		st.entry("operator.enabled", actor, id, nil)).Text()
	return outcome(res, err)
}

// List tells the status of each of ids, in order (whether or not the
// configuration knows them).
func (st *Store) List(ctx context.Context, ids []string) ([]Status, error) {
	now := st.opts.Now()
	pipe := st.rdb.Pipeline()
	recs := make([]*redis.SliceCmd, len(ids))
	locks := make([]*redis.StringCmd, len(ids))
	for i, id := range ids {
		recs[i] = pipe.HMGet(ctx, st.k.rec(id), recFields...)
		locks[i] = pipe.Get(ctx, st.k.lock(id))
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	out := make([]Status, len(ids))
	sess := make([]*redis.SliceCmd, len(ids))
	pipe = st.rdb.Pipeline()
	for i, id := range ids {
		r := recordFrom(recs[i].Val())
		out[i] = Status{ID: id, Enrolled: r.enrolled, Disabled: r.disabled, LastSignIn: r.lastSignIn}
		if v, err := locks[i].Int64(); err == nil {
			out[i].Locked = time.UnixMilli(v).After(now)
		}
		if r.sessionSum != "" {
			sess[i] = pipe.HMGet(ctx, st.k.session(r.sessionSum), sessionFields...)
		}
	}
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return nil, err
	}
	for i := range ids {
		if sess[i] != nil {
			s := sessionFrom(sess[i].Val())
			out[i].SessionActive = s != nil && !out[i].Disabled && st.expired(s, now) == ""
		}
	}
	return out, nil
}
