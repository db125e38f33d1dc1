package audit

import (
	"bufio"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

// The archive is a directory of append-only segment files, audit-000001.log,
// audit-000002.log, …, read in name order. Each entry is one record
//
//	<hex of h_i> <seq> <body>\n
//
// that is, the chain hash after the entry, a space and the entry's line. The
// stored hash lets Verify name an entry whose line was changed without the
// chain being recomputed; a recomputed chain is caught by the checkpoints.
const (
	segmentPattern  = "audit-*.log"
	headFile        = "head.json"
	checkpointsFile = "checkpoints"
	latestFile      = "latest.checkpoint"
)

// segmentBytes is the size after which the Keeper starts a new segment.
var segmentBytes int64 = 64 << 20

func segmentName(n int) string { return fmt.Sprintf("audit-%06d.log", n) }

// segments lists the archive's segment files in order.
func segments(dir string) ([]string, error) {
	m, err := filepath.Glob(filepath.Join(dir, segmentPattern))
	if err != nil {
		return nil, err
	}
	names := make([]string, len(m))
	for i, p := range m {
		names[i] = filepath.Base(p)
	}
	sort.Strings(names)
	return names, nil
}

// record is one archived entry.
type record struct {
	hash [32]byte
	line string
}

func formatRecord(h [32]byte, line string) string {
	return hex.EncodeToString(h[:]) + " " + line + "\n"
}

// parseRecord splits an archive record (without its newline).
func parseRecord(s string) (record, error) {
	var r record
	hx, line, ok := strings.Cut(s, " ")
	if !ok || len(hx) != 64 {
		return r, errors.New("archive record does not start with a hash")
	}
	if _, err := hex.Decode(r.hash[:], []byte(hx)); err != nil {
		return r, errors.New("archive record does not start with a hash")
	}
	r.line = line
	return r, nil
}

// errPartial is returned by readRecords for a last record without newline.
var errPartial = errors.New("partial record")

// readRecords calls fn for each record of r (from its current position) with
// the record's text (without newline) and its length in bytes including the
// newline. A last record without newline gives errPartial.
func readRecords(r io.Reader, fn func(text string, n int64) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for {
		s, err := br.ReadString('\n')
		if err == io.EOF {
			if s != "" {
				return errPartial
			}
			return nil
		}
		if err != nil {
			return err
		}
		if err := fn(s[:len(s)-1], int64(len(s))); err != nil {
			return err
		}
	}
}

// syncDir makes a directory's entries (new or renamed files) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// writeFileAtomic replaces name with b durably: temp file, fsync, rename.
func writeFileAtomic(dir, name string, b []byte) error {
	tmp, err := os.CreateTemp(dir, "."+name+".tmp*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // fails harmlessly after the rename
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(0o640); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name)); err != nil {
		return err
	}
	return syncDir(dir)
}

// appendFileSync appends b to dir/name, creating it, and fsyncs it.
func appendFileSync(dir, name string, b []byte) error {
	p := filepath.Join(dir, name)
	_, statErr := os.Stat(p)
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return err
	}
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if os.IsNotExist(statErr) {
		return syncDir(dir)
	}
	return nil
}
