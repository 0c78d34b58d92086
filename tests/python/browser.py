"""A browser for the OAuth tests: opens the login page and follows its
redirects back to toolwarden's loopback port, as a person who approves at
once would. Appends each URL it is given to $BROWSER_RECORD, if set.

usage: browser.py URL
"""

import os
import sys
import urllib.request

if os.environ.get("BROWSER_RECORD"):
    with open(os.environ["BROWSER_RECORD"], "a", encoding="utf-8") as record:
        record.write(sys.argv[1] + "\n")
urllib.request.urlopen(sys.argv[1], timeout=30).read()
