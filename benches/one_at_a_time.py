"""A client for profiling: N tools/call round trips, one at a time, through
whatever command it is given. Prints the p50 round trip, and the CPU time
the command's own threads spent per round trip (from /proc schedstat).

    N=3000 python3 benches/one_at_a_time.py COMMAND [ARGS...]

See docs/BENCHMARKS.md for how it is used with callgrind and taskset.
"""
import glob
import json
import os
import subprocess
import sys
import time

command = sys.argv[1:]
if not command:
    sys.exit(__doc__)
n = int(os.environ.get("N", "2000"))
child = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, bufsize=0)
pending = b""


def send(line):
    os.write(child.stdin.fileno(), (line + "\n").encode())


def receive():
    global pending
    while b"\n" not in pending:
        chunk = os.read(child.stdout.fileno(), 1 << 20)
        if not chunk:
            sys.exit("the command closed its output")
        pending += chunk
    line, _, pending = pending.partition(b"\n")
    return line


send(json.dumps({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "one-at-a-time", "version": "1"}}}))
receive()
send('{"jsonrpc":"2.0","method":"notifications/initialized"}')
times = []
for i in range(1, n + 1):
    start = time.perf_counter()
    send('{"jsonrpc":"2.0","id":%d,"method":"tools/call","params":{"name":"echo","arguments":{"message":"hello"}}}' % i)
    receive()
    times.append(time.perf_counter() - start)
times.sort()
cpu_ns = sum(int(open(f).read().split()[0])
             for f in glob.glob("/proc/%d/task/*/schedstat" % child.pid))
# User and kernel time apart (in clock ticks, so only long runs tell): the
# user time is the command's own work, the kernel time mostly its reads
# and writes.
ticks = [0, 0]
for f in glob.glob("/proc/%d/task/*/stat" % child.pid):
    fields = open(f).read().rsplit(")", 1)[1].split()
    ticks[0] += int(fields[11])
    ticks[1] += int(fields[12])
tick_us = 1e6 / os.sysconf("SC_CLK_TCK")
print("p50 %.1f µs; CPU %.2f µs per round trip (user %.2f, kernel %.2f; start-up included)"
      % (times[len(times) // 2] * 1e6, cpu_ns / 1e3 / n,
         ticks[0] * tick_us / n, ticks[1] * tick_us / n), file=sys.stderr)
child.stdin.close()
child.wait()
