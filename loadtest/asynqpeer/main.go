// Command asynqpeer is the peer Tocsin's ingest is measured against: the same
// HTTP contract (POST /v1/alerts with a bearer key and the same JSON),
// decoded, authorised and validated the same way, then enqueued with asynq's
// Unique option (its dedup) against the same Redis. With --bare it only
// decodes the JSON and answers 202: the ceiling for any handler.
//
// It lives in its own module so Tocsin's does not depend on asynq.
//
//	go run . --redis 127.0.0.1:6379 --listen 127.0.0.1:8081 --key KEY
//	go run . --bare --listen 127.0.0.1:8082
package main

import (
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/hibiken/asynq"
)

type alertRequest struct {
	Status   string   `json:"status"`
	Event    string   `json:"event"`
	Severity string   `json:"severity"`
	Urgency  string   `json:"urgency"`
	Headline string   `json:"headline"`
	Zones    []string `json:"zones"`
	Channels []string `json:"channels"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8081", "loopback address")
	redisAddr := flag.String("redis", "127.0.0.1:6379", "Redis address")
	key := flag.String("key", "", "the API key senders use")
	bare := flag.Bool("bare", false, "only decode and answer 202 (the ceiling)")
	flag.Parse()
	host, _, _ := net.SplitHostPort(*listen)
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		log.Fatalf("--listen %s: loopback only", *listen)
	}
	var h http.HandlerFunc
	if *bare {
		h = func(w http.ResponseWriter, r *http.Request) {
			var v map[string]any
			if err := json.NewDecoder(r.Body).Decode(&v); err != nil {
				w.WriteHeader(400)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(202)
			w.Write([]byte(`{"id":"x","priority":7,"duplicate":false,"state":"queued","targets":3}`))
		}
	} else {
		client := asynq.NewClient(asynq.RedisClientOpt{Addr: *redisAddr, PoolSize: 64})
		defer client.Close()
		want := sha256.Sum256([]byte(*key))
		h = func(w http.ResponseWriter, r *http.Request) {
			tok, _ := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
			got := sha256.Sum256([]byte(tok))
			if subtle.ConstantTimeCompare(got[:], want[:]) != 1 {
				http.Error(w, `{"title":"bad key"}`, 401)
				return
			}
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 64<<10))
			dec.DisallowUnknownFields()
			var req alertRequest
			if err := dec.Decode(&req); err != nil || req.Event == "" || len(req.Zones) == 0 || req.Severity == "" || req.Urgency == "" {
				http.Error(w, `{"title":"invalid"}`, 400)
				return
			}
			payload, _ := json.Marshal(req)
			idem := r.Header.Get("Idempotency-Key")
			if idem == "" {
				idem = req.Event
			}
			info, err := client.EnqueueContext(r.Context(), asynq.NewTask("alert:"+idem, payload),
				asynq.Queue("critical"), asynq.Unique(5*time.Minute), asynq.MaxRetry(0))
			switch {
			case errors.Is(err, asynq.ErrDuplicateTask):
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(200)
				fmt.Fprint(w, `{"duplicate":true}`)
			case err != nil:
				http.Error(w, `{"title":"unavailable"}`, 503)
			default:
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(202)
				fmt.Fprintf(w, `{"id":%q,"duplicate":false,"state":"queued"}`, info.ID)
			}
		}
	}
	mux := http.NewServeMux()
	mux.Handle("POST /v1/alerts", h)
	log.Printf("asynqpeer (bare=%v) on %s", *bare, *listen)
	log.Fatal((&http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}).ListenAndServe())
}
