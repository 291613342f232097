# One bnviz replica: one Streamlit server process (see docs/deploy.md for N replicas).
#   docker build -t bnviz . && docker run --rm -p 8501:8501 bnviz
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    BNVIZ_DATA_DIR=/data

WORKDIR /app
# The CPU-only torch build (a few hundred MB, not several GB of CUDA libraries): the same
# requirements as Streamlit Community Cloud.
COPY cloud/requirements.txt requirements.txt
RUN pip install -r requirements.txt

COPY . .
# Run unprivileged; downloaded data sets go to a volume-friendly directory.
RUN useradd --create-home --uid 10001 bnviz && mkdir -p /data && chown bnviz /data
USER bnviz

EXPOSE 8501
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s \
    CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:8501/_stcore/health', timeout=4)"
# .streamlit/config.toml (copied with the app) sets headless mode, XSRF protection, the upload
# cap and no file watching.
CMD ["streamlit", "run", "app.py", "--server.port=8501", "--server.address=0.0.0.0"]
