package audit

import (
	"errors"
	"os"
	"path/filepath"
)

// Recent are the last n archived entry lines ("<seq> <body>") that keep
// returns true for, oldest first, from the archive in dir (the newest
// segments first, so a long archive is not read whole). An archive not yet
// made gives none.
func Recent(dir string, n int, keep func(line string) bool) ([]string, error) {
	names, err := segments(dir)
	if err != nil {
		return nil, err
	}
	var out []string
	for i := len(names) - 1; i >= 0 && len(out) < n; i-- {
		f, err := os.Open(filepath.Join(dir, names[i]))
		if err != nil {
			return nil, err
		}
		var seg []string
		err = readRecords(f, func(text string, _ int64) error {
			r, err := parseRecord(text)
			if err == nil && keep(r.line) {
				seg = append(seg, r.line)
			}
			return nil
		})
		f.Close()
		if err != nil && !errors.Is(err, errPartial) {
			return nil, err
		}
		if len(seg) > n-len(out) {
			seg = seg[len(seg)-(n-len(out)):]
		}
		out = append(seg, out...)
	}
	return out, nil
}
