package priority

import "github.com/redis/go-redis/v9"

// ledgerScript is a script that may change ledger states: body runs as a
// function after the prelude, then the counts it moved are written.
func ledgerScript(body string) *redis.Script {
	return redis.NewScript(ledgerSource(body))
}

// auditedLedgerScript is a ledgerScript that may append audit entries: the
// audit's prelude (auditLua) comes first.
func auditedLedgerScript(body string) *redis.Script {
	return redis.NewScript(auditLua + ledgerSource(body))
}

func ledgerSource(body string) string {
	return lua + "local function main()\n" + body + "\nend\nlocal r = main()\nflush_counts()\nreturn r\n"
}

// lua is the prelude shared by the scripts that put jobs on lanes.
//
// A job is JSON: {id, a: alert id, k: kind, m: "a" (the alert) or "r" (its
// retraction), p: priority 0..10, q: lane sequence, t: [target ids], x: expiry ms}.
// Its score on the ready set is (10 - p) * 1e13 + q: ZPOPMIN takes the highest
// priority first and, inside a priority, the oldest.
//
// Every change of a ledger state goes through set_state (or count, for many
// targets at once), which keeps the alert's counters (fields "n|kind|state"
// and "n|r|kind|state" of its hash) in step: status reads a few counters, not
// a ledger of a million targets. ledgerScript runs a body and then writes the
// counts it changed.
const lua = `
local deltas = {}

-- count adds n to the counter of field f's kind (and retraction mark) in state st.
local function count(ledger, f, st, n)
  local slash = string.find(f, '/', 1, true)
  local key = string.sub(f, 1, slash - 1) .. '|' .. st
  local d = deltas[ledger]
  if not d then
    d = {}
    deltas[ledger] = d
  end
  d[key] = (d[key] or 0) + n
end

local function set_state(ledger, f, old, new)
  redis.call('HSET', ledger, f, new)
  if old then count(ledger, f, old, -1) end
  count(ledger, f, new, 1)
end

-- The counters live in the alert's hash (the ledger's key without ":l"), as
-- "n|kind|state": no key of their own to create and expire.
local function flush_counts()
  for ledger, d in pairs(deltas) do
    local akey = string.sub(ledger, 1, -3)
    for k, n in pairs(d) do
      if n ~= 0 then redis.call('HINCRBY', akey, 'n|' .. k, n) end
    end
  end
  deltas = {}
end

local function lane(prefix, kind)
  local p = prefix .. ':lane:' .. kind
  return p .. ':ready', p .. ':jobs', p .. ':wake', p .. ':seq', p .. ':delayed'
end

local function ledger_key(prefix, id)
  return prefix .. ':a:' .. id .. ':l'
end

-- push_job puts a job on its lane: ready at once, or, with not_before (ms),
-- on the lane's delayed set until then (claimCmd moves it to ready).
local function push_job(prefix, job, not_before)
  local ready, jobs, wake, seq, delayed = lane(prefix, job.k)
  job.q = redis.call('INCR', seq)
  job.id = job.a .. ':' .. job.m .. ':' .. job.k .. ':' .. job.q
  redis.call('HSET', jobs, job.id, cjson.encode(job))
  if not_before then
    redis.call('ZADD', delayed, not_before, job.id)
    return
  end
  redis.call('ZADD', ready, (10 - job.p) * 1e13 + job.q, job.id)
  if redis.call('LLEN', wake) < 64 then redis.call('LPUSH', wake, '1') end
end

-- push_retractions queues retraction jobs (priority 10) for targets grouped by
-- kind, marking each target's retraction queued in the ledger.
local function push_retractions(prefix, id, by_kind, batch, expires)
  local n = 0
  local ledger = ledger_key(prefix, id)
  for kind, targets in pairs(by_kind) do
    for i = 1, #targets, batch do
      local t = {}
      for j = i, math.min(i + batch - 1, #targets) do
        t[#t + 1] = targets[j]
        set_state(ledger, 'r|' .. kind .. '/' .. targets[j], nil, 'queued')
      end
      push_job(prefix, {a = id, k = kind, m = 'r', p = 10, t = t, x = expires})
      n = n + #t
    end
  end
  return n
end

-- add_jobs records the targets of jobs (a decoded [{k, t}] list) as queued in
-- the alert's ledger and puts one job per entry on its lane.
local function add_jobs(prefix, id, ledger, jobs, prio, expires)
  for _, j in ipairs(jobs) do
    local args = {}
    for _, t in ipairs(j.t) do
      args[#args + 1] = j.k .. '/' .. t
      args[#args + 1] = 'queued'
    end
    if #args > 0 then
      redis.call('HSET', ledger, unpack(args))
      count(ledger, j.k .. '/', 'queued', #j.t)
    end
    push_job(prefix, {a = id, k = j.k, m = 'a', p = prio, t = j.t, x = expires})
  end
end

-- remembered is the state a job's outcome leaves an original target in,
-- given its attempt mark ("x|"): a target an earlier job may have reached
-- stays attempted whatever a later job reports — handed back untried it is
-- "retry", cancelled by the fence or expired before its next try it is
-- "failed" (and owed its retraction).
local function remembered(ledger, f, new, m)
  if m ~= 'a' or (new ~= 'queued' and new ~= 'cancelled' and new ~= 'expired') then return new end
  if redis.call('HEXISTS', ledger, 'x|' .. f) == 0 then return new end
  if new == 'queued' then return 'retry' end
  return 'failed'
end

-- attempted: a target in this state may have been reached (its original
-- was handed to a provider or device, or may have been), so a retraction
-- owes it a notice. "retry" is attempted and waiting for its next attempt.
local function attempted(st)
  return st == 'in_flight' or st == 'sent' or st == 'delivered' or st == 'failed' or st == 'retry'
end
`

// enqueueCmd decides whether an alert is new, and if it is, stores it with
// its ledger and puts its jobs on their lanes, all in one step. The rules
// (the dedup table in README.md, tested row by row in dedup_test.go):
//
//   - A trigger's event id (KEYS[7]) is spent here, in the step that stores
//     the decision: seen before, the request is a replay (3) and changes
//     nothing. A failed call spends nothing, so the source's retry is heard.
//   - An Idempotency-Key (KEYS[1], per principal) names one request: its
//     repeat is answered with the alert it made, whatever became of it (1),
//     and refused if its content differs (2).
//   - A fingerprint (KEYS[2]: sender, event, zones, type, status) absorbs the
//     request into the alert it names (1) only while that alert is live and
//     the request asks for nothing more: not after it was retracted or
//     superseded (fenced) — or was reset at every panel that raised it — or
//     expired, and not when the request
//     escalates it: a higher severity or urgency, or a channel kind it did
//     not use. Then the request is a new alert (0) and takes the fingerprint
//     over; the answer names the earlier alert and why it did not absorb it.
//     An absorbed request's Idempotency-Key names the alert that absorbed it.
//     A request that supersedes alerts (a CAP Update) is never absorbed.
//   - A trigger's source is recorded as holding the alert it made or joined
//     raised, in the same step (a panel's reset counts on it).
//   - A new alert fences the alerts it supersedes (a CAP Update) in the same
//     step, so a crash leaves either the old alerts or the new one in force,
//     never neither. Their ledgers are swept by sweepCmd (retracting set).
//
// KEYS[1] idempotency dedup key ("…:-": none)   KEYS[2] fingerprint dedup key ("…:-": none)
// KEYS[3] alert hash              KEYS[4] ledger
// KEYS[5] alerts index            KEYS[6] planning set
// KEYS[7] trigger event key ("…:-": none)       KEYS[8] retracting set
// ARGV[1] shard prefix   ARGV[2] alert id   ARGV[3] alert JSON
// ARGV[4] idempotency TTL ms   ARGV[5] fingerprint TTL ms
// ARGV[6] now ms       ARGV[7] keep-until ms (PEXPIREAT of the alert's keys)
// ARGV[8] expires ms   ARGV[9] priority
// ARGV[10] jobs JSON: [{k: kind, t: [target ids]}], the first chunk
// ARGV[11] index horizon ms: index entries created before it are dropped
// ARGV[12] jobs in the whole plan   ARGV[13] planning deadline ms
// ARGV[14] severity (0 Unknown .. 4 Extreme)   ARGV[15] urgency (0 Unknown .. 4 Immediate)
// ARGV[16] channel kinds as ",siren,sms,"      ARGV[17] content digest ("" without an idempotency key)
// ARGV[18] trigger event TTL ms   ARGV[19] fence channel   ARGV[20] sweep deadline ms
// ARGV[21] trigger source (recorded as holding the alert raised)
// KEYS[9] audit seq   KEYS[10] audit log
// ARGV[22..25] the alert.accepted body, built in Go but for why and
// earlier (auditParts): its head ("" appends no entries at all) and its
// detail's fragments before earlier, between earlier and why, after why
// ARGV[26..28] the alert.duplicate body but for subject and reason: its
// head, its detail's fragments before reason and after it
// ARGV[29] audit entry time (JSON)   ARGV[30] actor
// ARGV[31] "" unless the request supersedes alerts (a CAP Update); then "+"
// and the ids it supersedes in other shards, comma-separated (kept in the
// alert's "sup_else" for its repeat: Enqueue fences them after)
// ARGV[32..] ids of the alerts it supersedes in this shard (another
// shard's are fenced after, by Enqueue)
//
// It appends alert.accepted for a new alert (detail: status, msg_type,
// event, severity, urgency, priority, zones, channels, principal, source,
// trigger, targets, expires, supersedes, fingerprint — those not empty — and
// why and earlier when an earlier alert with its fingerprint did not absorb it),
// alert.retracted for each superseded alert it fences (reason superseded,
// note, superseded_by, before_delivery), and alert.duplicate for an answer
// with an existing alert (subject that alert; detail: reason
// idempotency_key or fingerprint, request: the id the request would have
// had, fingerprint, trigger). A conflict (2) or a replay (3) appends nothing.
//
// Returns {code, id, why, earlier, fenced}: code 0 a new alert (why: "" or
// why the earlier alert with its fingerprint did not absorb it: retracted,
// expired, escalated); 1 a duplicate of id (why: idempotency_key or
// fingerprint); 2 the idempotency key names id, whose content differs; 3 a
// replayed trigger event. fenced lists the superseded alerts fenced now.
var enqueueCmd = auditedLedgerScript(`
local now = tonumber(ARGV[6])
local sup = 32
-- A key the request has none of is the shard's placeholder "…:-" (every
-- key a script names is in its shard's slot).
local function has(k) return string.sub(k, -2) ~= ':-' end
local function duplicate(of, reason)
  if ARGV[22] == '' then return end
  tocsin_audit(KEYS[9], KEYS[10], tocsin_close(ARGV[26] .. ',"subject":' .. tocsin_json(of),
    ARGV[27], tocsin_frag('reason', reason), ARGV[28]))
end
if has(KEYS[7]) and redis.call('EXISTS', KEYS[7]) == 1 then
  return {3, redis.call('GET', KEYS[7]), 'replay', '', {}}
end
local function spend(id)
  if has(KEYS[7]) then redis.call('SET', KEYS[7], id, 'PX', ARGV[18]) end
end
-- raise records a trigger source as holding alert id raised (until its reset).
local function raise(id)
  if not has(KEYS[7]) then return end
  local raised = ARGV[1] .. ':a:' .. id .. ':raised'
  redis.call('SADD', raised, ARGV[21])
  redis.call('PEXPIREAT', raised, ARGV[7])
end
-- An idempotency key holds "id|digest of the request that used it".
if has(KEYS[1]) then
  local v = redis.call('GET', KEYS[1])
  if v then
    if string.sub(v, 1, 10) == 'cancelled:' then
      duplicate(v, 'idempotency_key')
      return {1, v, 'idempotency_key', '', {}}
    end
    local bar = string.find(v, '|', 1, true)
    local prev, d = v, ''
    if bar then prev, d = string.sub(v, 1, bar - 1), string.sub(v, bar + 1) end
    if d ~= '' and d ~= ARGV[17] then return {2, prev, 'idempotency_key', '', {}} end
    duplicate(prev, 'idempotency_key')
    return {1, prev, 'idempotency_key', '', {}}
  end
end
local why, earlier = '', ''
-- An update (it supersedes alerts) is never absorbed: what it replaces must
-- be fenced, and its own text sent.
if has(KEYS[2]) and ARGV[31] == '' then
  local prev = redis.call('GET', KEYS[2])
  if prev then
    local a = redis.call('HMGET', ARGV[1] .. ':a:' .. prev, 'fence', 'expires', 'sev', 'urg', 'ch', 'lowered')
    earlier = prev
    if not a[2] then
      why = ''
      earlier = ''
    elseif a[1] == '1' or a[6] == '1' then
      -- Retracted, superseded, or reset at every panel that raised it (its
      -- retraction follows).
      why = 'retracted'
    elseif now >= tonumber(a[2]) then
      why = 'expired'
    elseif a[3] and (tonumber(ARGV[14]) > tonumber(a[3]) or tonumber(ARGV[15]) > tonumber(a[4])) then
      why = 'escalated'
    elseif a[5] then
      for k in string.gmatch(ARGV[16], '[^,]+') do
        if not string.find(a[5], ',' .. k .. ',', 1, true) then why = 'escalated' end
      end
    end
    if why == '' and earlier ~= '' then
      spend(prev)
      raise(prev)
      -- The request's key now names the alert that absorbed it, so its
      -- repeat (or a CAP Cancel of it) finds that alert.
      if has(KEYS[1]) then redis.call('SET', KEYS[1], prev .. '|' .. ARGV[17], 'PX', ARGV[4]) end
      duplicate(prev, 'fingerprint')
      return {1, prev, 'fingerprint', '', {}}
    end
  end
end
local id = ARGV[2]
spend(id)
raise(id)
if has(KEYS[1]) then redis.call('SET', KEYS[1], id .. '|' .. ARGV[17], 'PX', ARGV[4]) end
if has(KEYS[2]) then redis.call('SET', KEYS[2], id, 'PX', ARGV[5]) end
local jobs = cjson.decode(ARGV[10])
redis.call('HSET', KEYS[3], 'doc', ARGV[3], 'fence', '0', 'created', ARGV[6], 'expires', ARGV[8],
  'sev', ARGV[14], 'urg', ARGV[15], 'ch', ARGV[16])
if #ARGV[31] > 1 then redis.call('HSET', KEYS[3], 'sup_else', string.sub(ARGV[31], 2)) end
if tonumber(ARGV[12]) > #jobs then
  redis.call('HSET', KEYS[3], 'jobs_total', ARGV[12], 'jobs_planned', #jobs)
  redis.call('ZADD', KEYS[6], ARGV[13], id)
end
add_jobs(ARGV[1], id, KEYS[4], jobs, tonumber(ARGV[9]), tonumber(ARGV[8]))
redis.call('PEXPIREAT', KEYS[3], ARGV[7])
if #jobs > 0 then redis.call('PEXPIREAT', KEYS[4], ARGV[7]) end
redis.call('ZADD', KEYS[5], ARGV[6], id)
redis.call('ZREMRANGEBYSCORE', KEYS[5], '-inf', '(' .. ARGV[11])
if ARGV[22] ~= '' then
  tocsin_audit(KEYS[9], KEYS[10], tocsin_close(ARGV[22], ARGV[23], tocsin_frag('earlier', earlier),
    ARGV[24], tocsin_frag('why', why), ARGV[25]))
end
local fenced = {}
for i = sup, #ARGV do
  local old = ARGV[1] .. ':a:' .. ARGV[i]
  if redis.call('EXISTS', old) == 1 and redis.call('HGET', old, 'fence') ~= '1' then
    tocsin_record(KEYS[9], KEYS[10], ARGV[29], ARGV[30], 'alert.retracted', ARGV[i],
      {reason = 'superseded', note = 'superseded by ' .. id, superseded_by = id,
      before_delivery = tostring(not tocsin_reached(old))})
    redis.call('HSET', old, 'fence', '1', 'reason', 'superseded', 'note', 'superseded by ' .. id,
      'retracted', ARGV[6], 'sweep', '0', 'superseded_by', id)
    redis.call('PUBLISH', ARGV[19], ARGV[i])
    redis.call('ZADD', KEYS[8], ARGV[20], ARGV[i])
    fenced[#fenced + 1] = ARGV[i]
  end
end
return {0, id, why, earlier, fenced}
`)

// planCmd adds the next chunk of a large alert's jobs, if the plan stands at
// the chunk's offset (so a chunk is never planned twice, whoever plans it).
// A fenced (retracted) or expired alert is planned no further: its unplanned
// targets were never attempted and are told nothing.
//
// KEYS[1] alert hash   KEYS[2] ledger   KEYS[3] planning set
// ARGV[1] shard prefix   ARGV[2] alert id   ARGV[3] offset (jobs planned before this chunk)
// ARGV[4] jobs JSON    ARGV[5] now ms     ARGV[6] next planning deadline ms
// ARGV[7] priority     ARGV[8] keep-until ms (PEXPIREAT of the ledger)
//
// Returns the number of jobs planned after the call, or -1 when the alert is
// gone or planning has ended.
var planCmd = ledgerScript(`
local a = redis.call('HMGET', KEYS[1], 'jobs_planned', 'jobs_total', 'fence', 'expires')
local planned, total = tonumber(a[1]), tonumber(a[2])
if not planned or planned >= total then
  redis.call('ZREM', KEYS[3], ARGV[2])
  return -1
end
if planned ~= tonumber(ARGV[3]) then return planned end
if a[3] == '1' or tonumber(ARGV[5]) >= tonumber(a[4]) then
  redis.call('HSET', KEYS[1], 'jobs_total', planned)
  redis.call('ZREM', KEYS[3], ARGV[2])
  return -1
end
local jobs = cjson.decode(ARGV[4])
add_jobs(ARGV[1], ARGV[2], KEYS[2], jobs, tonumber(ARGV[7]), tonumber(a[4]))
redis.call('PEXPIREAT', KEYS[2], ARGV[8])
planned = planned + #jobs
redis.call('HSET', KEYS[1], 'jobs_planned', planned)
if planned >= total then
  redis.call('ZREM', KEYS[3], ARGV[2])
else
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
end
return planned
`)

// takeOverCmd hands an alert whose planner or sweeper missed its deadline
// (crashed) to the caller: it moves the deadline on, if it has passed.
//
// KEYS[1] planning or retracting set   ARGV[1] alert id   ARGV[2] now ms   ARGV[3] new deadline ms
var takeOverCmd = redis.NewScript(`
local d = redis.call('ZSCORE', KEYS[1], ARGV[1])
if not d or tonumber(d) > tonumber(ARGV[2]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
return 1
`)

// claimCmd first hands expired leases back to the ready set and moves
// delayed jobs whose time has come onto it, then pops the highest-priority
// job at or above the minimum priority whose alert is not fenced, marks its
// targets in flight and leases it. Jobs of a fenced (retracted) alert are
// never handed out: their queued targets are cancelled; targets a crashed
// worker left in flight, or that wait for a retry, are attempted and owed
// their retraction. Expired jobs are dropped: targets never attempted are
// marked expired, attempted ones failed.
//
// The first time it drops an expired job of an alert's original with
// targets never attempted, it appends alert.expired (subject the alert;
// detail: kind and unsent, that job's kind and its targets never attempted —
// Status has the alert's totals); the alert's hash remembers it
// ("audit_expired"), so the alert gets one such entry.
//
// KEYS[1] ready   KEYS[2] jobs   KEYS[3] leases   KEYS[4] delayed
// KEYS[5] audit seq   KEYS[6] audit log
// ARGV[1] shard prefix   ARGV[2] now ms   ARGV[3] lease ms   ARGV[4] retraction batch
// ARGV[5] retraction expiry ms   ARGV[6] minimum priority (0 takes any job)
// ARGV[7] audit entry time (JSON; "" appends none)   ARGV[8] actor
// ARGV[9] the highest score to take ("" any): another shard's best job
//
// Returns the job JSON, false when no job at or above the minimum is
// ready, or "more" when the best job here scores above ARGV[9] (the
// caller claims from the other shard).
var claimCmd = auditedLedgerScript(`
local now = tonumber(ARGV[2])
-- ready moves the jobs of a sorted set whose score (lease deadline or
-- not-before time) has passed back onto the ready set.
local function ready(from, reclaimed)
  for _, jid in ipairs(redis.call('ZRANGEBYSCORE', from, '-inf', now, 'LIMIT', 0, 100)) do
    redis.call('ZREM', from, jid)
    local raw = redis.call('HGET', KEYS[2], jid)
    if raw then
      local j = cjson.decode(raw)
      redis.call('ZADD', KEYS[1], (10 - j.p) * 1e13 + j.q, jid)
      if reclaimed and j.m == 'a' then
        -- Its worker died mid-job: every target it held may have been reached.
        local ledger = ARGV[1] .. ':a:' .. j.a .. ':l'
        for _, t in ipairs(j.t) do
          if redis.call('HGET', ledger, j.k .. '/' .. t) == 'in_flight' then
            redis.call('HSET', ledger, 'x|' .. j.k .. '/' .. t, '1')
          end
        end
      end
    end
  end
end
ready(KEYS[3], true)
ready(KEYS[4], false)
-- Scores below bound belong to jobs of the minimum priority or higher.
local bound = (11 - tonumber(ARGV[6])) * 1e13
while true do
  local top = redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')
  if #top == 0 or tonumber(top[2]) >= bound then return false end
  if ARGV[9] ~= '' and tonumber(top[2]) > tonumber(ARGV[9]) then return 'more' end
  local jid = top[1]
  redis.call('ZREM', KEYS[1], jid)
  local raw = redis.call('HGET', KEYS[2], jid)
  if raw then
    local j = cjson.decode(raw)
    local akey = ARGV[1] .. ':a:' .. j.a
    local ledger = akey .. ':l'
    local field = function(t) return j.k .. '/' .. t end
    if j.m == 'r' then field = function(t) return 'r|' .. j.k .. '/' .. t end end
    local fenced = j.m == 'a' and redis.call('HGET', akey, 'fence') == '1'
    if fenced then
      local retract = {}
      for _, t in ipairs(j.t) do
        local st = redis.call('HGET', ledger, field(t))
        if st == 'in_flight' or st == 'retry' then
          set_state(ledger, field(t), st, 'failed')
          if redis.call('HEXISTS', ledger, 'r|' .. field(t)) == 0 then retract[#retract + 1] = t end
        elseif st == 'queued' then
          set_state(ledger, field(t), st, 'cancelled')
        end
      end
      if #retract > 0 then
        push_retractions(ARGV[1], j.a, {[j.k] = retract}, tonumber(ARGV[4]), now + tonumber(ARGV[5]))
      end
      redis.call('HDEL', KEYS[2], jid)
    elseif now >= j.x then
      local unsent = 0
      for _, t in ipairs(j.t) do
        local st = redis.call('HGET', ledger, field(t))
        if st == 'queued' then
          set_state(ledger, field(t), st, 'expired')
          unsent = unsent + 1
        elseif st == 'in_flight' or st == 'retry' then
          set_state(ledger, field(t), st, 'failed')
        end
      end
      redis.call('HDEL', KEYS[2], jid)
      if unsent > 0 and j.m == 'a' and ARGV[7] ~= '' and redis.call('EXISTS', akey) == 1
        and redis.call('HSETNX', akey, 'audit_expired', '1') == 1 then
        tocsin_record(KEYS[5], KEYS[6], ARGV[7], ARGV[8], 'alert.expired', j.a, {kind = j.k, unsent = tostring(unsent)})
      end
    else
      -- Only targets still open go out: one a late callback settled while
      -- it waited for a retry is not sent again.
      local open = {}
      for _, t in ipairs(j.t) do
        local st = redis.call('HGET', ledger, field(t))
        if st == 'queued' or st == 'retry' then
          set_state(ledger, field(t), st, 'in_flight')
          open[#open + 1] = t
        elseif st == 'in_flight' then
          open[#open + 1] = t
        end
      end
      if #open == 0 then
        redis.call('HDEL', KEYS[2], jid)
      else
        if #open < #j.t then
          j.t = open
          raw = cjson.encode(j)
          redis.call('HSET', KEYS[2], jid, raw)
        end
        redis.call('ZADD', KEYS[3], now + tonumber(ARGV[3]), jid)
        return raw
      end
    end
  end
end
`)

// finishCmd records a claimed job's outcomes and drops the job. Targets the
// worker hands back go on a new job of the same alert, message and priority,
// ready at ARGV[6] (a delayed set until then), with the job's retry count
// raised: "queued" for targets never attempted, "retry" for targets attempted
// and not confirmed. If the alert was fenced meanwhile, nothing is handed
// back: targets never attempted are cancelled, attempted ones failed, and
// every target the job attempted gets its retraction queued now, after its
// original attempt has ended.
//
// KEYS[1] jobs   KEYS[2] leases   KEYS[3] ready
// ARGV[1] shard prefix  ARGV[2] job id  ARGV[3] now ms  ARGV[4] retraction batch
// ARGV[5] retraction expiry ms  ARGV[6] not-before ms of handed-back targets
// ARGV[7] 1 to count the hand-back as a retry, 0 not (shutdown)
// ARGV[8..] target id, state pairs
//
// Returns the number of retractions queued, or -1 if the job was already gone.
var finishCmd = ledgerScript(`
redis.call('ZREM', KEYS[2], ARGV[2])
redis.call('ZREM', KEYS[3], ARGV[2])
local raw = redis.call('HGET', KEYS[1], ARGV[2])
if not raw then return -1 end
redis.call('HDEL', KEYS[1], ARGV[2])
local j = cjson.decode(raw)
local akey = ARGV[1] .. ':a:' .. j.a
local ledger = akey .. ':l'
local pre = j.k .. '/'
if j.m == 'r' then pre = 'r|' .. pre end
local fenced = j.m == 'a' and redis.call('HGET', akey, 'fence') == '1'
local retract, again = {}, {}
for i = 8, #ARGV, 2 do
  local f = pre .. ARGV[i]
  local new = ARGV[i + 1]
  -- An attempt is remembered ("x|" mark) across hand-backs: a target an
  -- earlier job may have reached stays attempted, whatever a later job did.
  if new == 'retry' and j.m == 'a' then
    redis.call('HSET', ledger, 'x|' .. f, '1')
  else
    new = remembered(ledger, f, new, j.m)
  end
  if new == 'queued' or new == 'retry' then
    if fenced and new == 'retry' then
      new = 'failed'
    elseif fenced then
      new = 'cancelled'
    else
      again[#again + 1] = ARGV[i]
    end
  end
  local cur = redis.call('HGET', ledger, f)
  if (cur == 'in_flight' or cur == 'queued' or cur == 'retry') and cur ~= new then
    set_state(ledger, f, cur, new)
  end
  -- A target recorded early (progressCmd) may already have its retraction
  -- queued by a sweep; never queue a second one.
  if fenced and attempted(new) and redis.call('HEXISTS', ledger, 'r|' .. f) == 0 then
    retract[#retract + 1] = ARGV[i]
  end
end
if #again > 0 then
  local nb = tonumber(ARGV[6])
  if nb <= tonumber(ARGV[3]) then nb = nil end
  push_job(ARGV[1], {a = j.a, k = j.k, m = j.m, p = j.p, t = again, x = j.x, n = (j.n or 0) + tonumber(ARGV[7])}, nb)
end
if #retract > 0 then
  return push_retractions(ARGV[1], j.a, {[j.k] = retract}, tonumber(ARGV[4]), tonumber(ARGV[3]) + tonumber(ARGV[5]))
end
return 0
`)

// retractLua holds retract_field, which settles one original target of a
// fenced alert: queued ones are cancelled; ones whose attempt has ended (sent,
// delivered, failed, or waiting to retry) are owed a retraction, collected in
// by_kind unless one is already queued. Targets in flight get theirs from
// finishCmd when their job ends; a waiting retry's job finds the fence when
// it is claimed and fails it without a second notice.
const retractLua = `
local function retract_field(ledger, f, st, by_kind)
  if st == 'queued' then
    set_state(ledger, f, st, 'cancelled')
  elseif (st == 'sent' or st == 'delivered' or st == 'failed' or st == 'retry') and redis.call('HEXISTS', ledger, 'r|' .. f) == 0 then
    local slash = string.find(f, '/', 1, true)
    local kind = string.sub(f, 1, slash - 1)
    by_kind[kind] = by_kind[kind] or {}
    table.insert(by_kind[kind], string.sub(f, slash + 1))
  end
end
`

// retractCmd fences an alert: from now on none of its original jobs is
// claimed, and the fenced id is published on the fence channel. The targets
// named in ARGV[10:] (sirens, PA, dispatch: few, and the most urgent) are
// settled at once (retract_field); the rest of the ledger is swept in chunks
// by sweepCmd, so fencing takes the same time for ten targets or a million.
// The alert goes on the retracting set until the sweep is done.
//
// When the fence takes effect it appends alert.retracted (subject the alert;
// detail: reason, note, before_delivery "true" when no target of it had
// been handed out yet). A retraction of an alert already fenced changes
// nothing and appends nothing (see audit.go).
//
// KEYS[1] alert hash   KEYS[2] ledger   KEYS[3] retracting set
// KEYS[4] audit seq    KEYS[5] audit log
// ARGV[1] shard prefix   ARGV[2] alert id   ARGV[3] now ms   ARGV[4] reason
// ARGV[5] note   ARGV[6] retraction batch   ARGV[7] retraction expiry ms
// ARGV[8] fence channel   ARGV[9] sweep deadline ms
// ARGV[10] audit entry time (JSON; "" appends none)   ARGV[11] actor
// ARGV[12:] ledger fields to settle now
//
// Returns {status, queued}: status 1 fenced now, 0 already fenced, -1 unknown alert.
var retractCmd = auditedLedgerScript(retractLua + `
if redis.call('EXISTS', KEYS[1]) == 0 then return {-1, 0} end
if redis.call('HGET', KEYS[1], 'fence') == '1' then return {0, 0} end
tocsin_record(KEYS[4], KEYS[5], ARGV[10], ARGV[11], 'alert.retracted', ARGV[2],
  {reason = ARGV[4], note = ARGV[5], before_delivery = tostring(not tocsin_reached(KEYS[1]))})
redis.call('HSET', KEYS[1], 'fence', '1', 'reason', ARGV[4], 'note', ARGV[5], 'retracted', ARGV[3], 'sweep', '0')
redis.call('PUBLISH', ARGV[8], ARGV[2])
local by_kind = {}
for i = 12, #ARGV do
  local st = redis.call('HGET', KEYS[2], ARGV[i])
  if st then retract_field(KEYS[2], ARGV[i], st, by_kind) end
end
local n = push_retractions(ARGV[1], ARGV[2], by_kind, tonumber(ARGV[6]), tonumber(ARGV[3]) + tonumber(ARGV[7]))
redis.call('ZADD', KEYS[3], ARGV[9], ARGV[2])
return {1, n}
`)

// sweepCmd settles the next chunk of a fenced alert's ledger (HSCAN from the
// cursor stored in the alert), if the sweep stands at the caller's cursor.
//
// KEYS[1] alert hash   KEYS[2] ledger   KEYS[3] retracting set
// ARGV[1] shard prefix   ARGV[2] alert id   ARGV[3] cursor   ARGV[4] fields per chunk
// ARGV[5] now ms   ARGV[6] next deadline ms   ARGV[7] retraction batch
// ARGV[8] retraction expiry ms
//
// Returns {queued, next cursor}: cursor "0" when the sweep is done, and
// {-1, cursor} when the sweep is elsewhere (or over: cursor "").
var sweepCmd = ledgerScript(retractLua + `
local cur = redis.call('HGET', KEYS[1], 'sweep')
if cur ~= ARGV[3] then
  if not cur then redis.call('ZREM', KEYS[3], ARGV[2]) end
  return {-1, cur or ''}
end
local r = redis.call('HSCAN', KEYS[2], cur, 'COUNT', ARGV[4])
local by_kind = {}
local fields = r[2]
for i = 1, #fields, 2 do
  local p = string.sub(fields[i], 1, 2)
  if p ~= 'r|' and p ~= 'x|' then retract_field(KEYS[2], fields[i], fields[i + 1], by_kind) end
end
local n = push_retractions(ARGV[1], ARGV[2], by_kind, tonumber(ARGV[7]), tonumber(ARGV[5]) + tonumber(ARGV[8]))
if r[1] == '0' then
  redis.call('HDEL', KEYS[1], 'sweep')
  redis.call('ZREM', KEYS[3], ARGV[2])
else
  redis.call('HSET', KEYS[1], 'sweep', r[1])
  redis.call('ZADD', KEYS[3], ARGV[6], ARGV[2])
end
return {n, r[1]}
`)

// extendCmd pushes a lease deadline out, if the lease is still held.
//
// KEYS[1] leases   ARGV[1] job id   ARGV[2] new deadline ms
// Returns 1 if extended, 0 if the lease was gone.
var extendCmd = redis.NewScript(`
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) then return 0 end
redis.call('ZADD', KEYS[1], ARGV[2], ARGV[1])
return 1
`)

// progressCmd records final outcomes of some of a job's targets before the
// job finishes, so the ledger shows an acked siren as delivered while others
// of its batch are still being retried. It only moves targets in flight.
//
// KEYS[1] ledger   ARGV[1..] field ("kind/id" or "r|kind/id"), state pairs
// Returns how many it recorded.
var progressCmd = ledgerScript(`
local n = 0
for i = 1, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) == 'in_flight' then
    local m = 'a'
    if string.sub(ARGV[i], 1, 2) == 'r|' then m = 'r' end
    set_state(KEYS[1], ARGV[i], 'in_flight', remembered(KEYS[1], ARGV[i], ARGV[i + 1], m))
    n = n + 1
  end
end
return n
`)

// callbackCmd moves a target's ledger state on a provider's status callback.
// Callbacks come late, twice, or out of order, so a state only moves forward:
// in_flight -> sent -> delivered | failed; final states stay.
//
// KEYS[1] ledger   ARGV[1] field ("kind/id" or "r|kind/id")   ARGV[2] state
// Returns 1 if moved, 0 if not (unknown target, or not forward).
var callbackCmd = ledgerScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if not cur then return 0 end
-- A late callback of an earlier attempt while a later one is on the wire
-- changes nothing: the later attempt's outcome stands, and a retraction
-- must not be queued while it may still arrive.
if cur == 'in_flight' and redis.call('HEXISTS', KEYS[1], 'x|' .. ARGV[1]) == 1 then return 0 end
local rank = {queued = 0, retry = 0, in_flight = 1, sent = 2, delivered = 3, failed = 3, cancelled = 3, expired = 3}
if (rank[ARGV[2]] or 0) <= (rank[cur] or 3) then return 0 end
set_state(KEYS[1], ARGV[1], cur, ARGV[2])
return 1
`)

// tryReserveCmd paces a sender with GCRA, in units (SMS segments, calls):
// if the sender's next slot is free now, it takes it for cost units and
// returns {0, slot}; otherwise it takes nothing and returns {wait µs, 0}. A
// caller holds at most the slot it is about to use, so a retraction asking
// next gets the next free slot, and nothing is left reserved by work the
// fence cut short. slot identifies the reservation for unreserveCmd.
//
// A slot due within the slack counts as free, and one due less than an
// interval ago is taken from its due time: the caller's timer wakes a little
// early or late, and the schedule (not the wake-up) sets the pace.
//
// KEYS[1] the sender's theoretical arrival time (µs)
// ARGV[1] now µs   ARGV[2] interval µs (1e6 / rate)   ARGV[3] cost (units)   ARGV[4] slack µs
var tryReserveCmd = redis.NewScript(`
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat - now > tonumber(ARGV[4]) then return {tat - now, 0} end
-- A slot due a moment ago (a late wake-up) is taken from its due time, so
-- the pace does not drift down; an idle sender starts from now.
if tat < now - interval then tat = now end
local slot = tat + tonumber(ARGV[3]) * interval
redis.call('SET', KEYS[1], string.format('%d', slot), 'PX', math.ceil((slot - now) / 1000) + 1000)
return {0, slot}
`)

// unreserveCmd gives a reservation back that was not used (the fence
// stopped the send, or it failed before anything went out), if no later
// slot was taken since.
//
// KEYS[1] the sender's theoretical arrival time (µs)
// ARGV[1] slot (as tryReserveCmd returned it)   ARGV[2] cost   ARGV[3] interval µs
// Returns 1 if given back.
var unreserveCmd = redis.NewScript(`
if tonumber(redis.call('GET', KEYS[1]) or '0') ~= tonumber(ARGV[1]) then return 0 end
redis.call('SET', KEYS[1], string.format('%d', tonumber(ARGV[1]) - tonumber(ARGV[2]) * tonumber(ARGV[3])), 'KEEPTTL')
return 1
`)
