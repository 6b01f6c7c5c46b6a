#!/bin/sh
# PID 1 of the guest that finishes a foreign-architecture debootstrap: the
# host unpacked the packages (debootstrap --foreign) into the ext4 image on
# /dev/vda but cannot run their maintainer scripts; this guest can. The
# finished tree goes back to the host as a tar stream on /dev/vdb, which
# keeps owners, modes, links and device nodes without the host mounting
# anything.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /newroot
$bb mount -t proc proc /proc
$bb --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
	echo "SECONDSTAGE-ERROR $*"
	poweroff -f
	reboot -f
}

while read -r ko; do
	insmod "$ko" || echo "SECONDSTAGE-WARN insmod $ko failed"
done </secondstage/modules
i=0
while [ ! -b /dev/vda ] || [ ! -b /dev/vdb ]; do
	i=$((i + 1))
	[ $i -gt 300 ] && fail "no /dev/vda and /dev/vdb after 30s"
	sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
mount -t proc proc /newroot/proc
mount -t sysfs sysfs /newroot/sys
mount -o bind /dev /newroot/dev
echo "SECONDSTAGE-START uptime=$(cut -d' ' -f1 /proc/uptime)"
chroot /newroot /debootstrap/debootstrap --second-stage
rc=$?
umount /newroot/dev /newroot/sys /newroot/proc
if [ "$rc" != 0 ]; then
	tail -n 30 /newroot/debootstrap/debootstrap.log
	fail "debootstrap --second-stage exited $rc"
fi
rm -f /newroot/var/cache/apt/archives/*.deb
tar -C /newroot -cf - . >/dev/vdb || fail "writing the tree to /dev/vdb"
sync
echo "SECONDSTAGE-DONE uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
reboot -f
