package audit

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/syslog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"
)

// KeeperOptions configure a Keeper.
type KeeperOptions struct {
	// Rdb is the Redis holding the log.
	Rdb redis.UniversalClient
	// Keys are the audit keys (KeysFor(prefix)).
	Keys Keys
	// Dir holds the archive segments, head.json, the checkpoints file and
	// latest.checkpoint. It is created if missing. Every gateway instance
	// that runs a Keeper must see the same Dir (or only one instance runs a
	// Keeper): a Keeper whose archive does not continue where the Redis log
	// starts refuses to archive rather than lose entries.
	Dir string
	// Signer is the note signer key for checkpoints (tocsin audit keygen).
	// Without it the chain is archived but never checkpointed, which is
	// logged as a warning: without checkpoints the log is not tamper-evident.
	Signer string
	// Every is the number of archived entries after which a checkpoint is
	// signed; default 1000.
	Every int
	// Interval is the longest time archived entries stay without a
	// checkpoint; default 1m.
	Interval time.Duration
	// Poll is how often Run archives; default 5s.
	Poll time.Duration
	// Syslog also writes each checkpoint to the local syslog (facility
	// auth, tag tocsin-audit), from where it should be forwarded off the host.
	Syslog bool
	// Log receives the Keeper's messages.
	Log zerolog.Logger
}

// Keeper moves the audit log from Redis into the archive directory, extending
// the hash chain, and signs checkpoints of the chain's head. One round
// (Step) takes a Redis lock so that one gateway instance archives at a time,
// reads the Redis log, checks that its numbering continues the archive,
// appends the new entries to the archive and fsyncs it, persists the head,
// signs a checkpoint when due and finally trims exactly the archived lines
// from the Redis log.
type Keeper struct {
	o       KeeperOptions
	signer  note.Signer
	lockKey string
	now     func() time.Time

	mu      sync.Mutex // one round at a time
	syslog  io.WriteCloser
	warned  bool   // the syslog failure was logged
	lastErr string // the last round's error, logged once
}

// maxBatch is the most lines one round archives.
const maxBatch = 10000

// lockTTL bounds how long a crashed Keeper holds the lock.
var lockTTL = 30 * time.Second

// NewKeeper checks the options and fills in defaults.
func NewKeeper(o KeeperOptions) (*Keeper, error) {
	if o.Rdb == nil {
		return nil, errors.New("audit keeper: no Redis client")
	}
	if o.Keys.Log == "" || o.Keys.Seq == "" {
		return nil, errors.New("audit keeper: no keys")
	}
	if o.Dir == "" {
		return nil, errors.New("audit keeper: no archive directory")
	}
	if err := os.MkdirAll(o.Dir, 0o750); err != nil {
		return nil, fmt.Errorf("audit keeper: %w", err)
	}
	if o.Every <= 0 {
		o.Every = 1000
	}
	if o.Interval <= 0 {
		o.Interval = time.Minute
	}
	if o.Poll <= 0 {
		o.Poll = 5 * time.Second
	}
	k := &Keeper{o: o, lockKey: lockKey(o.Keys), now: time.Now}
	if o.Signer == "" {
		o.Log.Warn().Msg("No audit signer key: the audit log is archived but not checkpointed, so it is not tamper-evident")
	} else {
		s, err := note.NewSigner(o.Signer)
		if err != nil {
			return nil, errors.New("audit keeper: the signer key is not a valid note signer key")
		}
		k.signer = s
		o.Log.Info().Str("signer", s.Name()).Str("dir", o.Dir).Msg("Audit checkpoints will be signed")
	}
	if o.Syslog {
		w, err := syslog.New(syslog.LOG_NOTICE|syslog.LOG_AUTH, "tocsin-audit")
		if err != nil {
			k.warnSyslog(err)
		} else {
			k.syslog = w
		}
	}
	return k, nil
}

// lockKey is prefix:{audit}:keeper, next to the log in the same hash slot.
func lockKey(k Keys) string {
	if base, ok := strings.CutSuffix(k.Log, ":log"); ok {
		return base + ":keeper"
	}
	return k.Log + ":keeper"
}

func (k *Keeper) warnSyslog(err error) {
	if !k.warned {
		k.warned = true
		k.o.Log.Warn().Err(err).Msg("Audit checkpoints cannot be written to syslog; copy the checkpoints file off the host another way")
	}
}

// Run archives every Poll until ctx ends, then does a last round that
// checkpoints whatever was archived, so a clean stop leaves nothing
// unanchored. It returns nil when ctx ends; a failed round is logged and
// retried.
func (k *Keeper) Run(ctx context.Context) error {
	defer k.close()
	t := time.NewTicker(k.o.Poll)
	defer t.Stop()
	for {
		n, err := k.step(ctx, false)
		k.report(ctx, err)
		if n == maxBatch && err == nil && ctx.Err() == nil {
			continue // more waiting
		}
		select {
		case <-ctx.Done():
			fctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
			_, err := k.step(fctx, true)
			cancel()
			k.report(fctx, err)
			return nil
		case <-t.C:
		}
	}
}

// report logs a failed round, once while the same failure repeats.
func (k *Keeper) report(ctx context.Context, err error) {
	if err == nil {
		k.lastErr = ""
		return
	}
	if ctx.Err() != nil {
		return
	}
	if err.Error() == k.lastErr {
		k.o.Log.Debug().Err(err).Msg("Audit archiving still failing")
		return
	}
	k.lastErr = err.Error()
	k.o.Log.Error().Err(err).Msg("Audit archiving failed; the entries stay in Redis")
}

func (k *Keeper) close() {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.syslog != nil {
		k.syslog.Close()
		k.syslog = nil
	}
}

// Step does one round. It returns nil without doing anything when another
// Keeper holds the lock. An entry in the Redis log that does not continue the
// chain (malformed, missing, repeated) is an *EntryError; the entries before
// it are archived, it and everything after stay in Redis.
func (k *Keeper) Step(ctx context.Context) error {
	_, err := k.step(ctx, false)
	return err
}

var unlockScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
`)

// trimScript trims the archived lines only while the lock is still ours.
var trimScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('LTRIM', KEYS[2], tonumber(ARGV[2]), -1)
return 1
`)

// step is one round; force checkpoints anything not yet checkpointed. It
// returns the number of lines it read from Redis.
func (k *Keeper) step(ctx context.Context, force bool) (int, error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	var tok [16]byte
	rand.Read(tok[:])
	token := hex.EncodeToString(tok[:])
	ok, err := k.o.Rdb.SetNX(ctx, k.lockKey, token, lockTTL).Result()
	if err != nil {
		return 0, fmt.Errorf("audit keeper lock: %w", err)
	}
	if !ok {
		k.o.Log.Debug().Msg("Another audit keeper holds the lock")
		return 0, nil
	}
	defer unlockScript.Run(context.WithoutCancel(ctx), k.o.Rdb, []string{k.lockKey}, token)

	st, changed, err := k.load()
	if err != nil {
		return 0, err
	}
	lines, err := k.o.Rdb.LRange(ctx, k.o.Keys.Log, 0, maxBatch-1).Result()
	if err != nil {
		return 0, fmt.Errorf("audit keeper: read log: %w", err)
	}

	// Lines already archived (a round that stopped before trimming) come
	// first; they must be the archived lines, byte for byte.
	skip := 0
	var first int64
	for _, l := range lines {
		n, _, err := ParseLine(l)
		if err != nil || n > st.Seq || (skip > 0 && n != first+int64(skip)) {
			break
		}
		if skip == 0 {
			first = n
		}
		skip++
	}
	if skip > 0 {
		old, err := archivedLines(k.o.Dir, first, first+int64(skip)-1)
		if err != nil {
			return 0, err
		}
		for i, l := range lines[:skip] {
			if old[first+int64(i)] != l {
				return 0, entryErr(first+int64(i), "the Redis log holds a different entry %d than the archive (was Redis restored from an old backup?)", first+int64(i))
			}
		}
	}

	var buf strings.Builder
	var bad error
	h, seq := st.hash, st.Seq
	for _, l := range lines[skip:] {
		n, _, err := ParseLine(l)
		switch {
		case err != nil:
			bad = entryErr(seq+1, "malformed line in the Redis log: %v", err)
		case n <= seq:
			bad = entryErr(seq+1, "the Redis log repeats or reorders: entry %d comes after entry %d", n, seq)
		case n > seq+1:
			bad = entryErr(seq+1, "missing: the Redis log goes on with entry %d", n)
		}
		if bad != nil {
			break
		}
		h, seq = Next(h, l), n
		buf.WriteString(formatRecord(h, l))
	}
	archived := int(seq - st.Seq)

	if archived > 0 {
		if st.Segment == "" || st.Size >= segmentBytes {
			st.Segment, st.Size = segmentName(segmentNumber(st.Segment)+1), 0
		}
		if err := appendFileSync(k.o.Dir, st.Segment, []byte(buf.String())); err != nil {
			return 0, fmt.Errorf("audit keeper: archive: %w", err)
		}
		st.Seq, st.hash, st.Size = seq, h, st.Size+int64(buf.Len())
		changed = true
	}
	if k.signer != nil && st.Seq > st.CheckpointSeq &&
		(force || st.Seq-st.CheckpointSeq >= int64(k.o.Every) || k.now().Sub(st.CheckpointTime) >= k.o.Interval) {
		if err := k.checkpoint(&st); err != nil {
			return 0, err
		}
		changed = true
	}
	if changed {
		if err := k.saveHead(st); err != nil {
			return 0, err
		}
	}
	if trim := skip + archived; trim > 0 {
		ok, err := trimScript.Run(ctx, k.o.Rdb, []string{k.lockKey, k.o.Keys.Log}, token, trim).Int()
		if err != nil {
			return 0, fmt.Errorf("audit keeper: trim: %w", err)
		}
		if ok == 0 {
			return 0, fmt.Errorf("audit keeper: lost the lock before trimming %d archived lines (a round took over %v)", trim, lockTTL)
		}
		k.o.Log.Debug().Int("archived", archived).Int64("head", st.Seq).Msg("Audit entries archived")
	}
	return len(lines), bad
}

// checkpoint signs the head and writes it to the checkpoints file,
// latest.checkpoint and syslog.
func (k *Keeper) checkpoint(st *state) error {
	c := Checkpoint{Seq: st.Seq, Hash: st.hash, Time: k.now().UTC().Truncate(time.Second)}
	msg, err := signCheckpoint(c, k.signer)
	if err != nil {
		return fmt.Errorf("audit keeper: sign checkpoint: %w", err)
	}
	if err := appendFileSync(k.o.Dir, checkpointsFile, msg); err != nil {
		return fmt.Errorf("audit keeper: checkpoint: %w", err)
	}
	if err := writeFileAtomic(k.o.Dir, latestFile, msg); err != nil {
		return fmt.Errorf("audit keeper: checkpoint: %w", err)
	}
	st.CheckpointSeq, st.CheckpointTime = c.Seq, c.Time
	hash := base64.StdEncoding.EncodeToString(c.Hash[:])
	if k.o.Syslog && k.syslog != nil {
		line := fmt.Sprintf("checkpoint seq=%d hash=%s time=%s signer=%s note=%s",
			c.Seq, hash, c.Time.Format(time.RFC3339), k.signer.Name(), base64.StdEncoding.EncodeToString(msg))
		if _, err := io.WriteString(k.syslog, line); err != nil {
			k.warnSyslog(err)
		}
	}
	k.o.Log.Info().Int64("seq", c.Seq).Str("hash", hash).Msg("Audit checkpoint signed")
	return nil
}

// state is the archive's head: the last archived entry, the chain hash after
// it, where the archive ends and the last checkpoint. It is kept in head.json
// but the archive itself is the truth: load replays anything the archive
// holds beyond head.json.
type state struct {
	Seq            int64     `json:"seq"`
	Hash           string    `json:"hash"`
	Segment        string    `json:"segment,omitempty"`
	Size           int64     `json:"size"`
	CheckpointSeq  int64     `json:"checkpoint_seq"`
	CheckpointTime time.Time `json:"checkpoint_time"`

	hash [32]byte
}

func (k *Keeper) saveHead(st state) error {
	st.Hash = hex.EncodeToString(st.hash[:])
	b, _ := json.MarshalIndent(st, "", "  ")
	if err := writeFileAtomic(k.o.Dir, headFile, append(b, '\n')); err != nil {
		return fmt.Errorf("audit keeper: head: %w", err)
	}
	return nil
}

func segmentNumber(name string) int {
	n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimPrefix(name, "audit-"), ".log"))
	return n
}

// load reads head.json and replays whatever the archive holds beyond it (a
// round that stopped between archiving and saving the head), cutting off a
// torn last record that was never acknowledged. changed reports a replay.
func (k *Keeper) load() (st state, changed bool, err error) {
	dir := k.o.Dir
	b, err := os.ReadFile(filepath.Join(dir, headFile))
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &st); err != nil {
			return st, false, fmt.Errorf("audit keeper: %s: %w", headFile, err)
		}
		if _, err := hex.Decode(st.hash[:], []byte(st.Hash)); err != nil || len(st.Hash) != 64 {
			return st, false, fmt.Errorf("audit keeper: %s: bad hash", headFile)
		}
	case !os.IsNotExist(err):
		return st, false, fmt.Errorf("audit keeper: %w", err)
	}
	segs, err := segments(dir)
	if err != nil {
		return st, false, fmt.Errorf("audit keeper: %w", err)
	}
	start := 0
	if st.Segment != "" {
		start = -1
		for i, s := range segs {
			if s == st.Segment {
				start = i
			}
		}
		if start < 0 {
			return st, false, fmt.Errorf("audit keeper: archive segment %s named in %s is missing", st.Segment, headFile)
		}
	}
	replayed := 0
	for i := start; i < len(segs); i++ {
		name := segs[i]
		var off int64
		if name == st.Segment {
			off = st.Size
		}
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return st, false, fmt.Errorf("audit keeper: %w", err)
		}
		fi, err := f.Stat()
		if err == nil && fi.Size() < off {
			err = fmt.Errorf("archive segment %s is %d bytes, shorter than the %d bytes %s records", name, fi.Size(), off, headFile)
		}
		if err == nil {
			_, err = f.Seek(off, io.SeekStart)
		}
		if err == nil {
			err = readRecords(f, func(text string, n int64) error {
				r, err := parseRecord(text)
				if err != nil {
					return entryErr(st.Seq+1, "%s: %v", name, err)
				}
				seq, _, err := ParseLine(r.line)
				if err != nil {
					return entryErr(st.Seq+1, "%s: %v", name, err)
				}
				if seq != st.Seq+1 {
					return entryErr(st.Seq+1, "%s: archive continues with entry %d", name, seq)
				}
				if h := Next(st.hash, r.line); h != r.hash {
					return entryErr(seq, "%s: stored hash does not match the chain", name)
				}
				st.Seq, st.hash, st.Segment, st.Size = seq, r.hash, name, off+n
				off += n
				replayed++
				return nil
			})
		}
		if err == errPartial && i == len(segs)-1 {
			// A write torn by a crash, never acknowledged: its lines are
			// still in Redis.
			k.o.Log.Warn().Str("segment", name).Int64("size", off).Msg("Cutting a torn last record off the audit archive")
			err = os.Truncate(filepath.Join(dir, name), off)
			st.Segment, st.Size = name, off
			changed = true
		}
		f.Close()
		if err != nil {
			return st, false, fmt.Errorf("audit keeper: %w", err)
		}
	}
	if replayed > 0 {
		k.o.Log.Warn().Int("entries", replayed).Int64("head", st.Seq).Msg("Audit archive held entries beyond head.json (an interrupted round); replayed them")
		changed = true
	}
	return st, changed, nil
}

// archivedLines returns the archived lines of entries from..to.
func archivedLines(dir string, from, to int64) (map[int64]string, error) {
	segs, err := segments(dir)
	if err != nil {
		return nil, err
	}
	// Find the last segment that starts at or before from.
	start := 0
	for i := len(segs) - 1; i >= 0; i-- {
		seq, err := firstSeq(filepath.Join(dir, segs[i]))
		if err != nil {
			return nil, err
		}
		if seq <= from {
			start = i
			break
		}
	}
	out := make(map[int64]string, to-from+1)
	for _, name := range segs[start:] {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return nil, err
		}
		err = readRecords(f, func(text string, _ int64) error {
			r, err := parseRecord(text)
			if err != nil {
				return err
			}
			if seq, _, err := ParseLine(r.line); err == nil && seq >= from && seq <= to {
				out[seq] = r.line
			}
			return nil
		})
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("audit keeper: %s: %w", name, err)
		}
	}
	return out, nil
}

// firstSeq is the number of a segment's first entry.
func firstSeq(path string) (int64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var seq int64
	errStop := errors.New("stop")
	err = readRecords(f, func(text string, _ int64) error {
		r, err := parseRecord(text)
		if err != nil {
			return err
		}
		seq, _, err = ParseLine(r.line)
		if err != nil {
			return err
		}
		return errStop
	})
	if err != nil && err != errStop {
		return 0, fmt.Errorf("%s: %w", filepath.Base(path), err)
	}
	return seq, nil
}
