"""Entry point for Streamlit Community Cloud: the same app, with cloud/requirements.txt
(next to this file) pulling the CPU-only torch build."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bnviz.ui.page import main  # noqa: E402

main()
