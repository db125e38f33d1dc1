package priority

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tocsin-alert/tocsin/audit"
)

// The queue's scripts append their audit entries (audit package) in the
// step that makes the change they record. What each appends:
//
//   - enqueueCmd: alert.accepted for a new alert (subject its id); one
//     alert.retracted for every alert it supersedes and fences now (reason
//     "superseded"); alert.duplicate when an idempotency key or fingerprint
//     answers with an existing alert (subject that alert). A conflict or a
//     replayed trigger event changes nothing and appends nothing.
//   - retractCmd (Fence, Retract): alert.retracted when the fence takes
//     effect. A second retraction of a fenced alert changes nothing, is
//     answered ErrRetracted and appends nothing: the log records changes, and
//     a caller repeating a retraction cannot grow it.
//   - claimCmd: alert.expired, once per alert, when a claim drops an expired
//     job of the alert's original with targets never attempted.
//   - maintenanceCmd, endMaintenanceCmd: maintenance.started and
//     maintenance.ended (early, by a call; a window that runs out ends by
//     itself and its end is the until of its maintenance.started).
//   - auditCmd (Queue.Audit): trigger.<status> for every trigger decision,
//     besides the list of recent decisions operators read.
//
// The actor is audit.ActorFrom of the call's context; the time is the
// queue's clock, the same now the script gets. Bodies are built in Lua by
// string concatenation (auditLua), byte for byte as audit.Entry.Body writes
// them: cjson's key order is not canonical.

// auditLua is the audit's prelude: audit.Lua, then tocsin_json (a string as
// encoding/json writes it), tocsin_body (audit.Entry.Body) and tocsin_record
// (both, appended).
const auditLua = audit.Lua + `
local tocsin_esc = {[34] = '\\"', [92] = '\\\\', [8] = '\\b', [12] = '\\f', [10] = '\\n', [13] = '\\r',
  [9] = '\\t', [60] = '\\u003c', [62] = '\\u003e', [38] = '\\u0026'}

local function tocsin_cont(x) return x ~= nil and x >= 128 and x <= 191 end

-- tocsin_json quotes s as encoding/json does: ", \ and control characters
-- escaped, <, > and & as \u00XX, U+2028 and U+2029 escaped, and every byte
-- that does not start a valid UTF-8 sequence replaced by \ufffd.
local function tocsin_json(s)
  if not string.find(s, '[%c"\\<>&\128-\255]') then return '"' .. s .. '"' end
  local out, i, n = {'"'}, 1, #s
  while i <= n do
    local c = string.byte(s, i)
    if c < 128 then
      local e = tocsin_esc[c]
      if e then
        out[#out + 1] = e
      elseif c < 32 then
        out[#out + 1] = string.format('\\u%04x', c)
      else
        out[#out + 1] = string.char(c)
      end
      i = i + 1
    else
      local c2, c3, c4 = string.byte(s, i + 1, i + 3)
      local len = 0
      if c >= 194 and c <= 223 then
        if tocsin_cont(c2) then len = 2 end
      elseif c >= 224 and c <= 239 then
        local lo, hi = 128, 191
        if c == 224 then lo = 160 elseif c == 237 then hi = 159 end
        if c2 and c2 >= lo and c2 <= hi and tocsin_cont(c3) then len = 3 end
      elseif c >= 240 and c <= 244 then
        local lo, hi = 128, 191
        if c == 240 then lo = 144 elseif c == 244 then hi = 143 end
        if c2 and c2 >= lo and c2 <= hi and tocsin_cont(c3) and tocsin_cont(c4) then len = 4 end
      end
      if len == 0 then
        out[#out + 1] = '\\ufffd'
        i = i + 1
      elseif len == 3 and c == 226 and c2 == 128 and (c3 == 168 or c3 == 169) then
        if c3 == 168 then out[#out + 1] = '\\u2028' else out[#out + 1] = '\\u2029' end
        i = i + 3
      else
        out[#out + 1] = string.sub(s, i, i + len - 1)
        i = i + len
      end
    end
  end
  out[#out + 1] = '"'
  return table.concat(out)
end

-- tocsin_less orders strings by their bytes, as Go sorts map keys (Lua's <
-- follows the server's collation locale).
local function tocsin_less(a, b)
  for i = 1, math.min(#a, #b) do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end

-- tocsin_body is audit.Entry.Body of an entry: time is its JSON (from Go),
-- subject "" is left out, and so is every detail value that is "" or nil
-- (and detail itself when nothing is left).
local function tocsin_body(time, kind, actor, subject, detail)
  local b = '{"time":' .. time .. ',"kind":' .. tocsin_json(kind) .. ',"actor":' .. tocsin_json(actor)
  if subject and subject ~= '' then b = b .. ',"subject":' .. tocsin_json(subject) end
  local keys = {}
  for k, v in pairs(detail) do
    if v ~= '' then keys[#keys + 1] = k end
  end
  if #keys == 0 then return b .. '}' end
  table.sort(keys, tocsin_less)
  for i, k in ipairs(keys) do keys[i] = tocsin_json(k) .. ':' .. tocsin_json(tostring(detail[k])) end
  return b .. ',"detail":{' .. table.concat(keys, ',') .. '}}'
end

-- tocsin_frag is a detail's '"key":value' ('' for an empty value); key is
-- plain ASCII.
local function tocsin_frag(k, v)
  if v == nil or v == '' then return '' end
  return '"' .. k .. '":' .. tocsin_json(v)
end

-- tocsin_close ends a body whose head (built in Go, auditParts) runs up to
-- its detail: the detail's fragments in order, those not '' joined by
-- commas. A hot path (enqueue) builds its entries so, escaping and sorting
-- only what the script decides.
local function tocsin_close(head, ...)
  local parts = {}
  for _, p in ipairs({...}) do
    if p ~= '' then parts[#parts + 1] = p end
  end
  if #parts == 0 then return head .. '}' end
  return head .. ',"detail":{' .. table.concat(parts, ',') .. '}}'
end

-- tocsin_record appends an entry and returns its number. A time of ""
-- appends nothing (a queue built without the audit: benchmarks only).
local function tocsin_record(seq_key, log_key, time, actor, kind, subject, detail)
  if time == '' then return 0 end
  return tocsin_audit(seq_key, log_key, tocsin_body(time, kind, actor, subject, detail))
end

-- tocsin_reached reports whether any original target of the alert whose
-- hash is akey was ever handed out (its counters, "n|kind|state").
local function tocsin_reached(akey)
  local f = redis.call('HGETALL', akey)
  for i = 1, #f, 2 do
    local k = f[i]
    if string.sub(k, 1, 2) == 'n|' and string.sub(k, 1, 4) ~= 'n|r|' and tonumber(f[i + 1]) > 0 then
      local st = string.match(k, '|([^|]*)$')
      if st == 'in_flight' or st == 'sent' or st == 'delivered' or st == 'failed' or st == 'retry' then return true end
    end
  end
  return false
end
`

// auditTime is an entry's time as JSON, as audit.Entry.Body writes it (UTC,
// whole milliseconds), or "" when q appends no entries.
func (q *Queue) auditTime(t time.Time) string {
	if q.noAudit {
		return ""
	}
	b, _ := json.Marshal(t.UTC().Truncate(time.Millisecond)) // a time in range: cannot fail
	return string(b)
}

// auditKeys are the seq and log keys a script in shard sh appends its audit
// entries to, for its KEYS: the audit's own on one Redis (the entry is
// appended in the step that makes the change), the shard's outbox on Redis
// Cluster, where the audit is in another slot (moveAudit moves them on).
func (q *Queue) auditKeys(sh shard) []string {
	if q.cluster != nil {
		return sh.outbox()
	}
	return q.auditLog()
}

// auditLog are the audit's own seq and log keys, for a script in the
// audit's slot (maintenance windows, trigger decisions).
func (q *Queue) auditLog() []string {
	k := audit.KeysFor(q.opts.Prefix)
	return []string{k.Seq, k.Log}
}

// moveAuditCmd appends a shard's outbox entries ("m body", m the outbox's
// own number) to the audit log, skipping those a move before already
// appended (one that crashed before trimOutboxCmd, or ran at the same time
// in another instance): the moved hash keeps each shard's last m. Entries of
// one shard keep their order.
//
// The outbox's number lives on the shard's master, the mark on the audit's:
// after a failover of the shard's master its number may have gone back
// (entries not yet on the replica are lost with it). Then the mark is
// behind the number no more, and is moved back to just before the
// entries read, so the new entries are appended, not skipped.
//
// KEYS[1] audit seq   KEYS[2] audit log   KEYS[3] moved hash
// ARGV[1] shard number   ARGV[2] the outbox's number when the entries were read
// ARGV[3..] outbox entries, oldest first
// Returns the last m moved.
var moveAuditCmd = redis.NewScript(audit.Lua + `
local last = tonumber(redis.call('HGET', KEYS[3], ARGV[1]) or '0')
local function num(e) return tonumber(string.sub(e, 1, string.find(e, ' ', 1, true) - 1)) end
if tonumber(ARGV[2]) < last then last = num(ARGV[3]) - 1 end
for i = 3, #ARGV do
  local sp = string.find(ARGV[i], ' ', 1, true)
  local m = tonumber(string.sub(ARGV[i], 1, sp - 1))
  if m > last then
    tocsin_audit(KEYS[1], KEYS[2], string.sub(ARGV[i], sp + 1))
    last = m
  end
end
redis.call('HSET', KEYS[3], ARGV[1], last)
return last
`)

// trimOutboxCmd drops a shard's outbox entries numbered up to ARGV[1].
//
// KEYS[1] outbox log   ARGV[1] last entry moved
var trimOutboxCmd = redis.NewScript(`
local n = 0
while true do
  local v = redis.call('LINDEX', KEYS[1], 0)
  if not v then return n end
  local sp = string.find(v, ' ', 1, true)
  if tonumber(string.sub(v, 1, sp - 1)) > tonumber(ARGV[1]) then return n end
  redis.call('LPOP', KEYS[1])
  n = n + 1
end
`)

// moveAudit moves a shard's audit outbox onto the audit log (Redis Cluster
// only; a no-op on one Redis). Enqueue and Fence move right after their
// step, so their entries are on the log when they return; Resume moves
// whatever is left (a claim's alert.expired, a crash between the step and
// its move), so no entry is lost and none is appended twice.
func (q *Queue) moveAudit(ctx context.Context, sh shard) error {
	if q.cluster == nil {
		return nil
	}
	seqKey, box := sh.outbox()[0], sh.outbox()[1]
	k := audit.KeysFor(q.opts.Prefix)
	for {
		var seq *redis.StringCmd
		var read *redis.StringSliceCmd
		_, err := q.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			seq = p.Get(ctx, seqKey)
			read = p.LRange(ctx, box, 0, 199)
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return err
		}
		lines := read.Val()
		if len(lines) == 0 {
			return nil
		}
		n, _ := seq.Int64()
		args := []any{sh.n, n}
		for _, l := range lines {
			args = append(args, l)
		}
		last, err := moveAuditCmd.Run(ctx, q.rdb, []string{k.Seq, k.Log, q.k.auditMoved()}, args...).Int64()
		if err != nil {
			return fmt.Errorf("move audit entries of shard %d: %w", sh.n, err)
		}
		if err := trimOutboxCmd.Run(ctx, q.rdb, []string{box}, last).Err(); err != nil {
			return fmt.Errorf("move audit entries of shard %d: %w", sh.n, err)
		}
		if len(lines) < 200 {
			return nil
		}
	}
}

// moved moves sh's audit outbox after a step that appended to it; an error
// leaves the entries for Resume.
func (q *Queue) moved(ctx context.Context, sh shard) { _ = q.moveAudit(ctx, sh) }

// actor is who acts in ctx.
func actor(ctx context.Context) string { return audit.ActorFrom(ctx) }

// auditDetailTime writes a time in a detail as the entry's own time is written.
func auditDetailTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Truncate(time.Millisecond).Format(time.RFC3339Nano)
}

// auditParts splits e's canonical body for a script that decides the values
// of the detail keys named in at (sorted): head is the body up to its
// detail, and frags the detail's '"key":value' fragments, commas between,
// before at[0], between at[0] and at[1], …, after the last (each may be
// ""). The script joins them with its own fragments (tocsin_close). With
// q appending no entries, head is "".
func (q *Queue) auditParts(e audit.Entry, at ...string) (head string, frags []string) {
	d := e.Detail
	e.Detail = nil
	body := e.Body()
	head = body[:len(body)-1]
	keys := slices.Sorted(maps.Keys(d))
	frags = make([]string, len(at)+1)
	seg := 0
	for _, k := range keys {
		for seg < len(at) && k > at[seg] {
			seg++
		}
		if d[k] == "" {
			continue
		}
		kb, _ := json.Marshal(k)
		vb, _ := json.Marshal(d[k])
		if frags[seg] != "" {
			frags[seg] += ","
		}
		frags[seg] += string(kb) + ":" + string(vb)
	}
	if q.noAudit {
		head = ""
	}
	return head, frags
}

// detailOf builds an entry's detail from key, value pairs, leaving out
// empty values as the scripts' entries do.
func detailOf(kv ...string) map[string]string {
	d := map[string]string{}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] != "" {
			d[kv[i]] = kv[i+1]
		}
	}
	return d
}
