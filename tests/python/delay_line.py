"""A one-way delay line between two TUN devices, for kernels without netem.

Usage: delay_line.py <tun a> <tun b> <delay seconds> <loss fraction>

Creates both TUN devices (the test moves them into its namespaces), then
relays IP packets: what arrives from a goes to b after the delay, unless the
loss draw drops it; what arrives from b goes to a at once. Prints "ready"
once the devices exist. Stops on SIGTERM.
"""

import fcntl
import heapq
import os
import random
import select
import struct
import sys
import time

TUNSETIFF = 0x400454CA
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000


def open_tun(name):
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TUN | IFF_NO_PI))
    return fd


def main():
    a, b = open_tun(sys.argv[1]), open_tun(sys.argv[2])
    delay, loss = float(sys.argv[3]), float(sys.argv[4])
    print("ready", flush=True)
    due = []  # (time to send, sequence, packet) from a to b
    sequence = 0
    while True:
        timeout = max(0.0, due[0][0] - time.monotonic()) if due else 1.0
        readable, _, _ = select.select([a, b], [], [], timeout)
        for fd in readable:
            try:
                packet = os.read(fd, 65535)
            except OSError:
                continue  # the device is not up yet
            if fd == b:
                os.write(a, packet)
            elif random.random() >= loss:
                heapq.heappush(due, (time.monotonic() + delay, sequence, packet))
                sequence += 1
        while due and due[0][0] <= time.monotonic():
            _, _, packet = heapq.heappop(due)
            try:
                os.write(b, packet)
            except OSError:
                pass


if __name__ == "__main__":
    main()
