package audit

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
	"golang.org/x/mod/sumdb/note"

	"github.com/tocsin-alert/tocsin/internal/testenv"
)

// Golden entries; their bodies and chain hashes were computed outside Go:
//
//	h0=$(printf '%064d' 0)
//	h1=$( { echo -n $h0 | xxd -r -p; printf '%s' "1 $B1"; } | sha256sum | cut -c1-64)
//	h2=$( { echo -n $h1 | xxd -r -p; printf '%s' "2 $B2"; } | sha256sum | cut -c1-64)
//	…
var golden = []struct {
	e    Entry
	body string
	hash string
}{
	{
		Entry{Time: time.Date(2026, 1, 2, 4, 4, 5, 678_900_000, time.FixedZone("CET", 3600)), Kind: "signin.failed", Actor: "operator:alice",
			Detail: map[string]string{"reason": "bad password", "ip": "192.0.2.1"}},
		`{"time":"2026-01-02T03:04:05.678Z","kind":"signin.failed","actor":"operator:alice","detail":{"ip":"192.0.2.1","reason":"bad password"}}`,
		"0c66771cb7da35d7bb648e331bd1ead733d6ccbd91c7597862256bdf4dcffcd6",
	},
	{
		Entry{Time: time.Date(2026, 1, 2, 3, 4, 6, 0, time.UTC), Kind: "alert.accepted", Actor: "source:seismic", Subject: "a1"},
		`{"time":"2026-01-02T03:04:06Z","kind":"alert.accepted","actor":"source:seismic","subject":"a1"}`,
		"2653d63344d3257e808ebdef7d38b08a10c5029c7fc80649d00db480974ccd36",
	},
	{
		Entry{Time: time.Date(2026, 1, 2, 3, 5, 0, 1_000_000, time.UTC), Kind: "alert.approved", Actor: "operator:bob", Subject: "a1",
			Detail: map[string]string{"zones": "z1,z2"}},
		`{"time":"2026-01-02T03:05:00.001Z","kind":"alert.approved","actor":"operator:bob","subject":"a1","detail":{"zones":"z1,z2"}}`,
		"3cb69e8c691246f17e15b97784eb7a1992ec9b063bd4a952b3868e6cb0300629",
	},
}

func TestChainGolden(t *testing.T) {
	var h [32]byte
	for i, g := range golden {
		if got := g.e.Body(); got != g.body {
			t.Fatalf("entry %d body\n got %s\nwant %s", i+1, got, g.body)
		}
		h = Next(h, Line(int64(i+1), g.body))
		if got := hex.EncodeToString(h[:]); got != g.hash {
			t.Fatalf("entry %d hash %s, want %s", i+1, got, g.hash)
		}
	}
}

func TestChainParseLine(t *testing.T) {
	seq, body, err := ParseLine("17 {\"a\":1}")
	if err != nil || seq != 17 || body != `{"a":1}` {
		t.Fatalf("ParseLine = %d %q %v", seq, body, err)
	}
	for _, bad := range []string{"", "17", "17 ", "017 {}", "0 {}", "-1 {}", "x {}", " 1 {}", "1 {\n}", "99999999999999999999 {}"} {
		if _, _, err := ParseLine(bad); err == nil {
			t.Errorf("ParseLine(%q) accepted", bad)
		}
	}
}

func TestCheckpointSignOpen(t *testing.T) {
	skey, vkey := keys(t, "tocsin-test")
	_, otherV := keys(t, "tocsin-test") // same name, other key
	c := Checkpoint{Seq: 42, Hash: Next([32]byte{}, "x"), Time: time.Date(2026, 3, 4, 5, 6, 7, 0, time.UTC)}
	msg, err := SignCheckpoint(c, skey)
	if err != nil {
		t.Fatal(err)
	}
	if want := "tocsin-audit\n42\n" + "" + strings.Split(string(msg), "\n")[2] + "\n2026-03-04T05:06:07Z\n\n— tocsin-test "; !strings.HasPrefix(string(msg), want) {
		t.Fatalf("note:\n%s", msg)
	}
	got, err := OpenCheckpoint(msg, vkey)
	if err != nil {
		t.Fatal(err)
	}
	if got.Seq != 42 || got.Hash != c.Hash || !got.Time.Equal(c.Time) || got.Signer != "tocsin-test" {
		t.Fatalf("opened %+v", got)
	}
	if _, err := OpenCheckpoint(msg, otherV); err == nil || !strings.Contains(err.Error(), "unknown key") {
		t.Fatalf("other key: %v", err)
	}
	forged := strings.Replace(string(msg), "\n42\n", "\n43\n", 1)
	if _, err := OpenCheckpoint([]byte(forged), vkey); err == nil {
		t.Fatal("changed checkpoint text verified")
	}
	// The checkpoints file is notes one after another.
	c2 := c
	c2.Seq = 50
	msg2, _ := SignCheckpoint(c2, skey)
	notes := splitNotes(append(append([]byte{}, msg...), msg2...))
	if len(notes) != 2 || string(notes[0]) != string(msg) || string(notes[1]) != string(msg2) {
		t.Fatalf("splitNotes: %q", notes)
	}
}

func keys(t *testing.T, name string) (skey, vkey string) {
	t.Helper()
	skey, vkey, err := note.GenerateKey(rand.Reader, name)
	if err != nil {
		t.Fatal(err)
	}
	return skey, vkey
}

// env is a Redis, audit keys and a Keeper archiving into a temporary dir.
type env struct {
	t          *testing.T
	rdb        *redis.Client
	keys       Keys
	dir        string
	skey, vkey string
	k          *Keeper
}

func newEnv(t *testing.T) *env {
	t.Helper()
	srv := testenv.Redis(t, true)
	rdb := redis.NewClient(&redis.Options{Addr: srv.Addr()})
	t.Cleanup(func() { rdb.Close() })
	e := &env{t: t, rdb: rdb, keys: KeysFor("test"), dir: t.TempDir()}
	e.skey, e.vkey = keys(t, "tocsin-test")
	e.k = e.keeper(e.dir)
	return e
}

func (e *env) keeper(dir string) *Keeper {
	e.t.Helper()
	k, err := NewKeeper(KeeperOptions{Rdb: e.rdb, Keys: e.keys, Dir: dir, Signer: e.skey, Every: 10, Interval: time.Hour,
		Log: zerolog.New(zerolog.NewTestWriter(e.t))})
	if err != nil {
		e.t.Fatal(err)
	}
	return k
}

func (e *env) append(n int) {
	e.t.Helper()
	for i := 0; i < n; i++ {
		if _, err := Append(context.Background(), e.rdb, e.keys, Entry{Time: time.Now(), Kind: "test.entry", Actor: "system",
			Subject: fmt.Sprint(i), Detail: map[string]string{"n": fmt.Sprint(i)}}); err != nil {
			e.t.Fatal(err)
		}
	}
}

func (e *env) step() {
	e.t.Helper()
	if err := e.k.Step(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) tail() []string {
	e.t.Helper()
	l, err := e.rdb.LRange(context.Background(), e.keys.Log, 0, -1).Result()
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}

func (e *env) verify(checkpoint string) (Report, error) {
	return Verify(e.dir, e.tail(), checkpoint, e.vkey)
}

// archive is the records of the (single) segment, for tampering.
func (e *env) archive() []string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, segmentName(1)))
	if err != nil {
		e.t.Fatal(err)
	}
	return strings.SplitAfter(strings.TrimSuffix(string(b), "\n"), "\n")
}

func (e *env) rewrite(recs []string) {
	e.t.Helper()
	s := strings.Join(recs, "")
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	if err := os.WriteFile(filepath.Join(e.dir, segmentName(1)), []byte(s), 0o640); err != nil {
		e.t.Fatal(err)
	}
}

// rechain recomputes every stored hash, as someone without the signer key
// who rewrote entries would.
func rechain(recs []string) []string {
	var h [32]byte
	out := make([]string, len(recs))
	for i, r := range recs {
		line := strings.TrimSuffix(r[65:], "\n")
		h = Next(h, line)
		out[i] = formatRecord(h, line)
	}
	return out
}

// wantEntry checks that err names entry seq.
func wantEntry(t *testing.T, err error, seq int64, contains string) {
	t.Helper()
	var ee *EntryError
	if !errors.As(err, &ee) {
		t.Fatalf("want an error at entry %d, got %v", seq, err)
	}
	if ee.Seq != seq || !strings.Contains(ee.Error(), contains) {
		t.Fatalf("want entry %d (%q), got %v", seq, contains, err)
	}
	if !strings.HasPrefix(err.Error(), fmt.Sprintf("entry %d: ", seq)) {
		t.Fatalf("message %q does not start with the entry", err)
	}
}

// fifty archives 50 entries in five rounds (a checkpoint after each) and
// leaves 5 more in Redis.
func fifty(t *testing.T) *env {
	e := newEnv(t)
	for range 5 {
		e.append(10)
		e.step()
	}
	e.append(5)
	rep, err := e.verify("")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 55 || rep.Archived != 50 || rep.VerifiedTo != 50 || rep.Unanchored != 5 || rep.Checkpoints != 6 || rep.Signer != "tocsin-test" {
		t.Fatalf("report %+v", rep)
	}
	return e
}

func TestKeeperArchiveGolden(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	for i, g := range golden {
		n, err := Append(ctx, e.rdb, e.keys, g.e)
		if err != nil || n != int64(i+1) {
			t.Fatalf("Append = %d, %v", n, err)
		}
	}
	e.step()
	var want strings.Builder
	for i, g := range golden {
		fmt.Fprintf(&want, "%s %d %s\n", g.hash, i+1, g.body)
	}
	b, err := os.ReadFile(filepath.Join(e.dir, "audit-000001.log"))
	if err != nil || string(b) != want.String() {
		t.Fatalf("archive (%v):\n%s\nwant:\n%s", err, b, want.String())
	}
	if n := e.rdb.LLen(ctx, e.keys.Log).Val(); n != 0 {
		t.Fatalf("%d lines left in Redis", n)
	}
	latest, err := os.ReadFile(filepath.Join(e.dir, "latest.checkpoint"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := OpenCheckpoint(latest, e.vkey)
	if err != nil || c.Seq != 3 || HashString(c.Hash) != golden[2].hash {
		t.Fatalf("checkpoint %+v %v", c, err)
	}
	if !strings.Contains(string(latest), "\nPLaejGkSRvF+Fbl3hOt6GZLsmwY71KlSs4aObLAwBik=\n") {
		t.Fatalf("checkpoint hash not the base64 of the golden head:\n%s", latest)
	}
	rep, err := Verify(e.dir, nil, string(latest), e.vkey)
	if err != nil || rep.Entries != 3 || rep.VerifiedTo != 3 || rep.Unanchored != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestVerifyTamperArchive(t *testing.T) {
	t.Run("flip a byte", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()
		r := []byte(recs[16])
		r[strings.Index(recs[16], "test.entry")+9] ^= 1 // y → x
		recs[16] = string(r)
		e.rewrite(recs)
		_, err := e.verify("")
		wantEntry(t, err, 17, "stored chain hash")
	})
	t.Run("flip a byte and rechain", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()
		recs[16] = strings.Replace(recs[16], `"test.entry"`, `"test.entrz"`, 1)
		e.rewrite(rechain(recs))
		_, err := e.verify("")
		wantEntry(t, err, 20, "after entry 10 up to here") // the first checkpoint after it
	})
	t.Run("swap", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()
		recs[15], recs[16] = recs[16], recs[15]
		e.rewrite(recs)
		_, err := e.verify("")
		wantEntry(t, err, 16, "entry 17 comes in its place")
	})
	t.Run("delete", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()
		e.rewrite(append(recs[:16:16], recs[17:]...))
		_, err := e.verify("")
		wantEntry(t, err, 17, "missing")
	})
	t.Run("duplicate", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()
		e.rewrite(append(recs[:17:17], recs[16:]...))
		_, err := e.verify("")
		wantEntry(t, err, 18, "entry 17 comes again")
	})
	t.Run("truncate", func(t *testing.T) {
		e := fifty(t)
		e.rdb.Del(context.Background(), e.keys.Log) // the Redis tail too
		e.rewrite(e.archive()[:45])
		_, err := e.verify("")
		wantEntry(t, err, 46, "covers entries up to 50 but the chain ends at entry 45")
	})
	t.Run("truncate and forge a new head", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()[:48]
		for i := 40; i < 48; i++ {
			recs[i] = strings.Replace(recs[i], `"system"`, `"operator:mallory"`, 1)
		}
		e.rewrite(rechain(recs))
		e.rdb.Del(context.Background(), e.keys.Log)
		_, err := e.verify("")
		wantEntry(t, err, 49, "covers entries up to 50") // latest.checkpoint and checkpoints claim 50
		// Removing the checkpoints on the host does not help against one
		// kept elsewhere (syslog).
		latest, _ := os.ReadFile(filepath.Join(e.dir, latestFile))
		os.Remove(filepath.Join(e.dir, latestFile))
		os.Remove(filepath.Join(e.dir, checkpointsFile))
		_, err = e.verify(string(latest))
		wantEntry(t, err, 49, "covers entries up to 50")
		// Nor does forging a whole new checkpoint without the key.
		_, err = e.verify(strings.Replace(string(latest), "\n50\n", "\n48\n", 1))
		if err == nil || !strings.Contains(err.Error(), "given checkpoint") {
			t.Fatalf("forged checkpoint: %v", err)
		}
	})
	t.Run("rebuilt with another key", func(t *testing.T) {
		e := fifty(t)
		old, _ := os.ReadFile(filepath.Join(e.dir, latestFile))
		recs := e.archive()
		recs[4] = strings.Replace(recs[4], `"system"`, `"operator:mallory"`, 1)
		recs = rechain(recs)
		e.rewrite(recs)
		// The attacker signs new checkpoints with a key of the same name.
		evil, _ := keys(t, "tocsin-test")
		var h [32]byte
		hex.Decode(h[:], []byte(recs[49][:64]))
		msg, err := SignCheckpoint(Checkpoint{Seq: 50, Hash: h, Time: time.Now()}, evil)
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(e.dir, checkpointsFile), msg, 0o640)
		os.WriteFile(filepath.Join(e.dir, latestFile), msg, 0o640)
		_, err = e.verify(string(old))
		if err == nil || !strings.Contains(err.Error(), "unknown key") {
			t.Fatalf("rebuilt chain: %v", err)
		}
		// Without the forged files, the real checkpoint does not match.
		os.Remove(filepath.Join(e.dir, latestFile))
		os.Remove(filepath.Join(e.dir, checkpointsFile))
		_, err = e.verify(string(old))
		wantEntry(t, err, 50, "does not match the checkpoint")
	})
}

func TestVerifyTamperRedisTail(t *testing.T) {
	ctx := context.Background()
	t.Run("delete", func(t *testing.T) {
		e := fifty(t)
		e.rdb.LRem(ctx, e.keys.Log, 1, e.tail()[1]) // entry 52
		_, err := e.verify("")
		wantEntry(t, err, 52, "Redis log: missing")
		err = e.k.Step(ctx) // the keeper refuses too, keeping what it cannot archive
		wantEntry(t, err, 52, "missing")
		if n := e.rdb.LLen(ctx, e.keys.Log).Val(); n != 3 {
			t.Fatalf("%d lines left in Redis, want 3", n)
		}
		_, err = e.verify("")
		wantEntry(t, err, 52, "Redis log: missing")
	})
	t.Run("swap", func(t *testing.T) {
		e := fifty(t)
		tail := e.tail()
		e.rdb.LSet(ctx, e.keys.Log, 2, tail[3])
		e.rdb.LSet(ctx, e.keys.Log, 3, tail[2])
		_, err := e.verify("")
		wantEntry(t, err, 53, "entry 54 comes in its place")
		wantEntry(t, e.k.Step(ctx), 53, "missing")
	})
	t.Run("malformed", func(t *testing.T) {
		e := fifty(t)
		e.rdb.LSet(ctx, e.keys.Log, 0, strings.Replace(e.tail()[0], `"system"`, `"system" `, 1))
		_, err := e.verify("")
		wantEntry(t, err, 51, "canonical")
	})
	t.Run("differs from the archive", func(t *testing.T) {
		e := fifty(t)
		recs := e.archive()
		// A round that stopped before trimming leaves archived lines in
		// Redis; they must be the same.
		line := func(i int) string { return strings.TrimSuffix(recs[i][65:], "\n") }
		tail := append([]string{line(48), line(49)}, e.tail()...)
		if rep, err := Verify(e.dir, tail, "", e.vkey); err != nil || rep.Entries != 55 {
			t.Fatal(rep, err)
		}
		tail[1] = strings.Replace(tail[1], `"system"`, `"operator:x"`, 1)
		_, err := Verify(e.dir, tail, "", e.vkey)
		wantEntry(t, err, 50, "different entries 50")
	})
}

func TestKeeperConcurrentWriters(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	other := e.keeper(e.dir) // a second gateway instance sharing the directory
	stop := make(chan struct{})
	var keepers sync.WaitGroup
	for _, k := range []*Keeper{e.k, other} {
		keepers.Add(1)
		go func() { // exits when stop is closed
			defer keepers.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := k.Step(ctx); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	var writers sync.WaitGroup
	for w := range 8 {
		writers.Add(1)
		go func() { // exits after its 200 entries
			defer writers.Done()
			for i := range 200 {
				if _, err := Append(ctx, e.rdb, e.keys, Entry{Time: time.Now(), Kind: "test.entry", Actor: fmt.Sprintf("operator:%d", w), Subject: fmt.Sprint(i)}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	writers.Wait()
	close(stop)
	keepers.Wait()
	e.k.now = func() time.Time { return time.Now().Add(2 * time.Hour) } // checkpoint the rest
	e.step()
	rep, err := Verify(e.dir, e.tail(), "", e.vkey)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 1600 || rep.Archived != 1600 || rep.VerifiedTo != 1600 || rep.Unanchored != 0 {
		t.Fatalf("report %+v", rep)
	}
	seen := map[string]bool{}
	for _, r := range e.archive() {
		_, body, _ := ParseLine(strings.TrimSuffix(r[65:], "\n"))
		if seen[body] {
			t.Fatalf("archived twice: %s", body)
		}
		seen[body] = true
	}
}

func TestKeeperLock(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.append(5)
	// Another instance holds the lock: this one does nothing.
	e.rdb.Set(ctx, "test:{audit}:keeper", "someone else", time.Minute)
	e.step()
	if n := e.rdb.LLen(ctx, e.keys.Log).Val(); n != 5 {
		t.Fatalf("archived under another keeper's lock: %d lines left", n)
	}
	if _, err := os.Stat(filepath.Join(e.dir, segmentName(1))); !os.IsNotExist(err) {
		t.Fatalf("archive written under another keeper's lock: %v", err)
	}
	e.rdb.Del(ctx, "test:{audit}:keeper")
	e.step()
	if n := e.rdb.LLen(ctx, e.keys.Log).Val(); n != 0 {
		t.Fatalf("%d lines left", n)
	}
	if e.rdb.Exists(ctx, "test:{audit}:keeper").Val() != 0 {
		t.Fatal("lock not released")
	}
	// Two more keepers, each with a directory of its own, racing: neither
	// may start an archive in the middle of the chain (sharing a directory
	// is tested in TestKeeperConcurrentWriters).
	d1, d2 := t.TempDir(), t.TempDir()
	k1, k2 := e.keeper(d1), e.keeper(d2)
	e.append(3)
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, k := range []*Keeper{k1, k2} {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = k.Step(ctx) }() // one round
	}
	wg.Wait()
	total := 0
	for _, d := range []string{d1, d2} {
		if b, err := os.ReadFile(filepath.Join(d, segmentName(1))); err == nil {
			total += strings.Count(string(b), "\n")
		}
	}
	if total > 0 || e.rdb.LLen(ctx, e.keys.Log).Val() != 3 {
		t.Fatalf("archived %d lines into fresh directories (%v)", total, errs)
	}
	for _, err := range errs {
		if err != nil {
			wantEntry(t, err, 1, "missing: the Redis log goes on with entry 6")
		}
	}
	// Two keepers sharing the directory, racing round after round: every
	// entry is archived exactly once.
	k3 := e.keeper(e.dir)
	for round := range 20 {
		e.append(2)
		for i, k := range []*Keeper{e.k, k3} {
			wg.Add(1)
			go func() { defer wg.Done(); errs[i] = k.Step(ctx) }() // one round
		}
		wg.Wait()
		if errs[0] != nil || errs[1] != nil {
			t.Fatalf("round %d: %v", round, errs)
		}
	}
	e.step()
	rep, err := e.verify("")
	if err != nil || rep.Archived != 48 || rep.Entries != 48 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestKeeperRecovery(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.append(10)
	e.step()
	e.append(5)
	// A round archived 11–15 and stopped before saving the head and
	// trimming: the archive holds them, head.json and Redis do not know.
	recs := e.archive()
	var h [32]byte
	hex.Decode(h[:], []byte(recs[9][:64]))
	var add strings.Builder
	for _, l := range e.tail() {
		h = Next(h, l)
		add.WriteString(formatRecord(h, l))
	}
	f, _ := os.OpenFile(filepath.Join(e.dir, segmentName(1)), os.O_APPEND|os.O_WRONLY, 0)
	f.WriteString(add.String() + "ab12 torn") // and a torn record after them
	f.Close()
	e.append(2)
	e.step()
	rep, err := e.verify("")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Entries != 17 || rep.Archived != 17 || len(e.tail()) != 0 {
		t.Fatalf("report %+v, tail %d", rep, len(e.tail()))
	}
	// Redis restored from a backup: entry 17 again, but another one.
	e.rdb.Set(ctx, e.keys.Seq, 16, 0)
	e.append(1)
	wantEntry(t, e.k.Step(ctx), 17, "restored")
}

func TestKeeperSegments(t *testing.T) {
	old := segmentBytes
	segmentBytes = 1000
	t.Cleanup(func() { segmentBytes = old })
	e := newEnv(t)
	for range 6 {
		e.append(4)
		e.step()
	}
	segs, _ := segments(e.dir)
	if len(segs) < 3 {
		t.Fatalf("segments %v", segs)
	}
	rep, err := e.verify("")
	if err != nil || rep.Entries != 24 || rep.VerifiedTo != 16 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	// Lose head.json: the keeper rebuilds it from the archive.
	os.Remove(filepath.Join(e.dir, headFile))
	e.append(1)
	e.step()
	if rep, err := e.verify(""); err != nil || rep.Archived != 25 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if _, err := Verify(filepath.Join(e.dir, "typo"), nil, "", e.vkey); err == nil {
		t.Fatal("Verify of a missing directory succeeded")
	}
}

func TestVerifyKeyRotation(t *testing.T) {
	e := newEnv(t)
	e.append(10)
	e.step()
	oldV := e.vkey
	e.skey, e.vkey = keys(t, "tocsin-test-2")
	e.k = e.keeper(e.dir)
	e.append(10)
	e.step()
	if _, err := Verify(e.dir, nil, "", e.vkey); err == nil || !strings.Contains(err.Error(), "checkpoints note 1: checkpoint not signed by tocsin-test-2+") {
		t.Fatalf("new key only: %v", err)
	}
	rep, err := Verify(e.dir, nil, "", oldV+","+e.vkey)
	if err != nil || rep.VerifiedTo != 20 || rep.Signer != "tocsin-test-2" || rep.Checkpoints != 3 {
		t.Fatalf("both keys: %+v %v", rep, err)
	}
}

func TestKeeperRun(t *testing.T) {
	e := newEnv(t)
	k, err := NewKeeper(KeeperOptions{Rdb: e.rdb, Keys: e.keys, Dir: e.dir, Signer: e.skey, Poll: 10 * time.Millisecond,
		Syslog: true, Log: zerolog.New(zerolog.NewTestWriter(t))}) // syslog may be missing here: a warning, not an error
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- k.Run(ctx) }() // exits when ctx is cancelled
	e.append(7)
	deadline := time.Now().Add(10 * time.Second)
	for e.rdb.LLen(ctx, e.keys.Log).Val() > 0 || e.rdb.Get(ctx, e.keys.Seq).Val() != "7" {
		if time.Now().After(deadline) {
			t.Fatal("Run did not archive")
		}
		time.Sleep(10 * time.Millisecond)
	}
	e.append(2)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	// The last round archived and checkpointed everything.
	rep, err := e.verify("")
	if err != nil || rep.Entries != 9 || rep.VerifiedTo != 9 || rep.Unanchored != 0 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
}

func TestKeeperWithoutSigner(t *testing.T) {
	e := newEnv(t)
	k, err := NewKeeper(KeeperOptions{Rdb: e.rdb, Keys: e.keys, Dir: e.dir, Log: zerolog.New(zerolog.NewTestWriter(t))})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := NewKeeper(KeeperOptions{Rdb: e.rdb, Keys: e.keys, Dir: e.dir, Signer: "not a key"}); err == nil || strings.Contains(err.Error(), "not a key") {
		t.Fatalf("bad signer key: %v", err) // and the key is not echoed
	}
	e.append(3)
	if err := k.Step(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep, err := Verify(e.dir, nil, "", e.vkey)
	if err != nil || rep.Entries != 3 || rep.VerifiedTo != 0 || rep.Unanchored != 3 {
		t.Fatalf("Verify = %+v, %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, latestFile)); !os.IsNotExist(err) {
		t.Fatal("checkpoint without a signer")
	}
}
