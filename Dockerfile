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

# Dependencies first, from pyproject.toml alone: this layer is rebuilt only when they change. The
# product's (worker, bridge) and the extras of what else compose runs from this image: the demo producer
# (tools), Flower and the dashboard; not the dev registry or `orders up` (compose runs Confluent's registry).
ARG EXTRAS=tools,flower,dashboard,tracing
COPY pyproject.toml ./
RUN python -c "import sys, tomllib; p = tomllib.load(open('pyproject.toml', 'rb'))['project']; \
print(*p['dependencies'], *(r for e in sys.argv[1].split(',') for r in p['optional-dependencies'][e]), sep='\n')" \
        "$EXTRAS" > /tmp/requirements.txt \
    && pip install -r /tmp/requirements.txt \
    && rm /tmp/requirements.txt

# Editable install of the project itself (no dev extras): the code runs from /app (the schema is
# package data, orders/core/order.avsc, a link to schemas/order.avsc).
# Then import what the services run, so a dependency pyproject.toml lacks fails the build, not start-up.
COPY . .
RUN pip install --no-deps -e . \
    && test -f schemas/order.avsc \
    && python -c "import orders.core.codec, bridge.main, orders.cli, worker.tasks, orders.produce, flower" \
    && python -c "import orders.dashboard.server" \
    && orders --help > /dev/null

# Read-only code owned by root; the services run unprivileged.
USER app
CMD ["orders", "--help"]
