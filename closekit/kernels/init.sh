#!/bin/busybox sh
# The guest's init (closekit.kernels.images builds the initramfs around it). Stage 1, in the
# initramfs: load the modules the lab needs and make the read-only images a writable root.
# Stage 2, in that root after switch_root (not chroot: a chrooted process may not make user
# namespaces, which the lab needs): run the job, leave its output on the scratch disk as a tar,
# power off. Every step it reaches says so on the console, so a guest that stops says where.
say() { echo "closekit-guest: $*"; }
fail() { say "failed: $*"; sync; poweroff -f; sleep 60; }

if [ "$1" != stage2 ]; then
    /bin/busybox mkdir -p /bin /proc /sys /dev
    /bin/busybox --install -s /bin
    export PATH=/bin
    mount -t proc proc /proc
    mount -t sysfs sysfs /sys
    mount -t devtmpfs devtmpfs /dev 2>/dev/null
    say "booted Linux $(uname -r)"
    [ -f /job ] || fail "no /job in the initramfs"
    for m in /modules/*.ko; do
        [ -e "$m" ] || continue
        insmod "$m" || fail "could not load module $(basename "$m" .ko | cut -d- -f2-)"
    done
    say "modules loaded"
    mkdir -p /lower/runtime /lower/course /rw /newroot
    mount -t ext4 -o ro,noload /dev/vda /lower/runtime || fail "could not mount the runtime image (/dev/vda)"
    mount -t ext4 -o ro,noload /dev/vdb /lower/course || fail "could not mount the course image (/dev/vdb)"
    mount -t tmpfs -o size=75% rw /rw
    mkdir -p /rw/upper /rw/work
    mount -t overlay overlay -o lowerdir=/lower/course:/lower/runtime,upperdir=/rw/upper,workdir=/rw/work \
        /newroot || fail "could not mount the overlay root"
    mkdir -p /newroot/proc /newroot/sys /newroot/dev /newroot/tmp /newroot/root /newroot/.closekit/out
    cp /bin/busybox /init /job /newroot/.closekit/
    umount /proc /sys /dev 2>/dev/null
    exec switch_root /newroot /.closekit/busybox sh /.closekit/init stage2
    fail "switch_root failed"
fi

B=/.closekit/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sysfs /sys
$B mount -t devtmpfs devtmpfs /dev
$B mkdir -p /dev/shm /dev/pts
$B mount -t tmpfs -o mode=1777 shm /dev/shm
$B mount -t devpts devpts /dev/pts 2>/dev/null
$B mount -t tmpfs -o mode=1777 tmp /tmp
$B ip link set lo up
$B hostname closekit-guest
cd /.closekit/out || fail "no output folder"
$B uname -r > release
$B uname -v > version
: > stderr
. /.closekit/job  # sets the command line: env -i's assignments, a timeout, the working directory, the program
say "running"
$B tail -f -s 0.2 stderr > /dev/console 2>/dev/null &  # the command's stderr, live, for the host to echo
$B env -i "$@" > stdout 2> stderr < /dev/null
echo $? > status
$B sleep 0.2
$B kill -9 -1  # whatever the command left running (and tail): nothing may hold the guest up
$B tar -cf /dev/vdc stdout stderr status release version || fail "could not write the output disk"
$B sync
say "done"
$B poweroff -f
