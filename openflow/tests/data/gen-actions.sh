#!/bin/sh
# Regenerates actions.txt from Open vSwitch (needs ovs-ofctl; the tests don't).
# Each case is "MATCH|ACTIONS" (MATCH supplies prerequisites, may be empty).
# Output lines: MATCH | ACTIONS | INSTRUCTION-HEX | OVS-NORMALIZED-TEXT
# INSTRUCTION-HEX is the instruction list of the OF1.3 FLOW_MOD OVS encodes
# for "MATCH,actions=ACTIONS" (the bytes after the padded ofp_match).
set -eu
cd "$(dirname "$0")"
out=actions.txt
: > "$out.tmp"
sed -e '/^#/d' -e '/^$/d' cases.txt | while IFS='|' read -r match acts; do
    flow="${match:+$match,}actions=$acts"
    dump=$(ovs-ofctl -O OpenFlow13 -mmmmm parse-flow "$flow" 2>&1) || {
        echo "SKIP (ovs-ofctl rejects): $flow: $dump" >&2; continue; }
    text=$(printf '%s\n' "$dump" | sed -n 's/^OFPT_FLOW_MOD.* actions=//p')
    hex=$(printf '%s\n' "$dump" | sed -n 's/^[0-9a-f]\{8\}  \(.\{47\}\).*/\1/p' | tr -d -- ' \n-')
    # ofp_match starts at byte 48; its length is at bytes 50..51.
    mlen=$((0x$(printf '%s' "$hex" | cut -c101-104)))
    start=$((48 + (mlen + 7) / 8 * 8))
    insts=$(printf '%s' "$hex" | cut -c$((start * 2 + 1))-)
    printf '%s | %s | %s | %s\n' "$match" "$acts" "$insts" "$text" >> "$out.tmp"
done
mv "$out.tmp" "$out"
wc -l "$out"
