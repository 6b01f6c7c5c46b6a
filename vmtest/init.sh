#!/bin/sh
# PID 1 of a vmtest guest. Mounts what the tracer and its tests need, loads
# modules, runs every test binary once per attach tier and reports on the
# console with VMTEST-* lines that the host parses, then powers off.
# Run parameters come from /vmtest/config.sh, written by the host per run.

bb=/bin/busybox
$bb mount -t proc proc /proc
# Applet symlinks are made here rather than in the archive: the applet list
# depends on the busybox build, and --install never overwrites existing
# files such as iproute2's ip or dash as /bin/sh.
$bb --install -s
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin
export HOME=/root TMPDIR=/tmp

try_mount() { # type target
	mkdir -p "$2"
	mount -t "$1" "$1" "$2" || echo "VMTEST-WARN mount $1 on $2 failed"
}
try_mount sysfs /sys
try_mount devtmpfs /dev
try_mount devpts /dev/pts
try_mount tmpfs /dev/shm
try_mount tmpfs /run
try_mount tmpfs /tmp
try_mount bpf /sys/fs/bpf
try_mount tracefs /sys/kernel/tracing
try_mount debugfs /sys/kernel/debug
try_mount securityfs /sys/kernel/security
try_mount cgroup2 /sys/fs/cgroup
# ip netns add bind-mounts namespaces here.
mkdir -p /run/netns

hostname vmtest
ip link set lo up || echo "VMTEST-WARN loopback setup failed"
while read -r ko; do
	insmod "$ko" || echo "VMTEST-WARN insmod $ko failed"
done </vmtest/modules
# Kernels before 5.11 charge BPF maps to RLIMIT_MEMLOCK.
ulimit -l unlimited

echo "VMTEST-BOOTED release=$(uname -r) uptime=$(cut -d' ' -f1 /proc/uptime) lsm=$(cat /sys/kernel/security/lsm 2>/dev/null)"

. /vmtest/config.sh

# forward_skips prints one VMTEST-SKIP line per "--- SKIP:" in go test -v
# output. The reason is the test's last log line: -v streams t.Log output
# before the result line, under "=== RUN/CONT/NAME <test>" headers. Output
# printed after the result line (older or buffered output) is used when
# nothing was logged before it.
forward_skips() { # tier binary file
	awk -v pre="VMTEST-SKIP tier=$1 binary=$2" '
	function flush() {
		if (name != "") print pre " test=" name " reason=" reason
		name = ""; reason = ""
	}
	function strip(s) {
		sub(/^[ \t]+/, "", s)
		sub(/^[^ :]+\.go:[0-9]+: /, "", s)
		return s
	}
	/^=== (RUN|CONT|NAME) / { flush(); cur = $3; next }
	match($0, /^ *--- SKIP: /) {
		flush()
		ind = RLENGTH - 10
		name = substr($0, RLENGTH + 1)
		sub(/ \(.*$/, "", name)
		reason = last[name]
		after = reason == ""
		next
	}
	/^ *--- (PASS|FAIL): / { flush(); next }
	{
		match($0, /^ */)
		if (name != "" && RLENGTH > ind) {
			if (after) reason = (reason == "" ? strip($0) : reason " " strip($0))
			next
		}
		flush()
		if (cur == "" || RLENGTH < 4) next
		if ($0 ~ /^    [^ ]/) last[cur] = strip($0)
		else last[cur] = last[cur] " " strip($0)
	}
	END { flush() }' "$3"
}

run_one() { # tier binary args...
	tier=$1 bin=$2
	shift 2
	out=/tmp/vmtest-$tier-$bin.out
	work=/tmp/vmtest-work/$tier/$bin
	mkdir -p "$work"
	echo "VMTEST-BEGIN tier=$tier binary=$bin"
	# The exit status travels through a file because a pipeline's status
	# is tee's; output still streams to the console as the test runs.
	{
		(
			cd "$work" || exit 1
			[ "$tier" = auto ] || export ROUTETRACE_ATTACH="$tier"
			exec "/vmtest/bin/$bin" -test.v -test.count=1 "$@"
		) 2>&1
		echo $? >"$out.rc"
	} | tee "$out"
	rc=$(cat "$out.rc")
	if [ "$rc" != 0 ]; then
		st=fail
	elif grep -q -e '--- PASS:' "$out"; then
		st=pass
	elif grep -q -e '--- SKIP:' "$out"; then
		st=skip
	else
		st=skip
		echo "VMTEST-SKIP tier=$tier binary=$bin test=- reason=no tests ran"
	fi
	forward_skips "$tier" "$bin" "$out"
	echo "VMTEST-RESULT tier=$tier binary=$bin status=$st exit=$rc"
}

# run_bench runs routetrace bench (vmtest --bench) under one tier; its JSON
# result travels to the host on one VMTEST-BENCH line.
run_bench() { # tier args...
	tier=$1
	shift
	out=/tmp/vmtest-bench-$tier.json
	echo "VMTEST-BEGIN tier=$tier binary=bench"
	routetrace bench --attach "$tier" "$@" >"$out"
	rc=$?
	st=fail
	[ "$rc" = 0 ] && st=pass
	echo "VMTEST-BENCH tier=$tier binary=bench json=$(tr -d '\n' <"$out")"
	echo "VMTEST-RESULT tier=$tier binary=bench status=$st exit=$rc"
}

# What the kernel offers, as routetrace's probe finds it: which tier each
# hook gets, why better ones were refused, tier 3's capture, enforce modes.
# The README's kernel table is built from these lines (one JSON line). The
# CLI's TestProbe compares its table with this same JSON
# (ROUTETRACE_PROBE_JSON) instead of probing again: each probe loads every
# hook's programs, 10-15 s under TCG.
if [ -z "$VMTEST_BENCH" ] && command -v routetrace >/dev/null; then
	routetrace probe --output json >/tmp/vmtest-probe.json 2>/dev/null
	echo "VMTEST-PROBE json=$(tr -d '\n' </tmp/vmtest-probe.json)"
	export ROUTETRACE_PROBE_JSON=/tmp/vmtest-probe.json
fi

# BPF run times come from the kernel's sched_clock: say what it runs on.
[ -n "$VMTEST_BENCH" ] && echo "VMTEST-INFO clocksource=$(cat /sys/devices/system/clocksource/clocksource0/current_clocksource) cpus=$(nproc)"
for tier in $VMTEST_TIERS; do
	if [ -n "$VMTEST_BENCH" ]; then
		run_bench "$tier" "$@"
		continue
	fi
	for bin in $VMTEST_BINARIES; do
		run_one "$tier" "$bin" "$@"
	done
done
echo "VMTEST-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
# -f: there is no init system to ask. If poweroff fails, reboot still ends
# QEMU because it runs with -no-reboot.
poweroff -f
reboot -f
