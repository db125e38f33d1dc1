package gateway

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// instanceTTL is how long an instance's claim on its MQTT client id outlives
// it: a crashed instance's claim lapses this soon, so its restart waits at
// most this long; a live instance renews it three times as often.
const instanceTTL = 6 * time.Second

// ErrClientIDTaken: another live instance uses this MQTT client id.
var ErrClientIDTaken = errors.New("another running instance uses this mqtt.client_id")

// renewScript extends the claim if it is still ours; releaseScript drops it
// if it is still ours. KEYS[1] the claim; ARGV[1] our token, ARGV[2] ttl ms.
var (
	renewScript   = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('PEXPIRE', KEYS[1], ARGV[2]) end return 0`)
	releaseScript = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0`)
)

// claimClientID claims the MQTT client id in Redis before the broker sees
// it: a second instance started by mistake with the same id would otherwise
// take the live instance's broker session (kicking it off) before failing on
// its HTTP port. A claim left by a crashed instance lapses within
// instanceTTL, so a restart waits for it instead of failing. It returns a
// release func, or ErrClientIDTaken naming who holds it.
func claimClientID(ctx context.Context, rdb redis.UniversalClient, prefix, clientID string, log zerolog.Logger) (func(), error) {
	key := prefix + ":instance:{" + clientID + "}"
	b := make([]byte, 8)
	rand.Read(b)
	host, _ := os.Hostname()
	tok := fmt.Sprintf("%s/%d/%s", host, os.Getpid(), hex.EncodeToString(b))
	deadline := time.Now().Add(instanceTTL + time.Second)
	for {
		ok, err := rdb.SetNX(ctx, key, tok, instanceTTL).Result()
		if err != nil {
			return nil, fmt.Errorf("claiming mqtt.client_id %q in Redis: %w", clientID, err)
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			holder, _ := rdb.Get(ctx, key).Result()
			return nil, fmt.Errorf("%w: %q is held by %s (still renewing it); give this instance its own mqtt.client_id", ErrClientIDTaken, clientID, holder)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(500 * time.Millisecond):
		}
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	go func() { // exits when release is called
		defer close(done)
		t := time.NewTicker(instanceTTL / 3)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
				rctx, cancel := context.WithTimeout(context.Background(), time.Second)
				n, err := renewScript.Run(rctx, rdb, []string{key}, tok, instanceTTL.Milliseconds()).Int()
				cancel()
				if err == nil && n == 0 {
					log.Error().Str("client_id", clientID).Msg("Lost the claim on the MQTT client id (Redis lost it, or it lapsed while Redis was away); taking it again")
					rdb.SetNX(context.Background(), key, tok, instanceTTL)
				}
			}
		}
	}()
	return func() {
		close(stop)
		<-done
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		releaseScript.Run(ctx, rdb, []string{key}, tok)
	}, nil
}
