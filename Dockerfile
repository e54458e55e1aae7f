# The image of the project's own services: worker, bridge, producer, Flower (and the dashboard).
# docker-compose.yml runs each from it with its own `command`; alone it prints the `orders` commands.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore

RUN useradd --create-home --uid 10001 --user-group app
WORKDIR /app

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change.
COPY pyproject.toml ./
# With the [tracing] extra: compose's processes export their spans to its Zipkin.
RUN python -c "import tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *p['optional-dependencies']['tracing'], sep='\n')" \
        > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Editable install of the project itself (no dev extras): the code runs from /app (the schema is
# package data, orders/core/order.avsc, a link to schemas/order.avsc).
# Then import what the services run, so a dependency pyproject.toml lacks fails the build, not start-up.
COPY . .
RUN pip install --no-deps -e . \
    && test -f schemas/order.avsc \
    && python -c "import orders.core.codec, bridge.main, orders.cli, worker.tasks" \
    && orders --help > /dev/null

# Read-only code owned by root; the services run unprivileged.
USER app
CMD ["orders", "--help"]
