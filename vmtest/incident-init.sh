#!/bin/sh
# PID 1 of the incident scenario's initramfs: load the modules the Debian
# root filesystem needs before it can even be mounted (virtio_blk is a
# module in Debian's cloud kernels) and those the scenario uses, copy this
# run's binaries into the root (QEMU opens the image with snapshot=on, so
# the cached image is never changed), and hand over to systemd.
bb=/bin/busybox
$bb mkdir -p /proc /sys /dev /newroot /usr/bin /usr/sbin /sbin
$bb mount -t proc proc /proc
$bb --install -s
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev

fail() {
	echo "INCIDENT-ERROR initramfs: $*"
	poweroff -f
	reboot -f
}

while read -r ko; do
	insmod "$ko" || echo "INCIDENT-WARN insmod $ko failed"
done </incident/modules
i=0
while [ ! -b /dev/vda ]; do
	i=$((i + 1))
	[ $i -gt 300 ] && fail "no /dev/vda after 30s"
	sleep 0.1
done
mount -t ext4 -o rw /dev/vda /newroot || fail "cannot mount /dev/vda"
while read -r src dst mode; do
	mkdir -p "/newroot${dst%/*}"
	cp "$src" "/newroot$dst" && chmod "$mode" "/newroot$dst" || fail "cannot copy $src to $dst"
done </incident/files
echo "INCIDENT-INITRAMFS uptime=$(cut -d' ' -f1 /proc/uptime) switching to systemd"
umount /sys
umount /dev
umount /proc
exec switch_root /newroot /sbin/init
