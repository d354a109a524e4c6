# c10k - one static-file handler, many concurrency models, one harness.
#
#   make          build build/c10k and build/c10k-ceiling (installs missing
#                 Debian packages first)
#   make test     unit tests, then the conformance suite on every model
#   make bench    the quick benchmark profile, nginx included
#   make bench-cold  the cold-cache profile: event loops against a slow disk
#   make deps     check for (and, as root, install) the Debian packages
#
# Models are chosen by file, never by #ifdef: each name in MODELS is built
# from servers/NAME/NAME.c, which exports c10k_model_NAME. build/models.c,
# generated below, is the table main() reads.

BUILD    ?= build
CC       ?= cc
OPT      ?= -O2 -g
SANITIZE ?=
PYTHON   ?= /usr/bin/python3

MODELS ?= threaded prefork epoll libevent libuv uring coro

CPPFLAGS += -D_GNU_SOURCE -Icommon -Iload
CFLAGS   += $(OPT) -std=gnu11 -Wall -Wextra -Werror -pthread
LDFLAGS  += -pthread
ifneq ($(SANITIZE),)
CFLAGS  += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDFLAGS += -fsanitize=$(SANITIZE)
endif

# Libraries each model needs beyond the common ones.
LIBS_common   := -lhttp_parser
LIBS_libevent := -levent_core
LIBS_libuv    := -luv
LIBS_uring    := -luring
LIBS_load     := -lm

COMMON_SRCS := $(filter-out common/main.c,$(wildcard common/*.c))
COMMON_OBJS := $(COMMON_SRCS:%.c=$(BUILD)/%.o)
MODEL_OBJS  := $(foreach m,$(MODELS),$(BUILD)/servers/$(m)/$(m).o)
MODEL_LIBS  := $(foreach m,$(MODELS),$(LIBS_$(m)))
# c10k load, the open-loop load generator (load/load.c).
LOAD_OBJS   := $(patsubst %.c,$(BUILD)/%.o,$(wildcard load/*.c))

# Debian packages, by what needs them: build, test, bench, fuzz; chromium
# renders the HTML report headless in the browser test; iproute2 (ip, tc)
# and openssh make the second hosts of c10k bench --netns, --server-host and
# --client-host (the tests run an sshd in a network namespace).
DEB_PKGS := build-essential pkg-config clang clang-format libclang-rt-14-dev \
            libhttp-parser-dev libevent-dev libuv1-dev liburing-dev \
            libcriterion-dev python3 curl wrk nginx-light gnuplot-nox \
            linux-perf slowhttptest procps iproute2 strace media-types goaccess chromium \
            openssh-server openssh-client

.PHONY: all deps test unit conformance system benchtest ceilingtest loadtest loadcheck robustness \
        bench fuzz clean format check-format report-screenshots install uninstall linktest \
        test-links perfgate \
        perfgate-update coldtest coldhandoff bench-cold

all: deps $(BUILD)/c10k $(BUILD)/c10k-ceiling

# Runs every time but is cheap: dpkg-query answers in milliseconds, and
# apt-get is only called when something is missing.
deps:
	@missing=""; for p in $(DEB_PKGS); do \
	    dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" || missing="$$missing $$p"; \
	done; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ]; then \
	    echo "deps: installing:$$missing"; \
	    apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	else \
	    echo "deps: missing Debian packages:$$missing"; \
	    echo "deps: run: sudo apt-get update && sudo apt-get install -y$$missing"; \
	    exit 2; \
	fi

$(BUILD)/c10k: $(BUILD)/common/main.o $(BUILD)/models.o $(MODEL_OBJS) $(COMMON_OBJS) $(LOAD_OBJS)
	$(CC) $(LDFLAGS) -o $@ $^ $(MODEL_LIBS) $(LIBS_common) $(LIBS_load)

$(BUILD)/%.o: %.c $(wildcard common/*.h) | $(BUILD)/.dirs
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<
$(LOAD_OBJS) $(BUILD)/common/main.o: $(wildcard load/*.h)

# The ceiling (bench/ceiling/ceiling.c): a canned-response reference server
# c10k bench runs beside nginx. Not a model: no handler, so it links the
# handler-free parts of common/ only.
CEILING_OBJS := $(patsubst %.c,$(BUILD)/%.o,$(wildcard bench/ceiling/*.c))

$(BUILD)/c10k-ceiling: $(CEILING_OBJS) $(BUILD)/common/net.o $(BUILD)/common/cli.o
	$(CC) $(LDFLAGS) -o $@ $^ -luring

$(CEILING_OBJS): bench/ceiling/ceiling.h

# The model table. Regenerated when the MODELS list changes.
$(BUILD)/models.c: $(BUILD)/.models | $(BUILD)/.dirs
	@{ echo '#include "server.h"'; \
	   for m in $(MODELS); do echo "extern const c10k_model_t c10k_model_$$m;"; done; \
	   echo 'const c10k_model_t *const c10k_models[] = {'; \
	   for m in $(MODELS); do echo "    &c10k_model_$$m,"; done; \
	   echo '    0,'; echo '};'; } > $@

$(BUILD)/models.o: $(BUILD)/models.c
	$(CC) $(CPPFLAGS) $(CFLAGS) -c -o $@ $<

$(BUILD)/.models: FORCE | $(BUILD)/.dirs
	@echo "$(MODELS)" | cmp -s - $@ || echo "$(MODELS)" > $@

$(BUILD)/.dirs:
	@mkdir -p $(BUILD) && touch $@

FORCE:

# --- tests -------------------------------------------------------------------

UNIT_SRCS := $(wildcard tests/unit/*.c)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

$(BUILD)/tests/%: tests/unit/%.c $(COMMON_OBJS) $(LOAD_OBJS) | $(BUILD)/.dirs
	@mkdir -p $(dir $@)
	$(CC) $(CPPFLAGS) $(CFLAGS) -o $@ $^ $(LDFLAGS) -lcriterion $(LIBS_common) $(LIBS_load)

unit: all $(UNIT_BINS)
	@for t in $(UNIT_BINS); do echo "== $$t"; $$t --jobs 2 || exit 1; done

# Four variants at a time: most cases wait on a server's timers (keep-alive,
# header, lingering), not the CPU, so more jobs than cores shortens the run;
# -j4 passed every case under ASan and TSan on 2 cores. CONFORMANCE_JOBS=1
# runs them one by one.
CONFORMANCE_JOBS ?= 4
conformance: all
	$(PYTHON) tests/conformance/run.py --bin $(BUILD)/c10k --jobs $(CONFORMANCE_JOBS)

# Models with one loop over many connections must hold thousands of them.
EVENT_MODELS := $(filter epoll libevent libuv uring coro,$(MODELS))
SYSTEM_CONNS ?= 2000

system: all
	@for m in $(EVENT_MODELS); do \
	    $(PYTHON) tests/system/many_conns.py --bin $(BUILD)/c10k --model $$m --all-variants --conns $(SYSTEM_CONNS) || exit 1; \
	done
	@if echo " $(MODELS) " | grep -q " prefork "; then $(PYTHON) tests/prefork/test_prefork.py --bin $(BUILD)/c10k; fi
	@if echo " $(MODELS) " | grep -q " uring "; then $(PYTHON) tests/uring/test_uring.py --bin $(BUILD)/c10k; fi

# The harness and the report generator: the harness's pure parts, a smoke
# run (two rounds, a variant, nginx, the ceiling), open-loop smoke runs (a
# 3-step latency ladder on 2 models, a 2-step crossover), the method check,
# the perfgate's rules, the report on stored fixture runs (schema 1 and 2),
# and the report in headless Chromium at 1,400 and 420 px wide; and the
# ceiling reference server on both drivers.
benchtest: all ceilingtest
	$(PYTHON) tests/bench/test_harness_units.py
	$(PYTHON) tests/bench/test_bench.py --bin $(BUILD)/c10k
	$(PYTHON) tests/bench/test_perfgate.py --bin $(BUILD)/c10k
	$(PYTHON) tests/bench/test_report.py
	$(PYTHON) tests/bench/test_report_browser.py

# Beyond loopback (issue 19): network namespaces, veth and tc, and other
# hosts over ssh (an sshd in a namespace with a generated key), make
# install. Needs root, iproute2 and openssh-server; without them each test
# says why it skips. linktest is the smoke run make test includes (about
# a minute: a --netns run, a shaped link, --netem, Ctrl-C, a run with the
# server remote and one with the load remote, both through an sshd in a
# namespace and the c10k of make install); test-links runs everything (a
# few minutes: SIGTERM and SIGKILL, two client hosts, the agent's barrier,
# make install's C10K_HOME cases, the links profile on two models).
linktest: all
	$(PYTHON) tests/links/test_units.py --bin $(BUILD)/c10k
	$(PYTHON) tests/links/test_netns.py --quick
	$(PYTHON) tests/links/test_bench_links.py --bin $(BUILD)/c10k --quick

test-links: all
	$(PYTHON) tests/links/test_units.py --bin $(BUILD)/c10k
	$(PYTHON) tests/links/test_netns.py
	$(PYTHON) tests/links/test_remote.py --bin $(BUILD)/c10k
	$(PYTHON) tests/links/test_bench_links.py --bin $(BUILD)/c10k

# The screenshots bench/README.md shows: the schema-2 fixture's report at
# 1,400 and 420 px wide, rendered by headless Chromium.
report-screenshots: deps
	$(PYTHON) tests/bench/test_report_browser.py --screenshots bench/screenshots

# c10k load: histogram sums, schedule rate, error counting, the stall check
# beside wrk, usage errors, invalid-run detection, peak rate against wrk on
# the same CPU quota (tests/load/test_load.py, under a minute).
loadtest: all
	$(PYTHON) tests/load/test_load.py --bin $(BUILD)/c10k

# c10k load against wrk at saturation, alternated 3 times each: on a shared
# machine the noise can exceed the 5% it checks, so it is not in make test.
loadcheck: all
	$(PYTHON) tests/load/test_load.py --bin $(BUILD)/c10k --only saturation

ceilingtest: all
	$(PYTHON) tests/bench/test_ceiling.py --bin $(BUILD)/c10k-ceiling

# A slow disk (issue 18): eviction and its mincore check, epoll --helpers'
# hand-off (strace), who waits for a throttled disk (root and cgroups, else
# skipped with the reason), the event loops' stall counters, the harness's
# cold-cache parts, and a smoke run of the profile; about 40 s. The profile
# itself (about 10 minutes): make bench-cold.
coldtest: all
	$(PYTHON) tests/coldcache/test_coldcache.py --bin $(BUILD)/c10k
	$(PYTHON) tests/bench/test_coldcache_units.py
	$(PYTHON) tests/bench/test_coldcache.py --bin $(BUILD)/c10k

# Under a sanitizer: the helper hand-off only (threads and an eventfd; the
# timing tests would measure the sanitizer).
coldhandoff: all
	$(PYTHON) tests/coldcache/test_coldcache.py --bin $(BUILD)/c10k -k hand

# Under a sanitizer, make test runs the unit and conformance suites on every
# model (the load-heavy system and bench tests add time, not coverage), and
# under ASan and UBSan the ceiling's tests too (its only coverage).
ifneq ($(findstring thread,$(SANITIZE)),)
# Criterion's shared arena cannot be mapped under TSan's memory layout, and
# the handler the unit tests cover runs in one thread per call anyway.
# TSan's own CHECK fails on descriptors io_uring creates in the kernel, so
# the uring model is left out of the TSan run (ASan and UBSan cover it).
test: MODELS := $(filter-out uring,$(MODELS))
test: conformance coldhandoff
	@echo "unit: SKIP under SANITIZE=thread (Criterion cannot start under TSan; ASan runs them)"
	@echo "conformance: SKIP uring under SANITIZE=thread (TSan CHECK-fails on io_uring descriptors)"
	@echo "ceilingtest: SKIP under SANITIZE=thread (it runs io_uring too; ASan runs it)"
else ifneq ($(SANITIZE),)
test: unit conformance ceilingtest coldhandoff
else
test: unit conformance system benchtest loadtest linktest coldtest
endif
export TSAN_OPTIONS ?= suppressions=$(CURDIR)/tests/tsan.supp halt_on_error=1
export ASAN_OPTIONS ?= detect_leaks=1
export UBSAN_OPTIONS ?= print_stacktrace=1

# Faults and attacks against every model (tests/robustness/README.md).
robustness: all
	$(PYTHON) tests/robustness/run.py --bin $(BUILD)/c10k --quick

# libFuzzer targets under ASan and UBSan, FUZZ_SECONDS each.
FUZZ_SECONDS ?= 60
fuzz: deps
	tests/fuzz/run.sh $(FUZZ_SECONDS)

bench: all
	$(BUILD)/c10k bench --profile quick

# The cold-cache profile (as root: cgroups, kernel.task_delayacct); its root
# of 1.5 GiB is written under results/ once and reused.
bench-cold: all
	$(BUILD)/c10k bench --profile cold-cache

# make install PREFIX=DIR: DIR/bin/c10k (and c10k-ceiling beside it) and
# DIR/share/c10k/bench/, where the binary looks for the bench scripts
# (README.md, "Installing" and "A second host").
PREFIX  ?= /usr/local
BENCH_INSTALL := $(wildcard bench/*.py bench/*.lua bench/*/*.py) bench/README.md
install: all
	install -D -m 755 $(BUILD)/c10k $(DESTDIR)$(PREFIX)/bin/c10k
	install -D -m 755 $(BUILD)/c10k-ceiling $(DESTDIR)$(PREFIX)/bin/c10k-ceiling
	@for f in $(BENCH_INSTALL); do \
	    install -D -m 644 $$f $(DESTDIR)$(PREFIX)/share/c10k/$$f || exit 1; \
	done
	@echo "install: $(DESTDIR)$(PREFIX)/bin/c10k, $(DESTDIR)$(PREFIX)/share/c10k/bench/"

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/c10k $(DESTDIR)$(PREFIX)/bin/c10k-ceiling
	rm -rf $(DESTDIR)$(PREFIX)/share/c10k

# The regression gate (bench/README.md, "The perfgate"): each model's
# syscalls and voluntary switches per request and bytes per idle connection
# against bench/baseline.json; fails when one exceeds its baseline by more
# than 10% (or a small absolute tolerance near zero). About a minute.
perfgate: all
	$(PYTHON) bench/perfgate.py --bin $(BUILD)/c10k

# Measures every model (or PERFGATE_MODELS=coro,uring) 3 times and writes
# the medians to bench/baseline.json. Commit it with a message saying why.
PERFGATE_MODELS ?=
perfgate-update: all
	$(PYTHON) bench/perfgate.py --bin $(BUILD)/c10k --update $(if $(PERFGATE_MODELS),--models $(PERFGATE_MODELS))

clean:
	rm -rf $(BUILD)

FORMAT_SRCS := $(shell git ls-files '*.c' '*.h' 2>/dev/null)
format:
	clang-format -i $(FORMAT_SRCS)
check-format:
	clang-format --dry-run --Werror $(FORMAT_SRCS)
