#!/usr/bin/env bash
# Smoke test and benchmark for the example central consumer, against a private mosquitto.
#
#   examples/central/smoke.sh          # functional checks (items, duplicates, chunks, malformed
#                                      # payloads, shared subscription, broker restart, state,
#                                      # cmd, publish-config, exit codes)
#   examples/central/smoke.sh bench [N] [BODY_BYTES]
#                                      # drain N items (default 100000 of 1024 bytes) queued at
#                                      # the broker, then the same published live; prints msg/s
#
# Needs mosquitto, mosquitto_pub/sub, python3 and sqlite3. The gateway is played by
# mosquitto_pub with hand-made payloads per docs/mqtt.md. Set CENTRAL to use a built binary
# (default: builds the release example with cargo).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
    rm -rf "$WORK"
}
trap cleanup EXIT

if [[ -z "${CENTRAL:-}" ]]; then
    (cd "$ROOT" && cargo build --release --example central --quiet)
    CENTRAL="${CARGO_TARGET_DIR:-$ROOT/target}/release/examples/central"
fi

fail() { echo "FAIL: $*" >&2; exit 1; }
check() { # check WHAT EXPECTED ACTUAL
    [[ "$2" == "$3" ]] || fail "$1: expected '$2', got '$3'"
    echo "ok: $1"
}

start_broker() { # a private broker on a free port (never someone else's)
    for _ in 1 2 3 4 5; do
        PORT=$(python3 -c "import socket; s=socket.socket(); s.bind(('127.0.0.1',0)); print(s.getsockname()[1])")
        printf 'listener %s 127.0.0.1\nallow_anonymous true\npersistence false\nmax_queued_messages 1000000\n' \
            "$PORT" > "$WORK/mq.conf"
        /usr/sbin/mosquitto -c "$WORK/mq.conf" >> "$WORK/mq.log" 2>&1 &
        BROKER=$!
        sleep 0.3
        if kill -0 "$BROKER" 2>/dev/null; then PIDS+=("$BROKER"); return; fi
    done
    fail "cannot start mosquitto"
}
restart_broker() {
    kill "$BROKER"; wait "$BROKER" 2>/dev/null || true
    /usr/sbin/mosquitto -c "$WORK/mq.conf" >> "$WORK/mq.log" 2>&1 &
    BROKER=$!; PIDS+=("$BROKER"); sleep 0.3
}

URL() { echo "mqtt://127.0.0.1:$PORT"; }
pub() { mosquitto_pub -h 127.0.0.1 -p "$PORT" -q 1 "$@"; }

consume() { # consume NAME ARGS...: starts a consumer, waits for "ready"
    local name=$1; shift
    "$CENTRAL" consume --url "$(URL)" "$@" > "$WORK/$name.out" 2> "$WORK/$name.err" &
    local pid=$!; PIDS+=("$pid"); eval "${name}_PID=$pid"
    for _ in $(seq 1 100); do grep -q '^ready$' "$WORK/$name.out" && return; sleep 0.05; done
    fail "consumer $name never said ready"
}
stop() { local pid; pid=$(eval echo "\$${1}_PID"); kill -TERM "$pid"; wait "$pid" || fail "$1 exited $?"; }

# items.py COUNT BODY_BYTES FIRST_SEQ PREFIX -> one item message per line
items() {
    python3 - "$@" <<'EOF'
import sys, base64, json
n, size, first, prefix = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
for seq in range(first, first + n):
    head = "MSH|^~\\&|EPIC|NORTHFIELD|LIS|LAB|20261123210731||ORU^R01|MSG%08d|P|2.5.1\r" % seq
    body = (head + "X" * size)[:size].encode()
    print(json.dumps({"v": 1, "id": "%s%016d" % (prefix, seq), "seq": seq, "session": 7, "source": "ehr-feed",
        "kind": "hl7v2", "status": "accepted", "received_at": "2026-11-23T21:07:31.412Z", "historical": False,
        "summary": {"message_type": "ORU^R01", "control_id": "MSG%08d" % seq, "sending_app": "EPIC",
                    "sending_facility": "NORTHFIELD", "version": "2.5.1"},
        "charset": "UNICODE UTF-8", "size": len(body), "body_b64": base64.b64encode(body).decode()},
        separators=(",", ":")))
EOF
}
# chunks ID SIZE N [ORDER]: the chunks of one item, cut every N bytes, in ORDER (e.g. 2,0,1)
chunks() {
    python3 - "$@" <<'EOF'
import sys, base64, json
id_, size, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
body = bytes((i * 7) % 251 for i in range(size))
count = (size + n - 1) // n
lines = [json.dumps({"v": 1, "id": id_, "seq": 100, "session": 8, "source": "fax", "kind": "hl7v2",
    "status": "accepted", "received_at": "2026-11-23T21:07:31.412Z", "historical": True, "summary": {},
    "charset": None, "size": size, "body_b64": base64.b64encode(body[i * n:(i + 1) * n]).decode(),
    "chunk": {"index": i, "count": count}}) for i in range(count)]
order = [int(i) for i in sys.argv[4].split(",")] if len(sys.argv) > 4 else range(count)
print("\n".join(lines[i] for i in order))
EOF
}
acked_ids() { python3 -c "
import json, sys
ids = set()
for line in open(sys.argv[1]):
    if line.strip(): ids.update(json.loads(line)['ids'])
print(len(ids))" "$1"; }
q() { sqlite3 "$WORK/$1" "$2"; }

functional() {
    start_broker
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'outpost/v1/+/+/ack' > "$WORK/acks.log" & ACKS=$!; PIDS+=($!)
    consume c1 --store "$WORK/c.sqlite"
    check "central online (retained)" '{"status":"online"}' \
        "$(mosquitto_sub -h 127.0.0.1 -p "$PORT" -t outpost/v1/central/state -C 1 -W 2)"

    items 5 200 1 ITEM | pub -t outpost/v1/north/gw1/msg/ehr-feed -l
    items 2 200 1 ITEM | pub -t outpost/v1/north/gw1/msg/ehr-feed -l           # duplicates
    pub -t outpost/v1/north/gw1/msg/ehr-feed -m 'not json {'
    pub -t outpost/v1/north/gw1/msg/ehr-feed -m '{"id":"X","seq":"oops"}'
    pub -t outpost/v1/north/gw1/msg/ehr-feed -n
    chunks BIG1 10000 4000 2,0 | pub -t outpost/v1/north/gw1/msg/fax -l
    chunks BIG1 10000 4000 1 | pub -t outpost/v1/north/gw1/msg/fax -l         # completes it
    chunks BIG1 10000 4000 | pub -t outpost/v1/north/gw1/msg/fax -l           # a whole re-sent copy
    pub -r -t outpost/v1/north/gw1/state -m '{"v":1,"status":"online","session":7}'
    pub -t outpost/v1/north/gw1/cmd/ping/result -m '{"v":1,"request_id":"r-1","ok":true}'
    sleep 0.5
    check "items stored once" 6 "$(q c.sqlite 'select count(*) from items')"
    check "copies counted" "BIG1 2, ITEM0000000000000001 2, ITEM0000000000000002 2, ITEM0000000000000003 1" \
        "$(q c.sqlite "select group_concat(id || ' ' || copies, ', ') from (select id, copies from items where id in ('ITEM0000000000000001','ITEM0000000000000002','ITEM0000000000000003','BIG1') order by id)")"
    check "a receipt per copy and chunk" 13 "$(q c.sqlite 'select count(*) from receipts')"
    check "chunked body reassembled" 10000 "$(q c.sqlite "select length(body) from items where id = 'BIG1'")"
    check "no chunks left" 0 "$(q c.sqlite 'select count(*) from chunks')"
    check "observed" 2 "$(q c.sqlite 'select count(*) from observed')"
    check "malformed logged, not acked" 3 "$(grep -c 'malformed item' "$WORK/c1.err")"
    check "acked ids" 6 "$(acked_ids "$WORK/acks.log")"

    restart_broker
    sleep 3
    items 3 100 1000 ITEM | pub -t outpost/v1/north/gw2/msg/ehr -l
    sleep 0.5
    check "stored after a broker restart" 3 "$(q c.sqlite "select count(*) from items where gateway = 'north/gw2'")"
    check "ready said once" 1 "$(grep -c ready "$WORK/c1.out")"
    kill "$ACKS"
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'outpost/v1/+/+/ack' > "$WORK/acks2.log" & PIDS+=($!)
    stop c1
    check "central offline on exit" '{"status":"offline"}' \
        "$(mosquitto_sub -h 127.0.0.1 -p "$PORT" -t outpost/v1/central/state -C 1 -W 2)"

    consume a --store "$WORK/s.sqlite" --share central --client-id cA --no-state
    consume b --store "$WORK/s.sqlite" --share central --client-id cB --no-state
    items 200 500 1 SHR | pub -t outpost/v1/east/gw9/msg/ehr -l
    for i in $(seq 1 20); do chunks "BIG$i" 5000 1000; done | pub -t outpost/v1/east/gw9/msg/fax -l
    sleep 1
    check "shared: all items, chunks across consumers" "220 0" \
        "$(q s.sqlite 'select count(*) from items'; ) $(q s.sqlite 'select count(*) from chunks')"
    check "shared: all acked" 220 "$(acked_ids "$WORK/acks2.log")"
    stop a; stop b

    "$CENTRAL" state --url "$(URL)" --online
    check "state --online" '{"status":"online"}' \
        "$(mosquitto_sub -h 127.0.0.1 -p "$PORT" -t outpost/v1/central/state -C 1 -W 2)"
    (   req=$(mosquitto_sub -h 127.0.0.1 -p "$PORT" -t outpost/v1/north/gw1/cmd/ping -C 1 -W 5)
        rid=$(python3 -c "import json,sys; print(json.loads(sys.argv[1])['request_id'])" "$req")
        pub -t outpost/v1/north/gw1/cmd/ping/result -m "{\"v\":1,\"request_id\":\"$rid\",\"ok\":true,\"result\":{\"pong\":true}}"
    ) & sleep 0.3
    check "cmd ping" '"ok":true,"result":{"pong":true}}' \
        "$("$CENTRAL" cmd --url "$(URL)" --site north --node gw1 ping | sed 's/.*r-[0-9A-Z]*",//')"
    printf '[node]\nsite = "north"\n' > "$WORK/outpost.toml"
    local hash; hash="sha256:$(sha256sum "$WORK/outpost.toml" | cut -d' ' -f1)"
    (   mosquitto_sub -h 127.0.0.1 -p "$PORT" -t outpost/v1/north/gw1/config/set -C 1 -W 5 > /dev/null
        pub -r -t outpost/v1/north/gw1/config/status -m "{\"v\":1,\"hash\":\"$hash\",\"status\":\"applying\"}"
        pub -r -t outpost/v1/north/gw1/config/status -m "{\"v\":1,\"hash\":\"$hash\",\"status\":\"applied\"}"
    ) & sleep 0.3
    check "publish-config --wait-status" "{\"v\":1,\"hash\":\"$hash\",\"status\":\"applied\"}" \
        "$("$CENTRAL" publish-config --url "$(URL)" --site north --node gw1 --file "$WORK/outpost.toml" --version v1 --wait-status 5)"
    set +e
    "$CENTRAL" cmd --url "$(URL)" --site north --node gw1 ping --timeout 1 2> /dev/null; check "cmd timeout exit" 1 $?
    "$CENTRAL" state --url mqtt://127.0.0.1:1 2> /dev/null; check "broker down exit" 69 $?
    "$CENTRAL" state --online --offline 2> /dev/null; check "usage exit" 64 $?
    set -e
    echo "all checks passed"
}

bench() {
    local n=${1:-100000} size=${2:-1024}
    start_broker
    items "$n" "$size" 1 DRAIN > "$WORK/drain.txt"
    items "$n" "$size" 1 LIVE0 > "$WORK/live.txt"
    (cd "$WORK" && split -l 10000 drain.txt drain. && split -l 10000 live.txt live.)
    publish_all() { for f in "$WORK/$1".??; do pub -t outpost/v1/north/gw1/msg/ehr-feed -l < "$f"; done; }
    wait_acked() { # wait_acked FILE N -> seconds since epoch when N ids were acked
        python3 - "$1" "$2" <<'EOF'
import json, sys, time
path, target = sys.argv[1], int(sys.argv[2]); ids = set(); buf = ""; deadline = time.time() + 300
with open(path) as f:
    while len(ids) < target and time.time() < deadline:
        chunk = f.read()
        if not chunk: time.sleep(0.005); continue
        buf += chunk; *lines, buf = buf.split("\n")
        for line in lines:
            if line.strip(): ids.update(json.loads(line)["ids"])
print("%.3f" % time.time() if len(ids) >= target else "timeout")
EOF
    }
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'outpost/v1/+/+/ack' > "$WORK/acks-drain.log" & PIDS+=($!)
    # Drain: items queued at the broker for the consumer's persistent session, then it starts.
    consume d --store "$WORK/drain.sqlite"; stop d
    publish_all drain
    local t0; t0=$(date +%s.%N)
    consume d --store "$WORK/drain.sqlite"
    local t1; t1=$(wait_acked "$WORK/acks-drain.log" "$n")
    [[ $t1 != timeout ]] || fail "drain: not all acked"
    echo "drain: $n items of $size bytes stored and acked in $(python3 -c "print(round($t1 - $t0, 2))") s: $(python3 -c "print(round($n / ($t1 - $t0)))") msg/s (from consumer start)"
    stop d
    # Live: the consumer runs while mosquitto_pub publishes.
    mosquitto_sub -h 127.0.0.1 -p "$PORT" -t 'outpost/v1/+/+/ack' > "$WORK/acks-live.log" & PIDS+=($!)
    sleep 0.2
    consume l --store "$WORK/live.sqlite" --client-id live
    t0=$(date +%s.%N)
    publish_all live
    local tp; tp=$(date +%s.%N)
    t1=$(wait_acked "$WORK/acks-live.log" "$n")
    [[ $t1 != timeout ]] || fail "live: not all acked"
    echo "live: published in $(python3 -c "print(round($tp - $t0, 2))") s, all acked $(python3 -c "print(round(($t1 - $tp) * 1000))") ms after the last publish: $(python3 -c "print(round($n / ($t1 - $t0)))") msg/s end to end"
    stop l
}

case "${1:-}" in
    bench) shift; bench "$@" ;;
    "") functional ;;
    *) echo "usage: $0 [bench [N] [BODY_BYTES]]" >&2; exit 64 ;;
esac
