"""Turns loadtest/bench.sh's results (one JSON object per line) into the
Markdown tables BENCHMARKS.md shows."""
import json
import sys

rows = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]


def get(mode, run, senders=None):
    for r in rows:
        if r["mode"] == mode and r["run"] == run and (senders is None or r.get("senders") == senders):
            return r["r"]
    return None


def fig(mode, run, name, scenario=None):
    for r in rows:
        if r["mode"] == mode and r["run"] == run and (scenario is None or r["r"]["scenario"] == scenario):
            return r["r"].get("figures", {}).get(name)
    return None


print("### Ingest: same generator, same Redis, same run\n")
print("| Redis | run | accepted/s | p50 ms | p99 ms | errors | vs bare | vs asynq |")
print("| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |")
for mode in ("aof-always", "no-persistence"):
    bare, peer = get(mode, "bare"), get(mode, "asynq")
    for run in ("tocsin", "asynq", "bare"):
        r = get(mode, run)
        if not r:
            continue
        rate = r["accepted_per_second"]
        print(f"| {mode} | {run} | {rate:,.0f} | {r['latency']['p50_ms']:.2f} | {r['latency']['p99_ms']:.2f} | {r['errors']} "
              f"| {100 * rate / bare['accepted_per_second']:.0f} % | {rate / peer['accepted_per_second']:.2f}× |")

print("\n### Ingest latency against offered load (aof-always; senders = concurrent keep-alive clients)\n")
print("| senders | Tocsin/s | Tocsin p99 ms | asynq/s | asynq p99 ms |")
print("| ---: | ---: | ---: | ---: | ---: |")
curve = []
for n in (1, 4, 16, 64):
    t, a = get("aof-always", "curve-tocsin", n), get("aof-always", "curve-asynq", n)
    if t and a:
        curve.append((n, t, a))
        print(f"| {n} | {t['accepted_per_second']:,.0f} | {t['latency']['p99_ms']:.2f} | {a['accepted_per_second']:,.0f} | {a['latency']['p99_ms']:.2f} |")
if curve:
    print("\n```")
    print("p99 latency (ms) against accepted/s, aof-always — T Tocsin, A asynq")
    top = max(max(t["latency"]["p99_ms"], a["latency"]["p99_ms"]) for _, t, a in curve)
    for n, t, a in curve:
        for tag, r in (("T", t), ("A", a)):
            p99 = r["latency"]["p99_ms"]
            bar = "#" * max(1, round(40 * p99 / top))
            print(f"{tag} {n:>2} senders {r['accepted_per_second']:>7,.0f}/s |{bar} {p99:.1f}")
    print("```")

print("\n### The DESIGN.md targets\n")
print("| what | Tocsin | beside it (same run) | ratio | target | met |")
print("| --- | ---: | ---: | ---: | --- | :---: |")


def row(what, val, ref, ratio, target, ok):
    print(f"| {what} | {val} | {ref} | {ratio} | {target} | {'yes' if ok else '**no**'} |")


for mode in ("aof-always", "no-persistence"):
    t, b, a = get(mode, "tocsin"), get(mode, "bare"), get(mode, "asynq")
    if t:
        rate = t["accepted_per_second"]
        row(f"ingest, {mode}", f"{rate:,.0f}/s", f"bare {b['accepted_per_second']:,.0f}/s, asynq {a['accepted_per_second']:,.0f}/s",
            f"{100 * rate / b['accepted_per_second']:.0f} % of bare, {rate / a['accepted_per_second']:.2f}× asynq",
            "≥ 20,000/s, ≥ 25 % of bare, ≥ 1.5× asynq",
            rate >= 20000 and rate >= 0.25 * b["accepted_per_second"] and rate >= 1.5 * a["accepted_per_second"])
sirens = [r["r"] for r in rows if r["run"] == "siren"]
if len(sirens) == 2:
    i, l = sirens
    row("trigger → siren command, idle", f"p99 {i['latency']['p99_ms']:.1f} ms", f"p50 {i['latency']['p50_ms']:.1f} ms", "", "p99 ≤ 25 ms", i["latency"]["p99_ms"] <= 25)
    row(f"trigger → siren command, during a {l['figures']['recipients']:,.0f}-SMS fan-out", f"p99 {l['latency']['p99_ms']:.1f} ms",
        f"idle p99 {i['latency']['p99_ms']:.1f} ms", f"{l['latency']['p99_ms'] / max(i['latency']['p99_ms'], 0.01):.1f}× idle", "p99 ≤ 50 ms", l["latency"]["p99_ms"] <= 50)
for mode in ("aof-always", "no-persistence"):
    f = (get(mode, "fanout") or {}).get("figures")
    if not f:
        continue
    row(f"fan-out handed to the fake provider, {mode}", f"{f['handed_per_s']:,.0f}/s", f"bare twilio-go {f['bare_twilio_go_per_s']:,.0f}/s",
        f"{100 * f['handed_per_s'] / f['bare_twilio_go_per_s']:.0f} %", "≥ 50,000/s", f["handed_per_s"] >= 50000)
    row(f"{f['recipients']:,.0f} SMS recipients planned and queued, {mode}", f"{f['planned_s']:.1f} s", f"{f['planned_per_s']:,.0f} recipients/s", "",
        "≤ 30 s for 1,000,000", f["planned_s"] <= 30 * f["recipients"] / 1e6)
    row(f"Redis per queued delivery, {mode}", f"{f['redis_bytes_per_delivery']:.0f} B", "", "", "≤ 150 B", f["redis_bytes_per_delivery"] <= 150)
    row(f"gateway peak RSS, {f['recipients']:,.0f}-person fan-out, {mode}", f"{max(f['api_peak_rss_mib'], f['worker_peak_rss_mib']):.0f} MiB",
        f"planning instance {f['api_peak_rss_mib']:.0f}, sending {f['worker_peak_rss_mib']:.0f}", "", "≤ 256 MiB", max(f['api_peak_rss_mib'], f['worker_peak_rss_mib']) <= 256)
if len(sirens) == 2:
    f = sirens[1]["figures"]
    row(f"gateway peak RSS, one instance planning and sending a {f['recipients']:,.0f}-person fan-out", f"{f['gateway_peak_rss_mib']:.0f} MiB", "", "", "≤ 256 MiB", f["gateway_peak_rss_mib"] <= 256)
r = get("aof-always", "retract")
if r:
    f = r["figures"]
    row(f"retraction of {f['reached']:,.0f} reached: originals fenced", f"{f['fence_ms']:.0f} ms", f"{f['originals_after_fence']:.0f} originals after the fence", "", "≤ 100 ms", f["fence_ms"] <= 100)
    row(f"retraction of {f['reached']:,.0f} reached: every retraction handed over", f"p99 {f['retraction_p99_s']:.1f} s",
        f"bare twilio-go sends as many in {f['bare_twilio_go_all_s']:.1f} s", f"{f['retraction_p99_s'] / f['bare_twilio_go_all_s']:.1f}× bare", "p99 ≤ 10 s", f["retraction_p99_s"] <= 10)
    row("retraction: sirens all-clear", f"{f['sirens_all_clear_ms']:.0f} ms", f"{f['sirens_without_all_clear']:.0f} sirens without", "", "≤ 1 s", f["sirens_all_clear_ms"] <= 1000)
    bad = f["retraction_before_original"] + f["reached_not_retracted"] + f["retracted_never_reached"]
    row("retraction: order and coverage", f"{bad:.0f} wrong", "", "", "0 told before reached, 0 reached untold, 0 told unreached", bad == 0)
r = get("aof-always", "recover")
if r:
    f = r["figures"]
    row(f"crash recovery ({f['recipients']:,.0f} SMS, kill -9 mid-fan-out)", f"{f['reclaimed_done_s']:.1f} s, {f['lost']:.0f} lost",
        f"lease {f['lease_s']:.0f} s; {f['duplicated']:.0f} sent twice (in flight at the kill)", "", "reclaimed ≤ 5 s; 0 lost", f["reclaimed_done_s"] <= 5 and f["lost"] == 0)

print("\n<details><summary>Every scenario's summary</summary>\n\n```")
for r in rows:
    print(r["mode"], r["run"], json.dumps(r["r"], sort_keys=True))
print("```\n</details>")
