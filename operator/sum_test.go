package operator_test

import (
	"crypto/sha256"
	"encoding/hex"
)

func sum(token string) string {
	h := sha256.Sum256([]byte(token))
	return hex.EncodeToString(h[:])
}
