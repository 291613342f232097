"""The Streamlit front end; the only part of bnviz that imports streamlit."""
