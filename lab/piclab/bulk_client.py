#!/usr/bin/env python3
"""The lab's bulk TCP client (test_mss), run in a peer:
``python3 bulk_client.py ADDR PORT SIZE DEADLINE down|up`` prints one transfer's
bytes and seconds as JSON; an error or the deadline ends it.  Stdlib only."""
import json
import socket
import sys
import time


def transfer(addr, port, size, deadline, mode):
    start = time.monotonic()
    got, err = 0, None
    try:
        sock = socket.create_connection((addr, port), timeout=deadline)
        sock.settimeout(max(0.1, deadline - (time.monotonic() - start)))
        if mode == 'down':
            while got < size:
                data = sock.recv(65536)
                if not data:
                    break
                got += len(data)
                sock.settimeout(max(0.1, deadline - (time.monotonic() - start)))
        else:
            sock.sendall(b'y' * size)
            got = int(sock.recv(64) or b'0')
    except Exception as exc:  # pylint: disable=broad-except  (reported, not raised)
        err = type(exc).__name__
    return {'bytes': got, 'seconds': round(time.monotonic() - start, 2), 'error': err}


if __name__ == '__main__':
    print(json.dumps(transfer(sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4]), sys.argv[5])))
