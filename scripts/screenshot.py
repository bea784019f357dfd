#!/usr/bin/env python3
"""A screenshot of a page once it shows something: Debian's headless Chromium driven through the
DevTools protocol over a pipe (as the dashboard's tests drive it), waiting until CONDITION (a
JavaScript expression) is true in the page.

    scripts/screenshot.py URL OUT.png [WIDTH HEIGHT] [CONDITION]
"""
import base64
import json
import os
import subprocess
import sys
import tempfile
import time

url, out = sys.argv[1], sys.argv[2]
width, height = (int(sys.argv[3]), int(sys.argv[4])) if len(sys.argv) > 4 else (1280, 1800)
condition = sys.argv[5] if len(sys.argv) > 5 else "document.querySelectorAll('#experiments tbody tr').length > 0"

commands_read, commands_write = os.pipe()
replies_read, replies_write = os.pipe()
profile = tempfile.TemporaryDirectory()
# Chromium reads commands on descriptor 3 and writes replies on 4.
browser = subprocess.Popen(
    ["/usr/bin/chromium", "--headless", "--remote-debugging-pipe", "--no-sandbox", "--disable-gpu",
     "--no-first-run", "--hide-scrollbars", f"--user-data-dir={profile.name}", "about:blank"],
    pass_fds=(3, 4), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    preexec_fn=lambda: (os.dup2(commands_read, 3), os.dup2(replies_write, 4)))
os.close(commands_read)
os.close(replies_write)
to, replies = os.fdopen(commands_write, "wb"), os.fdopen(replies_read, "rb")
next_id = 0


def call(method, params, session=None):
    global next_id
    next_id += 1
    message = {"id": next_id, "method": method, "params": params}
    if session:
        message["sessionId"] = session
    to.write(json.dumps(message).encode() + b"\0")
    to.flush()
    buffer = b""
    while True:
        byte = replies.read(1)
        if not byte:
            sys.exit(f"Chromium closed its pipe during {method}")
        if byte != b"\0":
            buffer += byte
            continue
        reply, buffer = json.loads(buffer), b""
        if reply.get("id") == next_id:
            if "error" in reply:
                sys.exit(f"{method}: {reply['error']}")
            return reply["result"]


try:
    target = call("Target.createTarget", {"url": "about:blank"})["targetId"]
    session = call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    call("Emulation.setDeviceMetricsOverride",
         {"width": width, "height": height, "deviceScaleFactor": 1, "mobile": False}, session)
    call("Page.navigate", {"url": url}, session)
    deadline = time.time() + 30
    while time.time() < deadline:
        value = call("Runtime.evaluate", {"expression": condition, "returnByValue": True}, session)
        if value["result"].get("value") is True:
            break
        time.sleep(0.2)
    else:
        sys.exit(f"not true after 30 s: {condition}")
    time.sleep(0.5)
    shot = call("Page.captureScreenshot", {"format": "png"}, session)
    with open(out, "wb") as f:
        f.write(base64.b64decode(shot["data"]))
    print(out)
finally:
    browser.kill()
