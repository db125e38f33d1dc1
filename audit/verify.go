package audit

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// Report is what Verify found.
type Report struct {
	// Entries is the number of entries replayed, archive and Redis tail.
	Entries int64
	// Archived is how many of them are in the archive directory.
	Archived int64
	// Head is the chain hash after the last entry.
	Head [32]byte
	// Checkpoints is the number of valid checkpoints checked.
	Checkpoints int
	// VerifiedTo is the entry the latest valid checkpoint covers (0: none).
	VerifiedTo int64
	// CheckpointTime is when that checkpoint was signed.
	CheckpointTime time.Time
	// Signer is the name of the key that signed it.
	Signer string
	// Unanchored is the number of entries after VerifiedTo: intact as far
	// as the chain can tell, but no signature vouches for them yet.
	Unanchored int64
}

// Verify replays the whole audit chain from entry 1: the archive segments in
// dir, then tail, the lines still in the Redis log (read from Redis before
// the directory, so that lines archived meanwhile show up in both; those
// must be identical). It checks that the entries are numbered 1, 2, … without
// gap, repeat or reordering, that each body is the canonical JSON of an
// Entry, that each archived entry's stored hash is the recomputed chain hash,
// and that every checkpoint — checkpoint (note text; may be empty), the
// checkpoints file and latest.checkpoint in dir — is signed by verifierKey
// and matches the recomputed chain at its entry and that the chain reaches
// it. verifierKey may list several keys separated by commas (a rotation). The error names the first bad entry ("entry 17: …") as an *EntryError,
// or the bad checkpoint.
func Verify(dir string, tail []string, checkpoint string, verifierKey string) (Report, error) {
	var rep Report
	if fi, err := os.Stat(dir); err != nil || !fi.IsDir() {
		return rep, fmt.Errorf("archive directory %s: not a directory (%v)", dir, err)
	}
	cps, err := loadCheckpoints(dir, checkpoint, verifierKey)
	if err != nil {
		return rep, err
	}
	rep.Checkpoints = len(cps)
	bySeq := make(map[int64][]Checkpoint, len(cps))
	for _, c := range cps {
		bySeq[c.Seq] = append(bySeq[c.Seq], c)
	}

	// The chain replay: expected is the next entry's number, h the hash
	// after the entry before it, anchored the last checkpointed entry.
	var h [32]byte
	expected := int64(1)
	var anchored int64
	check := func(seq int64) error {
		for _, c := range bySeq[seq] {
			if c.Hash != h {
				return entryErr(seq, "the chain does not match the checkpoint signed at %s by %s: an entry after entry %d up to here was changed or removed, or the chain rebuilt",
					c.Time.Format(time.RFC3339), c.Signer, anchored)
			}
			anchored = seq
			if seq >= rep.VerifiedTo {
				rep.VerifiedTo, rep.CheckpointTime, rep.Signer = seq, c.Time, c.Signer
			}
		}
		return nil
	}
	if err := check(0); err != nil {
		return rep, err
	}
	// next takes the line of the next entry in the chain; where says where
	// it was found, for the message.
	next := func(line, where string) error {
		seq, body, err := ParseLine(line)
		switch {
		case err != nil:
			return entryErr(expected, "%s: %v", where, err)
		case seq < expected:
			return entryErr(expected, "%s: out of order: entry %d comes again after entry %d", where, seq, expected-1)
		case seq > expected:
			return entryErr(expected, "%s: missing or out of order: entry %d comes in its place", where, seq)
		}
		if err := canonical(body); err != nil {
			return entryErr(seq, "%s: %v", where, err)
		}
		h = Next(h, line)
		expected++
		return check(seq)
	}

	var tailFirst int64 = -1
	if len(tail) > 0 {
		if s, _, err := ParseLine(tail[0]); err == nil {
			tailFirst = s
		}
	}
	overlap := map[int64]string{}

	segs, err := segments(dir)
	if err != nil {
		return rep, err
	}
	for _, name := range segs {
		f, err := os.Open(filepath.Join(dir, name))
		if err != nil {
			return rep, err
		}
		err = readRecords(f, func(text string, _ int64) error {
			r, err := parseRecord(text)
			if err != nil {
				return entryErr(expected, "%s: %v", name, err)
			}
			if err := next(r.line, name); err != nil {
				return err
			}
			seq := expected - 1
			if h != r.hash {
				return entryErr(seq, "%s: the entry does not match its stored chain hash: it (or, if its hash was recomputed too, the entry before) was changed after archiving", name)
			}
			if tailFirst > 0 && seq >= tailFirst {
				overlap[seq] = r.line
			}
			return nil
		})
		f.Close()
		if errors.Is(err, errPartial) {
			err = entryErr(expected, "%s: the archive ends in a partial record", name)
		}
		if err != nil {
			return rep, err
		}
	}
	rep.Archived = expected - 1

	for i, line := range tail {
		if seq, _, err := ParseLine(line); err == nil && seq <= rep.Archived && tailFirst > 0 && seq == tailFirst+int64(i) {
			if overlap[seq] != line {
				return rep, entryErr(seq, "the Redis log and the archive hold different entries %d", seq)
			}
			continue
		}
		if err := next(line, "Redis log"); err != nil {
			return rep, err
		}
	}
	rep.Entries = expected - 1
	rep.Head = h
	for _, c := range cps {
		if c.Seq > rep.Entries {
			return rep, entryErr(rep.Entries+1, "missing: the checkpoint signed at %s by %s covers entries up to %d but the chain ends at entry %d",
				c.Time.Format(time.RFC3339), c.Signer, c.Seq, rep.Entries)
		}
	}
	rep.Unanchored = rep.Entries - rep.VerifiedTo
	return rep, nil
}

// canonical checks that body is the canonical JSON of an Entry (Entry.Body).
func canonical(body string) error {
	var e Entry
	if err := json.Unmarshal([]byte(body), &e); err != nil {
		return fmt.Errorf("the body is not an entry: %v", err)
	}
	if e.Body() != body {
		return errors.New("the body is not in canonical form")
	}
	return nil
}

// loadCheckpoints opens every checkpoint: the checkpoints file (in order,
// never going back), latest.checkpoint and the given one.
func loadCheckpoints(dir, given, verifierKey string) ([]Checkpoint, error) {
	type source struct {
		name string
		msg  []byte
	}
	var srcs []source
	b, err := os.ReadFile(filepath.Join(dir, checkpointsFile))
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for i, n := range splitNotes(b) {
		srcs = append(srcs, source{fmt.Sprintf("%s note %d", checkpointsFile, i+1), n})
	}
	fromFile := len(srcs)
	if b, err := os.ReadFile(filepath.Join(dir, latestFile)); err == nil {
		srcs = append(srcs, source{latestFile, b})
	} else if !os.IsNotExist(err) {
		return nil, err
	}
	if given != "" {
		srcs = append(srcs, source{"the given checkpoint", []byte(given)})
	}
	if len(srcs) == 0 {
		return nil, nil
	}
	if verifierKey == "" {
		return nil, errors.New("there are checkpoints but no verifier key to check them with")
	}
	v, err := verifiers(verifierKey)
	if err != nil {
		return nil, err
	}
	var cps []Checkpoint
	for i, s := range srcs {
		c, err := openCheckpoint(s.msg, v)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", s.name, err)
		}
		if i > 0 && i < fromFile {
			if p := cps[i-1]; c.Seq < p.Seq || c.Time.Before(p.Time) {
				return nil, fmt.Errorf("%s: goes back from entry %d at %s to entry %d at %s", s.name,
					p.Seq, p.Time.Format(time.RFC3339), c.Seq, c.Time.Format(time.RFC3339))
			}
		}
		cps = append(cps, c)
	}
	return cps, nil
}

// HashString is a chain hash in hex, as the archive stores it.
func HashString(h [32]byte) string { return hex.EncodeToString(h[:]) }
