package main

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"golang.org/x/mod/sumdb/note"

	"github.com/tocsin-alert/tocsin/audit"
)

const auditUsage = `usage:
  tocsin audit keygen NAME
      make a checkpoint signing key pair named NAME
  tocsin audit verify --dir DIR [--key VERIFIERKEY] [--checkpoint FILE]
                      [--redis ADDR|URL [--cluster] --prefix PREFIX --password-env VAR]
      replay the audit chain from entry 1 and check it against the checkpoints
`

// auditOut is where the audit command prints; tests replace it.
var auditOut io.Writer = os.Stdout

// auditCmd is tocsin audit: keygen and verify. A chain that does not verify
// is an error naming its first bad entry, so the exit status is 1.
func auditCmd(args []string) error {
	if len(args) == 0 {
		return errors.New("no subcommand\n" + auditUsage)
	}
	switch args[0] {
	case "keygen":
		return auditKeygen(args[1:])
	case "verify":
		return auditVerify(args[1:])
	case "-h", "--help", "help":
		fmt.Fprint(auditOut, auditUsage)
		return nil
	}
	return fmt.Errorf("unknown subcommand %q\n%s", args[0], auditUsage)
}

func auditKeygen(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: tocsin audit keygen NAME")
	}
	skey, vkey, err := note.GenerateKey(rand.Reader, args[0])
	if err != nil {
		return fmt.Errorf("keygen %q: %v (a name is letters, digits and punctuation, no spaces or +)", args[0], err)
	}
	fmt.Fprintf(auditOut, "# The signer key is secret: set it as TOCSIN_AUDIT_SIGNER_KEY on the gateway only; the verifier key is public: pass it to tocsin audit verify --key (or TOCSIN_AUDIT_VERIFIER_KEY).\n")
	fmt.Fprintf(auditOut, "signer key:   %s\n", skey)
	fmt.Fprintf(auditOut, "verifier key: %s\n", vkey)
	return nil
}

func auditVerify(args []string) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	dir := fs.String("dir", "", "the keeper's archive directory (required)")
	key := fs.String("key", os.Getenv("TOCSIN_AUDIT_VERIFIER_KEY"), "verifier key, or several separated by commas after a rotation (TOCSIN_AUDIT_VERIFIER_KEY)")
	cpFile := fs.String("checkpoint", "", "a checkpoint kept off the host: a note, or a syslog file whose last tocsin-audit line is used")
	addr := fs.String("redis", "", "Redis address or redis:// URL, to include the entries not yet archived")
	prefix := fs.String("prefix", "tocsin", "Redis key prefix (redis.key_prefix)")
	cluster := fs.Bool("cluster", false, "the --redis address is a server of a Redis Cluster")
	passEnv := fs.String("password-env", "", "environment variable holding the Redis password")
	show := fs.String("show", "", "after verifying, list the entries about this subject (an alert, source or operator id), or all")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" || fs.NArg() > 0 {
		return errors.New("usage: tocsin audit verify --dir DIR [--key VERIFIERKEY] [--checkpoint FILE] [--redis ADDR [--cluster] --prefix PREFIX]")
	}
	if *key == "" {
		return errors.New("no verifier key: pass --key or set TOCSIN_AUDIT_VERIFIER_KEY")
	}
	var given string
	if *cpFile != "" {
		b, err := os.ReadFile(*cpFile)
		if err != nil {
			return err
		}
		if given, err = checkpointText(b); err != nil {
			return fmt.Errorf("%s: %v", *cpFile, err)
		}
	}

	var tail []string
	counter := int64(-1)
	if *addr != "" {
		opt, err := redisOptions(*addr, *passEnv)
		if err != nil {
			return err
		}
		var rdb redis.UniversalClient = redis.NewClient(opt)
		if *cluster {
			rdb = redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{opt.Addr}, Username: opt.Username,
				Password: opt.Password, TLSConfig: opt.TLSConfig})
		}
		defer rdb.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		keys := audit.KeysFor(*prefix)
		// The counter before the lines, the lines before the directory: an
		// entry appended or archived meanwhile is never missed.
		counter, err = rdb.Get(ctx, keys.Seq).Int64()
		if errors.Is(err, redis.Nil) {
			counter, err = 0, nil
		}
		if err != nil && strings.HasPrefix(err.Error(), "MOVED") {
			return fmt.Errorf("redis: %w (a Redis Cluster: add --cluster)", err)
		}
		if err != nil {
			return fmt.Errorf("redis: %w", err)
		}
		if tail, err = rdb.LRange(ctx, keys.Log, 0, -1).Result(); err != nil {
			return fmt.Errorf("redis: %w", err)
		}
	}

	rep, err := audit.Verify(*dir, tail, given, *key)
	if err != nil {
		return err
	}
	if counter > rep.Entries {
		return &audit.EntryError{Seq: rep.Entries + 1, Msg: fmt.Sprintf("missing: Redis has numbered entries up to %d but the chain ends at entry %d", counter, rep.Entries)}
	}
	if rep.VerifiedTo == 0 {
		if rep.Entries == 0 {
			fmt.Fprintln(auditOut, "audit: no entries yet")
			return nil
		}
		fmt.Fprintf(auditOut, "audit: the chain of %d entries is consistent, but no checkpoint vouches for it\n", rep.Entries)
		return errors.New("no valid checkpoint: the log is not tamper-evident without one")
	}
	fmt.Fprintf(auditOut, "audit: chain verified to entry %d, checkpoint signed at %s by %s; %d entries after it not yet checkpointed\n",
		rep.VerifiedTo, rep.CheckpointTime.Format(time.RFC3339), rep.Signer, rep.Unanchored)
	fmt.Fprintf(auditOut, "audit: %d entries (%d archived, %d in Redis), %d checkpoints checked, head %s\n",
		rep.Entries, rep.Archived, rep.Entries-rep.Archived, rep.Checkpoints, audit.HashString(rep.Head))
	if *show != "" {
		return showEntries(*dir, tail, *show, rep)
	}
	return nil
}

// showEntries lists the verified chain's entries about subject ("all": every
// one), each marked as covered by a checkpoint or not yet.
func showEntries(dir string, tail []string, subject string, rep audit.Report) error {
	about := func(line string) bool {
		_, body, err := audit.ParseLine(line)
		if err != nil {
			return false
		}
		var e audit.Entry
		return json.Unmarshal([]byte(body), &e) == nil && (subject == "all" || e.Subject == subject || e.Actor == subject)
	}
	lines, err := audit.Recent(dir, math.MaxInt, about)
	if err != nil {
		return err
	}
	seen := map[int64]bool{}
	for _, l := range lines {
		n, _, _ := audit.ParseLine(l)
		seen[n] = true
	}
	for _, l := range tail {
		if n, _, err := audit.ParseLine(l); err == nil && !seen[n] && about(l) {
			lines = append(lines, l)
		}
	}
	for _, l := range lines {
		n, body, _ := audit.ParseLine(l)
		var e audit.Entry
		json.Unmarshal([]byte(body), &e)
		mark := "verified"
		if n > rep.VerifiedTo {
			mark = "not yet checkpointed"
		}
		keys := make([]string, 0, len(e.Detail))
		for k := range e.Detail {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		var detail strings.Builder
		for _, k := range keys {
			fmt.Fprintf(&detail, " %s=%q", k, e.Detail[k])
		}
		fmt.Fprintf(auditOut, "%6d  %s  %-22s %-20s %s%s  [%s]\n", n, e.Time.UTC().Format(time.RFC3339), e.Kind, e.Actor, e.Subject, detail.String(), mark)
	}
	return nil
}

// checkpointText reads a checkpoint file: a signed note as the keeper writes
// it, or a syslog file whose last tocsin-audit line carries note=BASE64.
func checkpointText(b []byte) (string, error) {
	if strings.HasPrefix(string(b), audit.CheckpointOrigin+"\n") {
		return string(b), nil
	}
	lines := strings.Split(string(b), "\n")
	for i := len(lines) - 1; i >= 0; i-- {
		_, rest, ok := strings.Cut(lines[i], " note=")
		if !ok || !strings.Contains(lines[i], "checkpoint seq=") {
			continue
		}
		n, err := base64.StdEncoding.DecodeString(strings.Fields(rest + " ")[0])
		if err != nil {
			return "", fmt.Errorf("bad note= in a checkpoint line: %v", err)
		}
		return string(n), nil
	}
	return "", errors.New("neither a checkpoint note nor a log with tocsin-audit checkpoint lines")
}

// redisOptions takes a plain address or a redis:// URL.
func redisOptions(addr, passEnv string) (*redis.Options, error) {
	opt := &redis.Options{Addr: addr}
	if strings.Contains(addr, "://") {
		var err error
		if opt, err = redis.ParseURL(addr); err != nil {
			return nil, err
		}
	}
	if passEnv != "" {
		opt.Password = os.Getenv(passEnv)
	}
	return opt, nil
}
