#!/usr/bin/env python3
"""Print the ratios of the Noise benchmarks from criterion's estimates.

Run after `cargo bench -p securemesh-noise --bench noise`:
    python3 noise/benches/ratios.py [target/criterion]
"""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def ns(*parts):
    f = root.joinpath(*parts, "new", "estimates.json")
    return json.loads(f.read_text())["median"]["point_estimate"]


dh = ns("floor", "x25519-dh")
base = ns("floor", "x25519-base")
print(f"floor: x25519 dh {dh/1e3:.1f} us, base-point {base/1e3:.1f} us")
# X25519 operations per full handshake (both parties): each party derives its
# static public key (base), generates e (base), and does its DH tokens
# (XX: ee, es, se on each side; IK: es, ss, ee, se; NN: ee).
ops = {"XX": (4, 6), "IK": (4, 8), "NN": (2, 2), "XXpsk3": (4, 6)}
for name, (nbase, ndh) in ops.items():
    ours, snow = ns("handshake", name, "securemesh"), ns("handshake", name, "snow")
    floor = nbase * base + ndh * dh
    print(
        f"handshake {name}: securemesh {ours/1e3:.1f} us, snow {snow/1e3:.1f} us, "
        f"ours/snow {ours/snow:.3f}, ours/X25519 floor {ours/floor:.3f} ({nbase} base + {ndh} dh)"
    )
# With --features hfs: the hybrid XX against the classical one, and the
# ML-KEM-768 floor (each party: one keygen or one encaps + one decaps).
try:
    xx = ns("handshake", "XX", "securemesh")
    kg, enc, dec = (ns("floor", f"mlkem768-{k}") for k in ("keygen", "encaps", "decaps"))
    print(f"floor: ML-KEM-768 keygen {kg/1e3:.1f} us, encaps {enc/1e3:.1f} us, decaps {dec/1e3:.1f} us")
    for name, label in (("XXhfs", "ML-KEM-768"), ("XXhfs1024", "ML-KEM-1024")):
        hfs = ns("handshake", name, "securemesh")
        print(f"handshake {name} ({label}): securemesh {hfs/1e3:.1f} us; hybrid/classical XX {hfs/xx:.3f}")
except FileNotFoundError:
    print("(no hfs figures: run the bench with --features hfs)")
for size in (64, 1024, 16384, 65519):
    ours, snow, raw = (ns("transport", k, str(size)) for k in ("securemesh", "snow", "raw-aead"))
    mbs = lambda t: size / t * 1e3  # bytes per ns -> MB/s
    print(
        f"transport {size} B seal+open: securemesh {mbs(ours):.0f} MB/s, snow {mbs(snow):.0f} MB/s, "
        f"raw AEAD {mbs(raw):.0f} MB/s; ours/raw throughput {raw/ours:.3f}, ours/snow throughput {snow/ours:.3f}"
    )
