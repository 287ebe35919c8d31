#!/guest/busybox sh
# The first process of a flowtel test guest: mounts the host's root
# read-only (9p) where the guest expects its own directories (its /tmp too:
# a checkout may live there), gives the guest a writable /run and
# TMPDIR, loads modules from the kernel's own tree on demand, runs
# /out/command and powers off.
B=/guest/busybox
$B mount -t proc proc /proc
$B mount -t sysfs sys /sys
$B mount -t devtmpfs dev /dev
for module in $($B cat /guest/modules/order); do
    $B insmod "/guest/modules/$module" || echo "guest: cannot load $module"
done
$B mount -t 9p -o trans=virtio,version=9p2000.L,ro,cache=loose,msize=262144 host /host || {
    echo "guest: cannot mount the host's root"
    $B poweroff -f
}
# Every directory of the host's root but the kernel's own and the guest's.
for dir in /host/*; do
    name=${dir#/host/}
    case $name in proc | sys | dev | run | guest | host | out | lost+found) continue ;; esac
    [ -d "$dir" ] && [ ! -L "$dir" ] || continue
    $B mkdir -p "/$name"
    $B mount --bind "$dir" "/$name"
done
$B mkdir -p /guest/tmp
$B mount -t tmpfs run /run
$B mount -t tmpfs var-tmp /var/tmp
$B mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 out /out
$B mount -t bpf bpf /sys/fs/bpf
$B mount -t tracefs tracefs /sys/kernel/tracing
$B mount -t debugfs debugfs /sys/kernel/debug
$B mount -t cgroup2 cgroup2 /sys/fs/cgroup
$B mkdir -p /dev/pts /dev/shm
$B mount -t devpts devpts /dev/pts
$B mount -t tmpfs shm /dev/shm
# The kernel asks this for modules (veth, clsact, nftables, …).
echo /guest/modprobe > /proc/sys/kernel/modprobe
# Opening /dev/net/tun would load tun, but without udev there is no node
# to open until it is loaded.
/guest/modprobe tun
$B ip link set lo up
$B hostname guest
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin HOME=/guest/tmp TMPDIR=/guest/tmp PYTHONDONTWRITEBYTECODE=1
echo "guest: $($B uname -r) up in $($B cut -d' ' -f1 /proc/uptime) s"
/usr/bin/bash /out/command
echo $? > /out/status
$B sync
$B poweroff -f
