package release

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/alert"
	"github.com/tocsin-alert/tocsin/audit"
)

// Store keeps drafts in Redis: one hash per draft (its JSON, state, digest
// and a revision that every change bumps) and an index by creation time.
type Store struct {
	rdb    redis.UniversalClient
	prefix string
	audit  audit.Keys
}

// NewStore keeps drafts under the Redis key prefix.
func NewStore(rdb redis.UniversalClient, prefix string) *Store {
	return &Store{rdb: rdb, prefix: prefix, audit: audit.KeysFor(prefix)}
}

// Drafts live in the audit's hash slot ({audit}), like operators' keys: every
// change to a draft appends its audit entry in the same script, which on
// Redis Cluster must touch one slot. Drafts are few; one slot holds them.
func (s *Store) key(id alert.ID) string { return s.prefix + ":{audit}:draft:" + string(id) }
func (s *Store) index() string          { return s.prefix + ":{audit}:drafts" }

// putScript writes a draft if its revision is still the one the change was
// decided on, and appends the change's audit entry in the same step.
var putScript = redis.NewScript(audit.Lua + `
local rev = redis.call('HGET', KEYS[1], 'rev') or '0'
if rev ~= ARGV[1] then return -1 end
redis.call('HSET', KEYS[1], 'doc', ARGV[2], 'state', ARGV[3], 'digest', ARGV[4], 'rev', tonumber(rev) + 1)
redis.call('ZADD', KEYS[2], ARGV[6], ARGV[7])
return tocsin_audit(KEYS[3], KEYS[4], ARGV[5])
`)

// Get reads a draft and the revision a change to it must name.
func (s *Store) Get(ctx context.Context, id alert.ID) (*Draft, int64, error) {
	v, err := s.rdb.HMGet(ctx, s.key(id), "doc", "rev").Result()
	if err != nil {
		return nil, 0, err
	}
	doc, _ := v[0].(string)
	if doc == "" {
		return nil, 0, ErrNotFound
	}
	var d Draft
	if err := json.Unmarshal([]byte(doc), &d); err != nil {
		return nil, 0, err
	}
	rev, _ := strconv.ParseInt(v[1].(string), 10, 64)
	return &d, rev, nil
}

// Put stores d if the draft is still at rev (0: must not exist yet), with
// its audit entry. ErrConflict if it changed meanwhile.
func (s *Store) Put(ctx context.Context, d *Draft, rev int64, e audit.Entry) error {
	d.Digest = d.Package.Digest()
	doc, err := json.Marshal(d)
	if err != nil {
		return err
	}
	keys := []string{s.key(d.ID), s.index(), s.audit.Seq, s.audit.Log}
	n, err := putScript.Run(ctx, s.rdb, keys, rev, doc, string(d.State), d.Digest, e.Body(), d.Created.UnixMilli(), string(d.ID)).Int64()
	if err != nil {
		return err
	}
	if n < 0 {
		return ErrConflict
	}
	return nil
}

// Change reads the draft, lets decide change it (returning the audit entry
// for the change) and stores the result; when another change won the race
// it reads again and decides again, so every decision is made on what is
// stored. decide's error is returned as is.
func (s *Store) Change(ctx context.Context, id alert.ID, decide func(d *Draft) (audit.Entry, error)) (*Draft, error) {
	for range 5 {
		d, rev, err := s.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		e, err := decide(d)
		if err != nil {
			return d, err
		}
		switch err := s.Put(ctx, d, rev, e); {
		case errors.Is(err, ErrConflict):
			continue
		case err != nil:
			return nil, err
		}
		return d, nil
	}
	return nil, ErrConflict
}

// List is the newest drafts first, at most limit.
func (s *Store) List(ctx context.Context, limit int) ([]*Draft, error) {
	ids, err := s.rdb.ZRevRange(ctx, s.index(), 0, int64(limit)-1).Result()
	if err != nil {
		return nil, err
	}
	var out []*Draft
	for _, id := range ids {
		d, _, err := s.Get(ctx, alert.ID(id))
		if errors.Is(err, ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}
