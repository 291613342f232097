"""bnviz: watch BatchNorm work while a small CNN trains. Run with `streamlit run app.py`."""

from bnviz.ui.page import main

main()
