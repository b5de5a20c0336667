"""Verifies recorded webhook calls with the official Standard Webhooks library.

Input (argv[1]): a JSON file {"secret": "whsec_...", "calls": [{"headers": {...},
"body_hex": "..."}]}. Prints one line per call, "ok <webhook-id>", and exits 1 at the first
call whose signature the library refuses. smswire's tests run it; it is not shipped.
"""

import json
import sys

from standardwebhooks.webhooks import Webhook


def main() -> int:
    with open(sys.argv[1], encoding="utf-8") as f:
        recorded = json.load(f)
    hook = Webhook(recorded["secret"])
    for call in recorded["calls"]:
        body = bytes.fromhex(call["body_hex"])
        try:
            hook.verify(body, call["headers"])
        except Exception as e:  # the library's own error names the cause
            print(f"refused {call['headers'].get('webhook-id')}: {e!r}")
            return 1
        print(f"ok {call['headers']['webhook-id']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
