package operator

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/hotp"
	"golang.org/x/crypto/argon2"
)

// Password rules.
const (
	// MinPassword is the shortest password accepted, in characters.
	MinPassword = 12
	// MaxPassword is the longest password accepted, in bytes: hashing is
	// costly enough without megabytes of input.
	MaxPassword = 1024
)

// argon2id parameters: RFC 9106's second recommendation (m = 64 MiB, t = 3,
// p = 4), 16-byte salt, 32-byte hash. A stored hash carries its own
// parameters, so raising these later still verifies old hashes. Tests lower
// argonMemory (export_test.go) to stay fast under -race; production never does.
var (
	argonMemory  uint32 = 64 * 1024 // KiB
	argonTime    uint32 = 3
	argonThreads uint8  = 4
)

const (
	saltLen = 16
	hashLen = 32
)

// hashSlots bounds how many argon2id computations run at once: each takes
// argonMemory, and a burst of sign-ins must not exhaust the host's memory.
var hashSlots = make(chan struct{}, 4)

func withHashSlot(ctx context.Context, f func()) error {
	select {
	case hashSlots <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-hashSlots }()
	f()
	return nil
}

var b64 = base64.RawStdEncoding

// hashPassword returns the PHC string of password:
// $argon2id$v=19$m=65536,t=3,p=4$<salt>$<hash> (unpadded standard base64).
func hashPassword(ctx context.Context, password string) (string, error) {
	salt := make([]byte, saltLen)
	rand.Read(salt) // never fails (crypto/rand)
	var sum []byte
	m, t, p := argonMemory, argonTime, argonThreads
	if err := withHashSlot(ctx, func() { sum = argon2.IDKey([]byte(password), salt, t, m, p, hashLen) }); err != nil {
		return "", err
	}
	return fmt.Sprintf("$argon2id$v=%d$m=%d,t=%d,p=%d$%s$%s", argon2.Version, m, t, p, b64.EncodeToString(salt), b64.EncodeToString(sum)), nil
}

var errBadHash = errors.New("operator: malformed password hash")

// verifyPassword reports whether password matches the PHC string phc,
// comparing in constant time.
func verifyPassword(ctx context.Context, phc, password string) (bool, error) {
	parts := strings.Split(phc, "$")
	if len(parts) != 6 || parts[0] != "" || parts[1] != "argon2id" || parts[2] != "v="+strconv.Itoa(argon2.Version) {
		return false, errBadHash
	}
	var m, t uint32
	var p uint8
	if _, err := fmt.Sscanf(parts[3], "m=%d,t=%d,p=%d", &m, &t, &p); err != nil {
		return false, errBadHash
	}
	// Bounds keep a tampered record from costing the host a gigabyte.
	if m < 8 || m > 1<<20 || t < 1 || t > 16 || p < 1 || p > 16 {
		return false, errBadHash
	}
	salt, err1 := b64.DecodeString(parts[4])
	want, err2 := b64.DecodeString(parts[5])
	if err1 != nil || err2 != nil || len(salt) < 8 || len(want) < 16 || len(want) > 64 {
		return false, errBadHash
	}
	var got []byte
	if err := withHashSlot(ctx, func() { got = argon2.IDKey([]byte(password), salt, t, m, p, uint32(len(want))) }); err != nil {
		return false, err
	}
	return subtle.ConstantTimeCompare(got, want) == 1, nil
}

var (
	dummyOnce sync.Once
	dummyPHC  string
)

// dummyVerify costs what verifyPassword costs, for sign-ins with no stored
// hash to check against, so that timing does not tell who exists.
func dummyVerify(ctx context.Context, password string) {
	dummyOnce.Do(func() {
		dummyPHC, _ = hashPassword(context.Background(), newToken(""))
	})
	verifyPassword(ctx, dummyPHC, password)
}

// checkPassword applies the password rules.
func checkPassword(password string) error {
	if len(password) > MaxPassword {
		return ErrPasswordTooLong
	}
	if utf8.RuneCountInString(password) < MinPassword {
		return ErrPasswordTooShort
	}
	return nil
}

// TOTP: SHA-1, 6 digits, 30-second steps, one step of skew either way.
const (
	totpPeriod = 30
	totpSkew   = 1
)

var hotpOpts = hotp.ValidateOpts{Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

// matchCode returns the time step (Unix time / 30 s) at which code is the
// valid TOTP code for secret, trying the step of now and one either side; ok
// is false if none matches. Of several matching steps it returns the latest.
// Every candidate is computed and compared in constant time.
func matchCode(secret, code string, now time.Time) (step int64, ok bool) {
	if len(code) != 6 || strings.Trim(code, "0123456789") != "" || secret == "" {
		return 0, false
	}
	cur := now.Unix() / totpPeriod
	for s := cur - totpSkew; s <= cur+totpSkew; s++ {
		if s < 0 {
			continue
		}
		want, err := hotp.GenerateCodeCustom(secret, uint64(s), hotpOpts)
		if err == nil && subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			step, ok = s, true
		}
	}
	return step, ok
}

// Token prefixes.
const (
	invitePrefix  = "tsi_"
	sessionPrefix = "tsn_"
)

// newToken is prefix followed by 32 random bytes in unpadded base64url.
func newToken(prefix string) string {
	b := make([]byte, 32)
	rand.Read(b) // never fails (crypto/rand)
	return prefix + base64.RawURLEncoding.EncodeToString(b)
}

// tokenSum is the hex SHA-256 under which a token is stored; ok is false
// for a string that is not a token of that kind.
func tokenSum(prefix, token string) (sum string, ok bool) {
	rest, found := strings.CutPrefix(token, prefix)
	if !found || len(rest) != 43 {
		return "", false
	}
	if _, err := base64.RawURLEncoding.DecodeString(rest); err != nil {
		return "", false
	}
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:]), true
}
