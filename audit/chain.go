package audit

import (
	"context"
	"crypto/sha256"
	"fmt"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// Next extends the chain by one line: SHA-256(prev ‖ line), where line is the
// exact entry line "<seq> <body>" without a newline. The chain starts from 32
// zero bytes, so the hash after entry 1 is Next([32]byte{}, line1).
func Next(prev [32]byte, line string) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	h.Write([]byte(line))
	var out [32]byte
	h.Sum(out[:0])
	return out
}

// Line is the entry line of entry number seq with the given body.
func Line(seq int64, body string) string {
	return strconv.FormatInt(seq, 10) + " " + body
}

// ParseLine splits an entry line "<seq> <body>" into its number and body.
// The number is a positive decimal without leading zeros; the body must be
// non-empty and hold no line break (canonical JSON never does).
func ParseLine(line string) (seq int64, body string, err error) {
	num, body, ok := strings.Cut(line, " ")
	if !ok {
		return 0, "", fmt.Errorf("line %.40q has no space after the entry number", line)
	}
	if num == "" || num[0] < '1' || num[0] > '9' {
		return 0, "", fmt.Errorf("line %.40q does not start with an entry number", line)
	}
	seq, err = strconv.ParseInt(num, 10, 64)
	if err != nil {
		return 0, "", fmt.Errorf("line %.40q: bad entry number: %v", line, err)
	}
	if body == "" {
		return 0, "", fmt.Errorf("entry %d has an empty body", seq)
	}
	if strings.ContainsAny(body, "\r\n") {
		return 0, "", fmt.Errorf("entry %d has a line break in its body", seq)
	}
	return seq, body, nil
}

// appendScript is the standalone use of Lua, for actions decided in Go.
var appendScript = redis.NewScript(Lua + `
return tocsin_audit(KEYS[1], KEYS[2], ARGV[1])
`)

// Append records an action decided in Go (a sign-in, a failed sign-in, …) as
// its own entry and returns the entry's number. Changes made by a Redis
// script record themselves inside that script instead, by including Lua.
func Append(ctx context.Context, rdb redis.Scripter, keys Keys, e Entry) (int64, error) {
	n, err := appendScript.Run(ctx, rdb, []string{keys.Seq, keys.Log}, e.Body()).Int64()
	if err != nil {
		return 0, fmt.Errorf("audit append %s: %w", e.Kind, err)
	}
	return n, nil
}

// EntryError is a problem with one entry of the chain: a Verify failure or a
// line the Keeper refuses to archive. Seq is the number the entry should have.
type EntryError struct {
	Seq int64
	Msg string
}

func (e *EntryError) Error() string { return fmt.Sprintf("entry %d: %s", e.Seq, e.Msg) }

func entryErr(seq int64, format string, args ...any) error {
	return &EntryError{Seq: seq, Msg: fmt.Sprintf(format, args...)}
}
