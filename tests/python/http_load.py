"""Many small HTTP/1.1 requests over kept-alive connections.

server <address> <port>
    Answers every request on a connection with a 2-byte body, until the
    client closes. Prints "ready" once listening.

client <address> <port> <connections> <seconds> <traceparent or "-">
    <connections> threads, each with one connection, send GETs (with the
    traceparent header unless "-") and read each answer, for <seconds>.
    Prints the number of requests answered.
"""

import socket
import sys
import threading
import time

ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


def serve(address, port):
    listener = socket.socket()
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind((address, port))
    listener.listen(256)
    print("ready", flush=True)

    def answer(connection):
        pending = b""
        while True:
            data = connection.recv(65536)
            if not data:
                break
            pending += data
            while b"\r\n\r\n" in pending:
                pending = pending.split(b"\r\n\r\n", 1)[1]
                connection.sendall(ANSWER)
        connection.close()

    while True:
        connection, _ = listener.accept()
        threading.Thread(target=answer, args=(connection,), daemon=True).start()


def load(address, port, connections, seconds, traceparent):
    header = b"" if traceparent == "-" else b"traceparent: " + traceparent.encode() + b"\r\n"
    request = b"GET / HTTP/1.1\r\nHost: " + address.encode() + b"\r\n" + header + b"\r\n"
    answered = [0] * connections
    deadline = time.monotonic() + seconds

    def run(index):
        connection = socket.create_connection((address, port))
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        while time.monotonic() < deadline:
            connection.sendall(request)
            received = b""
            while not received.endswith(b"ok"):
                received += connection.recv(100)
            answered[index] += 1
        connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(connections)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(sum(answered))


if __name__ == "__main__":
    if sys.argv[1] == "server":
        serve(sys.argv[2], int(sys.argv[3]))
    else:
        load(sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), float(sys.argv[5]), sys.argv[6])
