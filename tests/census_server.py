"""`streamlit run ...` with a census, for tests: `python tests/census_server.py FILE run app.py
...` answers each request (a file FILE.request appearing) by writing to FILE how many bnviz
sessions the server process still holds, after a full garbage collection, so a test can see
closed tabs' sessions go. Between requests it costs nothing."""

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
        alive = sum(
            type(o).__name__ == "Session" and type(o).__module__ == "bnviz.ui.session"
            for o in gc.get_objects()
        )
        path.write_text(str(alive))
        request.unlink()


if __name__ == "__main__":
    threading.Thread(target=census, args=(Path(sys.argv[1]),), daemon=True).start()
    from streamlit.web.cli import main

    sys.argv = ["streamlit", *sys.argv[2:]]
    main()
