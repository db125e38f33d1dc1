package audit

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"
)

// CheckpointOrigin is the first line of every checkpoint note.
const CheckpointOrigin = "tocsin-audit"

// A Checkpoint vouches that the chain's hash after entry Seq was Hash at Time.
// It is the text of a signed note (golang.org/x/mod/sumdb/note, Ed25519):
//
//	tocsin-audit
//	<seq>
//	<base64 of the 32-byte hash after entry seq>
//	<time, RFC 3339, UTC>
//
// followed by a blank line and the signature lines.
type Checkpoint struct {
	Seq  int64
	Hash [32]byte
	Time time.Time
	// Signer is the name of the key that signed it; set by OpenCheckpoint.
	Signer string
}

// Text is the checkpoint's note text (without signatures).
func (c Checkpoint) Text() string {
	return fmt.Sprintf("%s\n%d\n%s\n%s\n", CheckpointOrigin, c.Seq,
		base64.StdEncoding.EncodeToString(c.Hash[:]), c.Time.UTC().Format(time.RFC3339))
}

// ParseCheckpoint parses a checkpoint's note text, without its signatures.
func ParseCheckpoint(text string) (Checkpoint, error) {
	var c Checkpoint
	f := strings.Split(text, "\n")
	if len(f) != 5 || f[4] != "" {
		return c, errors.New("checkpoint: not four lines")
	}
	if f[0] != CheckpointOrigin {
		return c, fmt.Errorf("checkpoint: origin %q, want %q", f[0], CheckpointOrigin)
	}
	seq, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil || seq < 0 || strconv.FormatInt(seq, 10) != f[1] {
		return c, fmt.Errorf("checkpoint: bad entry number %q", f[1])
	}
	h, err := base64.StdEncoding.DecodeString(f[2])
	if err != nil || len(h) != 32 {
		return c, fmt.Errorf("checkpoint: bad hash %q", f[2])
	}
	t, err := time.Parse(time.RFC3339, f[3])
	if err != nil {
		return c, fmt.Errorf("checkpoint: bad time %q", f[3])
	}
	c.Seq, c.Time = seq, t.UTC()
	copy(c.Hash[:], h)
	return c, nil
}

// SignCheckpoint signs c with a note signer key (from note.GenerateKey or
// tocsin audit keygen) and returns the signed note.
func SignCheckpoint(c Checkpoint, signerKey string) ([]byte, error) {
	s, err := note.NewSigner(signerKey)
	if err != nil {
		return nil, errors.New("checkpoint: the signer key is not a valid note signer key")
	}
	return signCheckpoint(c, s)
}

func signCheckpoint(c Checkpoint, s note.Signer) ([]byte, error) {
	return note.Sign(&note.Note{Text: c.Text()}, s)
}

// OpenCheckpoint checks that msg is a checkpoint note signed by a key that
// verifierKey names and parses it. verifierKey is a note verifier key
// ("name+hash+key", from tocsin audit keygen) or several separated by commas,
// for checkpoints signed before and after a key rotation.
func OpenCheckpoint(msg []byte, verifierKey string) (Checkpoint, error) {
	vs, err := verifiers(verifierKey)
	if err != nil {
		return Checkpoint{}, err
	}
	return openCheckpoint(msg, vs)
}

// verifiers parses one or more comma-separated verifier keys.
func verifiers(keys string) (*knownKeys, error) {
	var k knownKeys
	for _, s := range strings.Split(keys, ",") {
		if s = strings.TrimSpace(s); s == "" {
			continue
		}
		v, err := note.NewVerifier(s)
		if err != nil {
			return nil, fmt.Errorf("bad verifier key: %v", err)
		}
		k.list = append(k.list, v)
		k.names = append(k.names, fmt.Sprintf("%s+%08x", v.Name(), v.KeyHash()))
	}
	if len(k.list) == 0 {
		return nil, errors.New("no verifier key")
	}
	k.Verifiers = note.VerifierList(k.list...)
	return &k, nil
}

// knownKeys are the verifier keys a checkpoint may be signed with.
type knownKeys struct {
	note.Verifiers
	list  []note.Verifier
	names []string
}

func openCheckpoint(msg []byte, known *knownKeys) (Checkpoint, error) {
	n, err := note.Open(msg, known)
	if err != nil {
		var unv *note.UnverifiedNoteError
		if errors.As(err, &unv) {
			names := make([]string, 0, len(unv.Note.UnverifiedSigs))
			for _, s := range unv.Note.UnverifiedSigs {
				names = append(names, fmt.Sprintf("%s+%08x", s.Name, s.Hash))
			}
			return Checkpoint{}, fmt.Errorf("checkpoint not signed by %s (signed by unknown key %s)",
				strings.Join(known.names, " or "), strings.Join(names, ", "))
		}
		return Checkpoint{}, fmt.Errorf("checkpoint: %v", err)
	}
	c, err := ParseCheckpoint(n.Text)
	if err != nil {
		return c, err
	}
	c.Signer = n.Sigs[0].Name
	return c, nil
}

// splitNotes splits concatenated signed notes (the checkpoints file) into
// single notes. A note is its text lines, one blank line, and its signature
// lines ("— name sig"); the next note starts at the first line after those
// that is not a signature. Blank lines between notes are ignored.
func splitNotes(b []byte) [][]byte {
	var notes [][]byte
	var cur []byte
	inSigs := false
	for len(b) > 0 {
		i := bytes.IndexByte(b, '\n')
		var line []byte
		if i < 0 {
			line, b = b, nil
		} else {
			line, b = b[:i+1], b[i+1:]
		}
		isSig := bytes.HasPrefix(line, []byte("— "))
		switch {
		case inSigs && isSig:
			cur = append(cur, line...)
		case inSigs || len(cur) == 0 && len(bytes.TrimSpace(line)) == 0:
			if len(cur) > 0 {
				notes = append(notes, cur)
				cur = nil
			}
			inSigs = false
			if len(bytes.TrimSpace(line)) > 0 {
				cur = append(cur, line...)
			}
		default:
			cur = append(cur, line...)
			if len(cur) > len(line) && string(line) == "\n" {
				inSigs = true
			}
		}
	}
	if len(cur) > 0 {
		notes = append(notes, cur)
	}
	return notes
}
