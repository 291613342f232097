"""`streamlit run ...` with a census, for tests: `python tests/census_server.py FILE run app.py
...` answers each request (a file FILE.request appearing) by writing to FILE how many bnviz
sessions the server process still holds, after a full garbage collection, how many of them
still want to train and how many trained to the end ("held training finished"), so a test can
see closed tabs' sessions stop and go. Between requests it only looks for the file every 0.2 s."""

import gc
import sys
import threading
import time
from pathlib import Path


def census(path: Path) -> None:
    request = path.with_name(path.name + ".request")
    while True:
        time.sleep(0.2)
        if not request.exists():
            continue
        gc.collect()
        sessions = [
            o
            for o in gc.get_objects()
            if type(o).__name__ == "Session" and type(o).__module__ == "bnviz.ui.session"
        ]
        training = sum(s.wants_training for s in sessions)
        finished = sum(s.state == "finished" for s in sessions)
        path.write_text(f"{len(sessions)} {training} {finished}")
        del sessions  # holding them here would keep them alive until the next census
        request.unlink()


if __name__ == "__main__":
    threading.Thread(target=census, args=(Path(sys.argv[1]),), daemon=True).start()
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *sys.argv[2:]]
    main()
