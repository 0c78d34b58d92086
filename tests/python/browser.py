"""A browser for the OAuth tests: opens the login page and follows its
redirects back to toolwarden's loopback port, as a person who approves at
once would. Appends each URL it is given to $BROWSER_RECORD, if set.
With --slow, it first starts a process of its own that opens a
connection to the redirect's port and sends a byte a second on it for
five minutes, or until the connection is closed, as a slow local client
would; then it follows the page.

usage: browser.py [--slow] URL
"""

import os
import socket
import subprocess
import sys
import time
import urllib.parse
import urllib.request


def trickle(port):
    with socket.create_connection(("127.0.0.1", port)) as slow:
        for _ in range(300):
            try:
                slow.sendall(b"G")
            except OSError:
                return
            time.sleep(1)


if sys.argv[1] == "--trickle":
    trickle(int(sys.argv[2]))
    sys.exit(0)
slow = sys.argv[1] == "--slow"
page = sys.argv[-1]
if os.environ.get("BROWSER_RECORD"):
    with open(os.environ["BROWSER_RECORD"], "a", encoding="utf-8") as record:
        record.write(page + "\n")
if slow:
    query = urllib.parse.parse_qs(urllib.parse.urlparse(page).query)
    port = urllib.parse.urlparse(query["redirect_uri"][0]).port
    subprocess.Popen(
        [sys.executable, __file__, "--trickle", str(port)],
        start_new_session=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    time.sleep(0.5)
urllib.request.urlopen(page, timeout=30).read()
