#!/usr/bin/env python3
"""report.py RESULTS.tsv - the table bench/run.sh prints.

Each row of the TSV is: build, metric, variant, value (one measurement).
Figures are medians over the runs; "spread" is (max - min) / median over
the runs of that figure, a direct view of how noisy the machine was.
"""
import statistics
import sys
from collections import defaultdict


def load(path):
    data = defaultdict(list)
    for line in open(path):
        parts = line.rstrip("\n").split("\t")
        if len(parts) != 4 or parts[3] in ("", "-"):
            continue
        try:
            data[(parts[0], parts[1], parts[2])].append(float(parts[3]))
        except ValueError:
            pass
    return data


def med(data, build, metric, variant="-"):
    v = data.get((build, metric, variant))
    return statistics.median(v) if v else None


def spread(data, build, metric, variant="-"):
    v = data.get((build, metric, variant))
    if not v or len(v) < 2:
        return ""
    m = statistics.median(v)
    return f" ±{(max(v) - min(v)) / m * 50:.0f}%" if m else ""


def verdict(ok):
    return "MET" if ok else "NOT MET"


def fmt(x, digits=0):
    return "n/a" if x is None else f"{x:.{digits}f}"


def main():
    data = load(sys.argv[1])
    builds = [b for b in ("stock", "tuned", "lean") if any(k[0] == b for k in data)]
    print("Figures: medians over the runs; ±N% = half the (max - min) range over the runs, "
          "relative to the median.\n")
    for b in builds:
        mib = int(med(data, b, "bytes") or 0) >> 20
        if any(k[0] == b and k[1].startswith("tput_") for k in data):
            print(f"[{b}] relay throughput, one pair, {mib} MiB one way, MB/s = 10^6 bytes/s")
        for c in ("chacha20", "aes128gcm"):
            t1 = med(data, b, "tput_beacon_t1", c)
            t2 = med(data, b, "tput_beacon_t2", c)
            ng = med(data, b, "tput_nginx", c)
            bd = med(data, b, "tput_bound", c)
            if None in (t1, ng, bd):
                continue
            best = max(t1, t2 or 0)
            print(f"  relay throughput {c} ({b}): beacon threads=1 {t1:.0f} MB/s"
                  f"{spread(data, b, 'tput_beacon_t1', c)}, threads=2 {fmt(t2)} MB/s"
                  f"{spread(data, b, 'tput_beacon_t2', c)}, nginx {ng:.0f} MB/s"
                  f"{spread(data, b, 'tput_nginx', c)}, ratio {t1 / ng:.2f} / {fmt(t2 / ng if t2 else None, 2)}"
                  f" (target >= 1.0: {verdict(best / ng >= 1.0)});"
                  f" bound {bd:.0f} MB/s{spread(data, b, 'tput_bound', c)},"
                  f" ratio {t1 / bd:.2f} / {fmt(t2 / bd if t2 else None, 2)}"
                  f" (target >= 0.8: {verdict(best / bd >= 0.8)})")
        so = med(data, b, "tput_socat", "plain")
        if so is not None:
            print(f"  plain TCP floor ({b}): socat {so:.0f} MB/s{spread(data, b, 'tput_socat', 'plain')}")
        if any(k[0] == b and k[1].startswith("hs_") for k in data):
            print(f"[{b}] full TLS 1.3 handshakes (ECDSA P-256 certificate, no resumption),"
                  " beacon threads=1 vs nginx 1 worker")
        for g in ("x25519", "p256"):
            hb = med(data, b, "hs_beacon", g)
            hn = med(data, b, "hs_nginx", g)
            cb = med(data, b, "hs_cpu_beacon", g)
            cn = med(data, b, "hs_cpu_nginx", g)
            if None in (hb, hn):
                continue
            line = (f"  handshakes/s {g} ({b}): beacon {hb:.0f}{spread(data, b, 'hs_beacon', g)},"
                    f" nginx {hn:.0f}{spread(data, b, 'hs_nginx', g)}, ratio {hb / hn:.2f}"
                    f" (target >= 1.0: {verdict(hb / hn >= 1.0)})")
            if cb and cn:
                line += (f"; server CPU per handshake: beacon {cb:.3f} ms, nginx {cn:.3f} ms,"
                         f" ratio {cn / cb:.2f} (target >= 1.0: {verdict(cn / cb >= 1.0)})")
            cc = med(data, b, "hs_client_cpu_beacon", g)
            if cc:
                line += f"; client CPU {cc:.3f} ms per handshake (competes for the same 2 vCPUs)"
            print(line)
        kb = med(data, b, "rooms_beacon_kib_per_conn")
        kw = med(data, b, "rooms_wormhole_kib_per_conn")
        if kb is not None:
            nr = int(med(data, b, "rooms") or 0)
            npairs = int(med(data, b, "pairs") or 0)
            print(f"[{b}] {nr:,} waiting peers (bridge side, hello sent), RSS (after - before) / {nr:,}")
            print(f"  memory per waiting connection ({b}): beacon {kb:.1f} KiB"
                  f"{spread(data, b, 'rooms_beacon_kib_per_conn')} (target <= 16 KiB: {verdict(kb <= 16)});"
                  f" wormhole transit relay (plain TCP, no TLS) {fmt(kw, 1)} KiB")
            p = {k: med(data, b, f"rooms_beacon_{k}") for k in ("p50_us", "p90_us", "p99_us")}
            w = {k: med(data, b, f"rooms_wormhole_{k}") for k in ("p50_us", "p90_us", "p99_us")}
            mb = max(data.get((b, "rooms_beacon_max_us", "-"), [0]))
            mw = max(data.get((b, "rooms_wormhole_max_us", "-"), [0]))
            print(f"  pairing latency ({b}, {npairs:,} pairings among {nr:,} waiting rooms, microseconds):"
                  f" beacon p50 {fmt(p['p50_us'])} p90 {fmt(p['p90_us'])} p99 {fmt(p['p99_us'])}"
                  f"{spread(data, b, 'rooms_beacon_p99_us')} max {mb:.0f};"
                  f" wormhole p50 {fmt(w['p50_us'])} p90 {fmt(w['p90_us'])} p99 {fmt(w['p99_us'])}"
                  f"{spread(data, b, 'rooms_wormhole_p99_us')} max {mw:.0f}")
            if p["p99_us"] is not None and w["p50_us"] and w["p99_us"]:
                r50 = w["p50_us"] / p["p50_us"]
                r99 = w["p99_us"] / p["p99_us"]
                print(f"  pairing targets ({b}): p99 {p['p99_us']:.0f} us (target <= 1000 us:"
                      f" {verdict(p['p99_us'] <= 1000)}); wormhole/beacon p50 {r50:.1f}x, p99 {r99:.1f}x"
                      f" (target >= 10x: {verdict(min(r50, r99) >= 10)})")
        print()
    la = {k[1]: v[0] for k, v in data.items() if k[0] == "all" and k[1].startswith("loadavg_")}
    if la:
        print("machine load (1-min loadavg): " + ", ".join(f"{k[8:]} {v:.2f}" for k, v in la.items()))


if __name__ == "__main__":
    main()
