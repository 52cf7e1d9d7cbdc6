#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0-or-later
# A one-node Ceph cluster for tests: one monitor and one memstore OSD on
# 127.0.0.1 (a free port), no authentication, replication size 1, and a pool
# named 'rbd' initialised for RBD. Everything (data, logs, sockets, pid
# files, ceph.conf) lives in DIR, which the caller owns.
#
# MICRO_CEPH_AUTH=cephx starts it with cephx authentication instead: the
# admin key is in DIR/keyring (named in ceph.conf, so the tools just work),
# and a user client.berth (rwx on the pool) has its key, base64, alone in
# DIR/client.berth.key.
#
#   tests/ceph/micro-ceph.sh start DIR   # prints DIR/ceph.conf when healthy
#   tests/ceph/micro-ceph.sh stop DIR    # stops the daemons it started
#   tests/ceph/micro-ceph.sh status DIR  # exit 0 when the pool answers
#
# Clients then use `-c DIR/ceph.conf` (ceph, rbd, rados) or conf=DIR/ceph.conf
# (the rbd block driver). Needs ceph-mon, ceph-osd and ceph-common
# (scripts/install-deps.sh). Each wait is bounded (MICRO_CEPH_TIMEOUT, 60 s).
set -euo pipefail

cmd=${1:-}
dir=${2:-}
timeout_s=${MICRO_CEPH_TIMEOUT:-60}

die() { echo "micro-ceph: $*" >&2; exit 1; }

[ -n "$cmd" ] && [ -n "$dir" ] || die "usage: $0 start|stop|status DIR"

for tool in ceph-mon ceph-osd ceph monmaptool rbd; do
    command -v "$tool" >/dev/null || { [ "$cmd" = stop ] || die "$tool not found (install ceph-mon ceph-osd ceph-common)"; }
done

conf="$dir/ceph.conf"

free_port() {
    /usr/bin/python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}

# Run a ceph command with a bounded client timeout.
c() { timeout 30 ceph -c "$conf" --connect-timeout 10 "$@"; }

# The same, tried again (10 times, 0.5 s apart): a monitor that has just
# come up on a loaded machine may still refuse commands (EPERM "problem
# getting command descriptions"). Only for idempotent commands.
c_retry() {
    local i
    for i in $(seq 10); do
        c "$@" && return 0
        sleep 0.5
    done
    return 1
}

wait_for() {
    local what=$1; shift
    local deadline=$((SECONDS + timeout_s))
    until "$@" >/dev/null 2>&1; do
        if [ $SECONDS -ge $deadline ]; then
            echo "micro-ceph: timed out after ${timeout_s}s waiting for $what; logs in $dir/log" >&2
            return 1
        fi
        sleep 0.2
    done
}

osd_up() { c osd dump 2>/dev/null | grep -q '^osd.0 up'; }
pool_answers() { timeout 15 rados -c "$conf" -p rbd --rados-osd-op-timeout 5 ls >/dev/null 2>&1; }

kill_pidfile() {
    local f=$1 pid
    [ -s "$f" ] || return 0
    pid=$(cat "$f")
    # Only ours: the process must still be a ceph daemon using our conf.
    if [ -r "/proc/$pid/cmdline" ] && tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF -- "$conf"; then
        kill "$pid" 2>/dev/null || true
        for _ in $(seq 50); do
            [ -d "/proc/$pid" ] || break
            sleep 0.1
        done
        [ -d "/proc/$pid" ] && kill -9 "$pid" 2>/dev/null || true
    fi
    rm -f "$f"
}

start() {
    mkdir -p "$dir"
    dir=$(cd "$dir" && pwd)
    conf="$dir/ceph.conf"
    [ -e "$dir/mon.a" ] && die "$dir already holds a cluster (stop it and use a fresh folder)"
    mkdir -p "$dir/log" "$dir/run" "$dir/mon.a" "$dir/osd.0"
    local port fsid osd_uuid
    port=$(free_port)
    fsid=$(cat /proc/sys/kernel/random/uuid)
    osd_uuid=$(cat /proc/sys/kernel/random/uuid)
    local auth=none keyring=/dev/null mon_keyring_opt=()
    case "${MICRO_CEPH_AUTH:-none}" in
        none) ;;
        cephx)
            auth=cephx
            keyring=$dir/keyring
            ceph-authtool --create-keyring "$dir/mon.keyring" --gen-key -n mon. \
                --cap mon 'allow *' >/dev/null
            ceph-authtool --create-keyring "$keyring" --gen-key -n client.admin \
                --cap mon 'allow *' --cap osd 'allow *' --cap mgr 'allow *' >/dev/null
            ceph-authtool "$dir/mon.keyring" --import-keyring "$keyring" >/dev/null
            mon_keyring_opt=(--keyring "$dir/mon.keyring")
            ;;
        *) die "MICRO_CEPH_AUTH must be none or cephx" ;;
    esac

    cat >"$conf" <<EOF
[global]
fsid = $fsid
mon_host = v1:127.0.0.1:$port
ms_bind_msgr2 = false
ms_bind_ipv4 = true
ms_bind_ipv6 = false
public_addr = 127.0.0.1
auth_cluster_required = $auth
auth_service_required = $auth
auth_client_required = $auth
osd_pool_default_size = 1
osd_pool_default_min_size = 1
osd_pool_default_pg_num = 8
osd_pool_default_pgp_num = 8
osd_crush_chooseleaf_type = 0
mon_allow_pool_size_one = true
mon_allow_pool_delete = true
mon_warn_on_pool_no_redundancy = false
mon_max_pg_per_osd = 1000
run_dir = $dir/run
admin_socket = $dir/run/\$name.asok
pid_file = $dir/run/\$name.pid
log_file = $dir/log/\$name.log
keyring = $keyring
rbd_default_features = 61
[client]
# Short client timeouts, so that a test that stops the cluster under load
# sees its requests fail soon (MICRO_CEPH_CLIENT_TIMEOUT seconds).
rados_osd_op_timeout = ${MICRO_CEPH_CLIENT_TIMEOUT:-10}
rados_mon_op_timeout = ${MICRO_CEPH_CLIENT_TIMEOUT:-10}
client_mount_timeout = ${MICRO_CEPH_CLIENT_TIMEOUT:-10}
[mon]
mon_data = $dir/\$name
mon_initial_members = a
mon_osd_reporter_subtree_level = osd
[osd]
# The OSD places itself by hand below: its automatic crush and device class
# updates at start are refused by this Ceph for a fresh memstore OSD.
osd_class_update_on_start = false
osd_crush_update_on_start = false
osd_data = $dir/\$name
keyring = $dir/\$name/keyring
osd_objectstore = memstore
memstore_device_bytes = ${MICRO_CEPH_MEMSTORE_BYTES:-2147483648}
osd_max_object_name_len = 256
osd_max_object_namespace_len = 64
osd_op_num_shards = 2
osd_op_num_threads_per_shard = 2
EOF

    monmaptool --create --clobber --fsid "$fsid" --addv a "[v1:127.0.0.1:$port]" \
        "$dir/monmap" >/dev/null
    ceph-mon -c "$conf" -i a --mkfs --monmap "$dir/monmap" "${mon_keyring_opt[@]}" \
        >/dev/null 2>"$dir/log/mkfs-mon.err" ||
        die "ceph-mon --mkfs failed: $(cat "$dir/log/mkfs-mon.err")"
    ceph-mon -c "$conf" -i a 2>>"$dir/log/mon-start.err" || die "ceph-mon did not start; see $dir/log/mon.a.log"
    wait_for "the monitor" c mon stat

    local id
    id=$(c_retry osd new "$osd_uuid") || die "ceph osd new failed"
    [ "$id" = 0 ] || die "unexpected OSD id $id"
    if [ "$auth" = cephx ]; then
        ceph-authtool --create-keyring "$dir/osd.0/keyring" --gen-key -n osd.0 >/dev/null
        c_retry auth add osd.0 osd 'allow *' mon 'allow profile osd' -i "$dir/osd.0/keyring" \
            >/dev/null 2>&1 || die "ceph auth add osd.0 failed"
    fi
    ceph-osd -c "$conf" -i 0 --mkfs --osd-uuid "$osd_uuid" >/dev/null 2>"$dir/log/mkfs-osd.err" ||
        die "ceph-osd --mkfs failed: $(cat "$dir/log/mkfs-osd.err")"
    c_retry osd crush add osd.0 1.0 root=default >/dev/null 2>&1 || die "crush add failed"
    ceph-osd -c "$conf" -i 0 2>>"$dir/log/osd-start.err" || die "ceph-osd did not start; see $dir/log/osd.0.log"
    wait_for "osd.0 up" osd_up

    c_retry osd pool create rbd 8 8 >/dev/null 2>&1 || die "pool create failed"
    timeout 30 rbd -c "$conf" pool init rbd || die "rbd pool init failed"
    wait_for "the pool to answer" pool_answers
    if [ "$auth" = cephx ]; then
        c_retry auth get-or-create client.berth mon 'profile rbd' osd 'profile rbd pool=rbd' \
            >/dev/null 2>&1 || die "ceph auth get-or-create client.berth failed"
        c auth print-key client.berth >"$dir/client.berth.key" 2>/dev/null ||
            die "ceph auth print-key failed"
    fi
    echo "$conf"
}

stop() {
    [ -d "$dir" ] || return 0
    dir=$(cd "$dir" && pwd)
    conf="$dir/ceph.conf"
    kill_pidfile "$dir/run/osd.0.pid"
    kill_pidfile "$dir/run/mon.a.pid"
}

case "$cmd" in
    start) start ;;
    stop) stop ;;
    status) pool_answers ;;
    *) die "usage: $0 start|stop|status DIR" ;;
esac
