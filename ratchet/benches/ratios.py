#!/usr/bin/env python3
"""Ratios of the ratchet benchmarks from criterion's estimates.

Run after `cargo bench -p securemesh-ratchet --bench ratchet`:
    python3 ratchet/benches/ratios.py [target/criterion]
"""
import json
import sys
from pathlib import Path

root = Path(sys.argv[1] if len(sys.argv) > 1 else "target/criterion")


def ns(*parts):
    return json.loads(root.joinpath(*parts, "new", "estimates.json").read_text())["median"]["point_estimate"]


dh, base = ns("floor", "x25519-dh"), ns("floor", "x25519-base")
print(f"floor: x25519 dh {dh/1e3:.1f} us, base-point {base/1e3:.1f} us")
ours, olm = ns("setup", "securemesh"), ns("setup", "vodozemac")
# Ours: Alice X3DH (ek: 1 base, 4 DH) + first send step (1 base, 1 DH) + Bob X3DH (4 DH) + receive step (1 DH).
floor = 2 * base + 10 * dh  # plus one Ed25519 verify (identity), not measured here
print(f"setup: securemesh {ours/1e3:.1f} us, vodozemac {olm/1e3:.1f} us, ours/vodozemac {ours/olm:.3f}, "
      f"ours/floor {ours/floor:.3f} (2 base + 10 dh); bundle verify {ns('setup', 'bundle-verify')/1e3:.1f} us")
for group, per_msg_floor in (("burst", 0.0), ("pingpong", base + 2 * dh)):
    for size in (64, 1024):
        o, v = ns(group, "securemesh", str(size)), ns(group, "vodozemac", str(size))
        extra = f", ours/floor {o/per_msg_floor:.3f} (1 keygen + 2 dh)" if per_msg_floor else ""
        print(f"{group} {size} B encrypt+decrypt: securemesh {o/1e3:.2f} us, vodozemac {v/1e3:.2f} us, "
              f"ours/vodozemac {o/v:.3f}{extra}")
