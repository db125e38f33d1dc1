package priority_test

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"pgregory.net/rapid"

	"github.com/tocsin-alert/tocsin/audit"
	"github.com/tocsin-alert/tocsin/internal/testenv"
	"github.com/tocsin-alert/tocsin/priority"
)

// bodyScript returns tocsin_body of its arguments: KEYS unused; ARGV[1]
// time JSON, ARGV[2] kind, ARGV[3] actor, ARGV[4] subject, ARGV[5..] detail pairs.
var bodyScript = redis.NewScript(priority.AuditLua + `
local d = {}
for i = 5, #ARGV, 2 do d[ARGV[i]] = ARGV[i + 1] end
return tocsin_body(ARGV[1], ARGV[2], ARGV[3], ARGV[4], d)
`)

// TestAuditBodyIsEntryBody: the Lua that builds entries writes what
// audit.Entry.Body writes, byte for byte, for any strings (control
// characters, <>&, U+2028, invalid UTF-8, …), on Redis and on miniredis.
func TestAuditBodyIsEntryBody(t *testing.T) {
	mini := miniredis.RunT(t)
	for _, srv := range []struct{ name, addr string }{{"redis", testenv.Redis(t, true).Addr()}, {"miniredis", mini.Addr()}} {
		t.Run(srv.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Addr: srv.addr})
			defer rdb.Close()
			ctx := context.Background()
			rapid.Check(t, func(rt *rapid.T) {
				raw := rapid.OneOf(rapid.String(), rapid.Map(rapid.SliceOf(rapid.Byte()), func(b []byte) string { return string(b) }),
					rapid.SampledFrom([]string{"", "\b\f\n\r\t\x00\x1f\x7f", "<a href=\"x\">&amp;</a>", "\u2028\u2029", "\xed\xa0\x80\xe2\x82a\xf4\x90\x80\x80\xc0\xaf", "é€𝄞", `\"\\`}))
				e := audit.Entry{
					Time:    time.UnixMilli(rapid.Int64Range(0, 4e12).Draw(rt, "ms")),
					Kind:    raw.Draw(rt, "kind"),
					Actor:   raw.Draw(rt, "actor"),
					Subject: raw.Draw(rt, "subject"),
				}
				args := []any{timeJSON(e.Time), e.Kind, e.Actor, e.Subject}
				seen := map[string]bool{}
				for range rapid.IntRange(0, 5).Draw(rt, "details") {
					k, v := raw.Draw(rt, "key"), raw.Draw(rt, "value")
					if seen[k] {
						continue
					}
					seen[k] = true
					args = append(args, k, v)
					if v != "" { // the scripts leave empty values out
						if e.Detail == nil {
							e.Detail = map[string]string{}
						}
						e.Detail[k] = v
					}
				}
				got, err := bodyScript.Run(ctx, rdb, nil, args...).Text()
				if err != nil {
					rt.Fatal(err)
				}
				if want := e.Body(); got != want {
					rt.Fatalf("tocsin_body = %q\nEntry.Body = %q", got, want)
				}
			})
		})
	}
}

func timeJSON(t time.Time) string {
	b, _ := json.Marshal(t.UTC().Truncate(time.Millisecond))
	return string(b)
}
