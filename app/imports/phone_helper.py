"""The helper process of a large import: normalises phone numbers with the validators' own rule.

Started by imports.services.PhoneHelper as `python -m app.imports.phone_helper`. It reads one JSON
list of raw values per line on stdin and answers one JSON object per line on stdout: the valid
numbers' E.164 forms (validators.normalize_phones). Requests are read by a thread of their own, so
the importing process can send the next chunk's numbers while an answer waits to be read. It ends
when stdin closes (the import finished, or its process died).
"""

import json
import queue
import sys
import threading


def main():
    from app.core.validators import normalize_phones

    requests = queue.Queue()

    def read():
        for line in sys.stdin:
            requests.put(line)
        requests.put(None)

    threading.Thread(target=read, daemon=True).start()
    while (line := requests.get()) is not None:
        sys.stdout.write(json.dumps(normalize_phones(json.loads(line))) + "\n")
        sys.stdout.flush()


if __name__ == "__main__":
    main()
