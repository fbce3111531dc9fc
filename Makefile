# The two commands a newcomer needs: `make demo` and `make test`.
# Both create .venv on first use; torch comes first from this machine's wheel cache.

VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip
STAMP := $(VENV)/.unclip-installed
PG_VERSION = $(shell ls /etc/postgresql 2>/dev/null | head -n 1)
TORCH_PINS := torch==2.14.1 torchvision==0.29.1

.PHONY: demo test venv services browser lint typecheck pytest clean-demo

venv: $(STAMP)

$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || python3 -m venv $(VENV)
	$(PIP) install $(TORCH_PINS)
	$(PIP) install -c constraints.txt -e '.[api,worker,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(PY) scripts/demo.py --out out/demo

# Redis and PostgreSQL for the integration tests; started only when not already answering.
services:
	@if redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1; then echo "redis: running"; else \
	  mkdir -p /var/lib/redis /var/log/redis && \
	  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" \
	    --appendonly no --dir /var/lib/redis --logfile /var/log/redis/ci.log && \
	  for i in $$(seq 1 50); do redis-cli -h 127.0.0.1 -p 6379 ping >/dev/null 2>&1 && break; \
	    sleep 0.2; done; echo "redis: started"; fi
	@if pg_isready -h 127.0.0.1 -p 5432 -q; then echo "postgresql: running"; else \
	  pg_ctlcluster --skip-systemctl-redirect $(PG_VERSION) main start && \
	  for i in $$(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done; \
	  echo "postgresql: started"; fi

# Debian's Chromium for the web UI's browser tests (Playwright drives /usr/bin/chromium; it
# cannot download a browser here). Installed when missing and apt-get can run; the browser
# tests fail, not skip, when there is still none.
browser:
	@if [ -x /usr/bin/chromium ]; then echo "chromium: present"; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >/dev/null && \
	  echo "chromium: installed"; \
	else echo "chromium: missing, and apt-get cannot run here (the browser tests will fail)"; fi

lint: $(STAMP)
	$(VENV)/bin/ruff check .

typecheck: $(STAMP)
	$(VENV)/bin/mypy shared api worker

# One torch thread per process: the tests run a worker process beside the test process, and
# two threads each on a 2-core machine made tiny convolutions many times slower.
pytest: $(STAMP) services browser
	OMP_NUM_THREADS=1 UNCLIP_TEST_REQUIRE_SERVICES=1 $(VENV)/bin/pytest -q

test: lint typecheck pytest

clean-demo:
	rm -rf out/demo
