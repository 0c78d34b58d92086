"""Writes dist/code-order.txt: the functions a session runs, which `cargo
dist` lays out together at the front of the binary's code (build.rs, the
linker's --symbol-ordering-file). The kernel maps each page of code a
process runs with its neighbours, so code a session runs, spread over the
binary, keeps most of it resident; packed, it keeps little more than
itself (docs/BENCHMARKS.md, memory).

It runs a session under callgrind through the static build around the
mock server: start-up, tools/list, calls one at a time and 16 in flight,
4 MiB messages, refusals, the audit log; and lists every function that ran,
by its symbol. Run it again when the layout has gone stale
(`memory::the_static_build_holds_its_bounds_with_a_4_mib_message`
says so):

    cargo dist && cargo build --release -p mock_server
    python3 dist/code-order.py
    cargo dist
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
toolwarden = os.path.join(root, "target/x86_64-unknown-linux-gnu/dist/toolwarden")
mock = os.path.join(root, "target/release/mock_server")
tmp = tempfile.mkdtemp()
policy = os.path.join(tmp, "policy.json")
with open(policy, "w") as f:
    json.dump({"version": "1", "default": "deny", "tools": {"echo": {
        "limits": [{"window": "second", "max": 1000000}],
        "arguments": {"type": "object", "properties": {"message": {"type": "string"}},
                      "required": ["message"]}}}}, f)
profile = os.path.join(tmp, "callgrind.out")
child = subprocess.Popen(
    ["valgrind", "--tool=callgrind", "--demangle=no", "--callgrind-out-file=" + profile,
     "--dump-before=*release_start_up_pages*",
     toolwarden, "--policy", policy, "--audit", os.path.join(tmp, "audit.jsonl"),
     "--log-level", "error", "--", mock, "--tools", os.path.join(root, "examples/tools/bench.json")],
    stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=open(os.path.join(tmp, "valgrind.log"), "w"),
    bufsize=0,
    env=dict(os.environ, XDG_STATE_HOME=os.path.join(tmp, "state")))
pending = b""


def send(message):
    os.write(child.stdin.fileno(), (json.dumps(message) + "\n").encode())


def receive():
    global pending
    while b"\n" not in pending:
        chunk = os.read(child.stdout.fileno(), 1 << 20)
        if not chunk:
            sys.exit("toolwarden closed its output")
        pending += chunk
    line, _, pending = pending.partition(b"\n")
    return json.loads(line)


def call(id, name, arguments):
    return {"jsonrpc": "2.0", "id": id, "method": "tools/call",
            "params": {"name": name, "arguments": arguments}}


send({"jsonrpc": "2.0", "id": 0, "method": "initialize", "params": {
    "protocolVersion": "2025-06-18", "capabilities": {},
    "clientInfo": {"name": "code-order", "version": "1"}}})
receive()
send({"jsonrpc": "2.0", "method": "notifications/initialized"})
send({"jsonrpc": "2.0", "id": 1, "method": "tools/list"})
receive()
id = 2
for _ in range(300):  # one at a time
    send(call(id, "echo", {"message": "hello"}))
    receive()
    id += 1
for _ in range(20):  # 16 in flight
    for _ in range(16):
        send(call(id, "echo", {"message": "hello"}))
        id += 1
    for _ in range(16):
        receive()
for _ in range(2):  # large messages
    send(call(id, "echo", {"message": "x" * (4 << 20)}))
    receive()
    id += 1
for name, arguments in [("echo", {"message": 1}), ("delete_everything", {}), ("echo", {})]:
    send(call(id, name, arguments))  # refused
    receive()
    id += 1
child.stdin.close()
if child.wait() != 0:
    sys.exit("toolwarden under callgrind exited with %d" % child.returncode)



def functions_run(part):
    """The functions a part of the profile names: "fn=(12) _ZN..." or
    "cfn=(12) _ZN..." (a callee), the first time it lists each."""
    names = set()
    for line in open(part):
        m = re.match(r"c?fn=\(\d+\) (\S+)", line)
        if m:
            names.add(m.group(1))
    return names


# The profile's first part is start-up, up to the session's
# release_start_up_pages (src/session/memory.rs); the second the session.
start_up, session = functions_run(profile + ".1"), functions_run(profile)
if not session:
    sys.exit("the profile has no session part: is release_start_up_pages still there?")
# The session's code first, then start-up's, each in the binary's own
# order, which keeps what sits together together.
binary_order = []
for line in subprocess.run(["nm", "-n", "--defined-only", toolwarden], capture_output=True,
                           text=True, check=True).stdout.splitlines():
    parts = line.split()
    if len(parts) == 3 and parts[1] in "tTwW":
        binary_order.append(parts[2])
order = [f for f in binary_order if f in session]
order += [f for f in binary_order if f in start_up and f not in session]
order = list(dict.fromkeys(order))
out = os.path.join(root, "dist/code-order.txt")
with open(out, "w") as f:
    f.write("\n".join(order) + "\n")
shutil.rmtree(tmp)
print("%s: %d functions, %d of them the session's" % (out, len(order), len(session)))
